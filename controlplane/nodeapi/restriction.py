"""Node restriction: a node acts only as itself (pure; Kubernetes' NodeRestriction admission).

- Labels a node may set on its own Node (`label_forbidden`): not those under
  `node-restriction.kubernetes.io/` (admins use them to steer workloads to
  nodes), nor corral's own `corral.io/`, nor any other label under
  `kubernetes.io/` or `k8s.io/` (roles: `node-role.kubernetes.io/…`) except
  the ones the kubelet sets: `kubernetes.io/hostname` (only its own name:
  a node naming another would draw the pods pinned there), `kubernetes.io/arch`,
  `kubernetes.io/os`, `topology.kubernetes.io/zone` and `/region`,
  `node.kubernetes.io/instance-type` (and their beta forms), and anything under
  `kubelet.kubernetes.io/` or `node.kubernetes.io/` (or corral's own
  `node.corral.io/`).
- A re-registration adds the node's labels that the Node does not have and
  leaves every label it has (an admin's, or an earlier registration's) as it
  is (`merged_node`).
- Reports about pods (status, metrics) speak only of pods bound to the
  reporting node (`bound_elsewhere`).
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

from controlplane.apiserver.errors import Cause
from protos.corral.v1 import node_pb2, node_service_pb2, pod_pb2
from protos.wellknown import HOSTNAME

# The labels under kubernetes.io/ and k8s.io/ a kubelet may set on its own Node.
KUBELET_LABELS = frozenset(
    {
        HOSTNAME,
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
        "beta.kubernetes.io/instance-type",
    }
)
KUBELET_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io", "node.corral.io")
ADMIN_NAMESPACES = ("node-restriction.kubernetes.io", "corral.io")
KUBERNETES_NAMESPACES = ("kubernetes.io", "k8s.io")


def _within(namespace: str, domains: tuple[str, ...]) -> bool:
    return any(namespace == d or namespace.endswith(f".{d}") for d in domains)


def label_forbidden(node: str, key: str, value: str) -> str | None:
    """Why node ``node`` may not set label ``key=value`` on itself (None: it may)."""
    namespace = key.split("/", 1)[0] if "/" in key else ""
    if _within(namespace, ADMIN_NAMESPACES) and not _within(namespace, KUBELET_NAMESPACES):
        return f"labels under {namespace}/ are reserved to admins (who set them with `corral apply` of the Node)"
    if key == HOSTNAME:
        return None if value == node else f'must be the node\'s own name "{node}"'
    if key in KUBELET_LABELS or _within(namespace, KUBELET_NAMESPACES):
        return None
    if _within(namespace, KUBERNETES_NAMESPACES):
        return (
            f"a node may not set labels under {namespace}/ other than the kubelet's own "
            "(roles and other kubernetes.io labels are set by admins)"
        )
    return None


def registration_causes(request: node_service_pb2.RegisterRequest) -> list[Cause]:
    """The labels of a registration the node may not set, as field causes."""
    causes = []
    for key, value in sorted(request.labels.items()):
        why = label_forbidden(request.node_name, key, value)
        if why is not None:
            causes.append(Cause(f"labels.{key[:320]}", why))
    return causes


def merged_node(existing: node_pb2.Node | None, request: node_service_pb2.RegisterRequest) -> node_pb2.Node:
    """The Node as a registration leaves it: the stored one with the node's status (its conditions
    kept) and the node's labels the Node lacks; a new Node when none is stored."""
    node = node_pb2.Node()
    if existing is not None:
        node.CopyFrom(existing)
    else:
        node.metadata.name = request.node_name
    for key, value in request.labels.items():
        node.metadata.labels.setdefault(key, value)
    conditions = list(node.status.conditions)
    node.status.CopyFrom(request.status)
    del node.status.conditions[:]
    node.status.conditions.extend(conditions)
    return node


def labels_kept(existing: node_pb2.Node | None, request: node_service_pb2.RegisterRequest) -> list[str]:
    """The node's labels a registration does not apply: the Node has them with another value."""
    if existing is None:
        return []
    have = existing.metadata.labels
    return sorted(k for k, v in request.labels.items() if k in have and have[k] != v)


def bound_elsewhere(node: str, namespace: str, name: str, uid: str, pods: Mapping[str, Message]) -> str:
    """The node the pod ``namespace/name`` with this uid is bound to, if not ``node`` ("" otherwise:
    bound here, not bound, or not known under this uid)."""
    pod = pods.get(f"{namespace}/{name}")
    if isinstance(pod, pod_pb2.Pod) and pod.metadata.uid == uid and pod.spec.node_name and pod.spec.node_name != node:
        return pod.spec.node_name
    return ""


def bound_here(node: str, namespace: str, name: str, uid: str, pods: Mapping[str, Message]) -> bool:
    """Is the pod ``namespace/name`` with this (non-empty) uid bound to ``node``?"""
    pod = pods.get(f"{namespace}/{name}")
    return bool(uid) and isinstance(pod, pod_pb2.Pod) and pod.metadata.uid == uid and pod.spec.node_name == node
