"""The table of object kinds: names, API versions, scopes and message types.

One place answers "what is a `deploy`?" for the CLI, the client and the API
server. Names resolve the way kubectl resolves them: the kind (`Deployment`),
its singular and plural resource names (`deployment`, `deployments`), its short
names (`deploy`) and the group-qualified form (`deployments.apps`), all
case-insensitive.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from protos.corral.v1 import (
    api_pb2,
    batch_pb2,
    configmap_pb2,
    coordination_pb2,
    discovery_pb2,
    event_pb2,
    ingress_pb2,
    metrics_pb2,
    namespace_pb2,
    networking_pb2,
    node_pb2,
    pod_pb2,
    policy_pb2,
    quota_pb2,
    rbac_pb2,
    secret_pb2,
    service_pb2,
    serviceaccount_pb2,
    storage_pb2,
    workloads_pb2,
)
from protos.objectmeta import meta as meta  # re-exported: `kinds.meta` is used across the planes


@dataclass(frozen=True)
class KindInfo:
    kind: str
    api_version: str
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    message: type[Message]
    # The member of the `Object` oneof that carries this kind.
    field: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def resource(self) -> str:
        """`deployment.apps` or `pod`: how kubectl names it in messages."""
        return f"{self.singular}.{self.group}" if self.group else self.singular


_RBAC = "rbac.authorization.k8s.io/v1"

KINDS: tuple[KindInfo, ...] = (
    KindInfo("Pod", "v1", "pods", ("po",), True, pod_pb2.Pod, "pod"),
    KindInfo("Node", "v1", "nodes", ("no",), False, node_pb2.Node, "node"),
    KindInfo("ReplicaSet", "apps/v1", "replicasets", ("rs",), True, workloads_pb2.ReplicaSet, "replica_set"),
    KindInfo("Deployment", "apps/v1", "deployments", ("deploy",), True, workloads_pb2.Deployment, "deployment"),
    KindInfo("Service", "v1", "services", ("svc",), True, service_pb2.Service, "service"),
    KindInfo("Event", "v1", "events", ("ev",), True, event_pb2.Event, "event"),
    KindInfo(
        "EndpointSlice",
        "discovery.k8s.io/v1",
        "endpointslices",
        (),
        True,
        discovery_pb2.EndpointSlice,
        "endpoint_slice",
    ),
    KindInfo(
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        "horizontalpodautoscalers",
        ("hpa",),
        True,
        metrics_pb2.HorizontalPodAutoscaler,
        "horizontal_pod_autoscaler",
    ),
    KindInfo("Secret", "v1", "secrets", (), True, secret_pb2.Secret, "secret"),
    KindInfo("Namespace", "v1", "namespaces", ("ns",), False, namespace_pb2.Namespace, "namespace"),
    # Stored as written, not acted on (STORED_ONLY says what corral does with each).
    KindInfo(
        "ServiceAccount",
        "v1",
        "serviceaccounts",
        ("sa",),
        True,
        serviceaccount_pb2.ServiceAccount,
        "service_account",
    ),
    KindInfo("Role", _RBAC, "roles", (), True, rbac_pb2.Role, "role"),
    KindInfo("ClusterRole", _RBAC, "clusterroles", (), False, rbac_pb2.ClusterRole, "cluster_role"),
    KindInfo("RoleBinding", _RBAC, "rolebindings", (), True, rbac_pb2.RoleBinding, "role_binding"),
    KindInfo(
        "ClusterRoleBinding",
        _RBAC,
        "clusterrolebindings",
        (),
        False,
        rbac_pb2.ClusterRoleBinding,
        "cluster_role_binding",
    ),
    KindInfo(
        "NetworkPolicy",
        "networking.k8s.io/v1",
        "networkpolicies",
        ("netpol",),
        True,
        networking_pb2.NetworkPolicy,
        "network_policy",
    ),
    KindInfo("ConfigMap", "v1", "configmaps", ("cm",), True, configmap_pb2.ConfigMap, "config_map"),
    KindInfo(
        "PersistentVolumeClaim",
        "v1",
        "persistentvolumeclaims",
        ("pvc",),
        True,
        storage_pb2.PersistentVolumeClaim,
        "persistent_volume_claim",
    ),
    KindInfo(
        "PersistentVolume",
        "v1",
        "persistentvolumes",
        ("pv",),
        False,
        storage_pb2.PersistentVolume,
        "persistent_volume",
    ),
    KindInfo(
        "StorageClass",
        "storage.k8s.io/v1",
        "storageclasses",
        ("sc",),
        False,
        storage_pb2.StorageClass,
        "storage_class",
    ),
    KindInfo("StatefulSet", "apps/v1", "statefulsets", ("sts",), True, workloads_pb2.StatefulSet, "stateful_set"),
    KindInfo(
        "PodDisruptionBudget",
        "policy/v1",
        "poddisruptionbudgets",
        ("pdb",),
        True,
        policy_pb2.PodDisruptionBudget,
        "pod_disruption_budget",
    ),
    KindInfo("ResourceQuota", "v1", "resourcequotas", ("quota",), True, quota_pb2.ResourceQuota, "resource_quota"),
    KindInfo("LimitRange", "v1", "limitranges", ("limits",), True, quota_pb2.LimitRange, "limit_range"),
    KindInfo("DaemonSet", "apps/v1", "daemonsets", ("ds",), True, workloads_pb2.DaemonSet, "daemon_set"),
    KindInfo("Job", "batch/v1", "jobs", (), True, batch_pb2.Job, "job"),
    KindInfo("CronJob", "batch/v1", "cronjobs", ("cj",), True, batch_pb2.CronJob, "cron_job"),
    KindInfo("Ingress", "networking.k8s.io/v1", "ingresses", ("ing",), True, ingress_pb2.Ingress, "ingress"),
    KindInfo(
        "IngressClass",
        "networking.k8s.io/v1",
        "ingressclasses",
        (),
        False,
        ingress_pb2.IngressClass,
        "ingress_class",
    ),
    KindInfo(
        "ControllerRevision",
        "apps/v1",
        "controllerrevisions",
        (),
        True,
        workloads_pb2.ControllerRevision,
        "controller_revision",
    ),
    KindInfo("Lease", "coordination.k8s.io/v1", "leases", (), True, coordination_pb2.Lease, "lease"),
)

_RBAC_NOTE = "stored, not enforced: corral's access control is its admin and node roles (docs/security.md)"
# The kinds corral stores without acting on them, and the one line said at
# apply about what corral does with each.
STORED_ONLY: dict[str, str] = {
    "ServiceAccount": "stored only: corral mounts no service account token into pods and gives pods no API access",
    "Role": _RBAC_NOTE,
    "ClusterRole": _RBAC_NOTE,
    "RoleBinding": _RBAC_NOTE,
    "ClusterRoleBinding": _RBAC_NOTE,
    "NetworkPolicy": "stored, not enforced: every pod can still reach every pod and Service",
}

_BY_KIND = {k.kind: k for k in KINDS}
_BY_FIELD = {k.field: k for k in KINDS}
_ALIASES: dict[str, KindInfo] = {}
for _k in KINDS:
    for _name in (_k.kind, _k.singular, _k.plural, *_k.short_names):
        _ALIASES[_name.lower()] = _k
        if _k.group:
            _ALIASES[f"{_name.lower()}.{_k.group}"] = _k


class UnknownKindError(ValueError):
    """A kind name that matches no known kind."""

    def __init__(self, name: str) -> None:
        known = ", ".join(k.plural for k in KINDS)
        super().__init__(f'unknown kind "{name}" (known: {known})')
        self.name = name


def resolve(name: str) -> KindInfo:
    """The kind a user-typed name means, in any of kubectl's forms."""
    info = _ALIASES.get(name.strip().lower())
    if info is None:
        raise UnknownKindError(name)
    return info


def by_kind(kind: str) -> KindInfo:
    """The kind for an exact `kind:` value as written in a manifest."""
    info = _BY_KIND.get(kind)
    if info is None:
        raise UnknownKindError(kind)
    return info


def info_of(message: Message) -> KindInfo:
    name = message.DESCRIPTOR.name
    info = _BY_KIND.get(name)
    if info is None:
        raise UnknownKindError(name)
    return info


def wrap(message: Message) -> api_pb2.Object:
    """Put an object into the `Object` envelope used on the wire."""
    info = info_of(message)
    envelope = api_pb2.Object()
    getattr(envelope, info.field).CopyFrom(message)
    return envelope


def unwrap(envelope: api_pb2.Object) -> tuple[KindInfo, Message]:
    """The kind and the object inside an `Object` envelope."""
    field = envelope.WhichOneof("kind")
    if field is None:
        raise UnknownKindError("<empty object>")
    info = _BY_FIELD[field]
    message: Message = getattr(envelope, field)
    return info, message
