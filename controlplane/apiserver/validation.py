"""Semantic validation of objects, after defaulting. Pure code: no I/O.

Each check appends a `Cause` naming the field path in the user's (camelCase)
terms, so the CLI can print `web.yaml[0] spec.replicas: must be >= 0, got -1`.
Every problem is reported, not just the first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Literal

from google.protobuf.message import Message

from controlplane.apiserver import (
    batch,
    daemonset_validation,
    ingress_validation,
    labels,
    limits,
    pod_fields,
    pod_security,
    policy_validation,
    quota_validation,
    security,
    service_validation,
    statefulset_validation,
    storage,
)
from controlplane.apiserver.errors import Cause
from controlplane.apiserver.problems import Problems as Problems
from protos import autoscaling, disruption, durations, quantity, wellknown
from protos.corral.v1 import (
    batch_pb2,
    configmap_pb2,
    coordination_pb2,
    discovery_pb2,
    event_pb2,
    ingress_pb2,
    meta_pb2,
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
    storage_pb2,
    workloads_pb2,
)
from protos.deployments import BLUE_GREEN, CANARY, ROLLING_UPDATE, STRATEGIES
from protos.ingresses import TLS_CERT_KEY, TLS_PRIVATE_KEY, TLS_SECRET_TYPE
from protos.kinds import KindInfo
from protos.pods import SIDECAR_RESTART_POLICY, every_container, is_sidecar, is_terminating
from protos.wellknown import NODE_NAME_FIELD

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PERCENT = re.compile(r"^(\d+)%$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# A Secret's data (keys and values) may take at most this many bytes, as in Kubernetes.
MAX_SECRET_BYTES = 1024 * 1024
# A ConfigMap's values (data and binaryData together) likewise.
MAX_CONFIG_MAP_BYTES = 1024 * 1024
# An environment variable name (and an envFrom prefix), as Kubernetes' IsEnvVarName.
ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("TCP", "UDP")
RUNTIMES = ("", *wellknown.RUNTIMES)
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")
NODE_SELECTOR_OPS = (*SELECTOR_OPS, "Gt", "Lt")
# Each strategy's own settings, which only that strategy type may set: (field, JSON name, type).
STRATEGY_SETTINGS: tuple[tuple[Literal["rolling_update", "blue_green", "canary"], str, str], ...] = (
    ("rolling_update", "rollingUpdate", ROLLING_UPDATE),
    ("blue_green", "blueGreen", BLUE_GREEN),
    ("canary", "canary", CANARY),
)
ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
# Kubernetes' limits for one EndpointSlice.
MAX_SLICE_ENDPOINTS = 1000
MAX_SLICE_PORTS = 100
MAX_ENDPOINT_ADDRESSES = 100


def validate(info: KindInfo, obj: Message) -> list[Cause]:
    """Every problem with a defaulted object, as field-path causes."""
    p = Problems()
    limits.check_object(p, obj)
    limits.check_timestamps(p, obj)
    validate_meta(p, info, obj.metadata)  # type: ignore[attr-defined]
    if isinstance(obj, namespace_pb2.Namespace):
        validate_namespace(p, obj)
    elif isinstance(obj, workloads_pb2.Deployment):
        validate_deployment(p, obj)
    elif isinstance(obj, workloads_pb2.ReplicaSet):
        validate_replica_set(p, obj)
    elif isinstance(obj, workloads_pb2.StatefulSet):
        statefulset_validation.validate_stateful_set(
            p,
            obj,
            selector=validate_label_selector,
            template=validate_template,
            label=validate_label,
            int_or_percent=validate_int_or_percent,
            claim_spec=validate_claim_spec,
        )
    elif isinstance(obj, workloads_pb2.ControllerRevision):
        validate_controller_revision(p, obj)
    elif isinstance(obj, coordination_pb2.Lease):
        validate_lease(p, obj)
    elif isinstance(obj, workloads_pb2.DaemonSet):
        daemonset_validation.validate_daemon_set(
            p, obj, selector=validate_label_selector, template=validate_template, int_or_percent=validate_int_or_percent
        )
    elif isinstance(obj, pod_pb2.Pod):
        p.causes.extend(pod_spec_causes(obj.spec))
    elif isinstance(obj, service_pb2.Service):
        service_validation.validate_service(
            p,
            obj.spec,
            labels=validate_labels,
            port_name=validate_port_name,
            label_name=lambda q, path, name: validate_name(q, path, name, label=True),
        )
    elif isinstance(obj, discovery_pb2.EndpointSlice):
        validate_endpoint_slice(p, obj)
    elif isinstance(obj, node_pb2.Node):
        validate_node(p, obj.spec)
        validate_node_status(p, obj.status)
    elif isinstance(obj, event_pb2.Event):
        validate_event(p, obj)
    elif isinstance(obj, metrics_pb2.HorizontalPodAutoscaler):
        validate_hpa(p, obj.spec)
    elif isinstance(obj, secret_pb2.Secret):
        validate_secret(p, obj)
    elif isinstance(obj, configmap_pb2.ConfigMap):
        validate_config_map(p, obj)
    elif isinstance(obj, policy_pb2.PodDisruptionBudget):
        validate_disruption_budget(p, obj.spec)
    elif isinstance(obj, quota_pb2.ResourceQuota):
        quota_validation.validate_resource_quota(p, obj)
    elif isinstance(obj, quota_pb2.LimitRange):
        quota_validation.validate_limit_range(p, obj)
    elif isinstance(obj, storage_pb2.PersistentVolumeClaim):
        validate_claim_spec(p, "spec", obj.spec)
    elif isinstance(obj, storage_pb2.PersistentVolume):
        storage.validate_volume(p, obj, name=validate_name, affinity=validate_node_selector)
    elif isinstance(obj, storage_pb2.StorageClass):
        storage.validate_storage_class(p, obj, name=validate_name)
    elif isinstance(obj, batch_pb2.Job):
        batch.validate_job(
            p, obj, template=validate_template, selector=validate_label_selector, label_value=validate_name
        )
    elif isinstance(obj, batch_pb2.CronJob):
        batch.validate_cron_job(p, obj, template=validate_template, selector=validate_label_selector)
    elif isinstance(obj, ingress_pb2.Ingress):
        ingress_validation.validate_ingress(p, obj, validate_label, validate_port_name)
    elif isinstance(obj, ingress_pb2.IngressClass):
        ingress_validation.validate_ingress_class(p, obj)
    else:
        validate_policy_object(p, obj)
    return p.causes


def validate_policy_object(p: Problems, obj: Message) -> None:
    """RBAC objects and NetworkPolicies: stored, not acted on, but checked as Kubernetes checks them."""
    if isinstance(obj, rbac_pb2.Role):
        policy_validation.validate_rules(p, "rules", list(obj.rules), namespaced=True)
    elif isinstance(obj, rbac_pb2.ClusterRole):
        policy_validation.validate_cluster_role(p, obj, validate_label_selector)
    elif isinstance(obj, rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding):
        label = isinstance(obj, rbac_pb2.RoleBinding)
        policy_validation.validate_binding(p, obj, namespaced=label, label_name=validate_name)
    elif isinstance(obj, networking_pb2.NetworkPolicy):
        policy_validation.validate_network_policy(
            p,
            obj.spec,
            has_spec=obj.HasField("spec"),
            selector=validate_optional_selector,
            port_name=validate_port_name,
        )


def validate_update(info: KindInfo, old: Message, new: Message) -> list[Cause]:
    """Rules about what may change between the stored object and a new one."""
    p = Problems()
    if (
        isinstance(old, workloads_pb2.Deployment | workloads_pb2.ReplicaSet)
        and isinstance(new, workloads_pb2.Deployment | workloads_pb2.ReplicaSet)
        and old.spec.selector != new.spec.selector
    ):
        p.add("spec.selector", "field is immutable")
    if isinstance(old, pod_pb2.Pod) and isinstance(new, pod_pb2.Pod) and is_terminating(old) and old.spec != new.spec:
        p.add("spec", "the pod is being deleted (it has a deletionTimestamp): its spec can no longer change")
    elif (
        isinstance(old, pod_pb2.Pod)
        and isinstance(new, pod_pb2.Pod)
        and _pod_spec_without_images(old.spec) != _pod_spec_without_images(new.spec)
    ):
        p.add(
            "spec",
            "pod updates may not change fields other than spec.containers[*].image and spec.initContainers[*].image "
            "(delete and re-create the pod)",
        )
    if isinstance(old, secret_pb2.Secret) and isinstance(new, secret_pb2.Secret):
        validate_secret_update(p, old, new)
    if isinstance(old, workloads_pb2.StatefulSet) and isinstance(new, workloads_pb2.StatefulSet):
        statefulset_validation.validate_stateful_set_update(p, old, new)
    if isinstance(old, workloads_pb2.DaemonSet) and isinstance(new, workloads_pb2.DaemonSet):
        daemonset_validation.validate_daemon_set_update(p, old, new)
    if isinstance(old, service_pb2.Service) and isinstance(new, service_pb2.Service):
        service_validation.validate_service_update(p, old.spec, new.spec)
    bindings = rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding
    if isinstance(old, bindings) and isinstance(new, bindings):
        policy_validation.validate_binding_update(p, old, new)
    if isinstance(old, configmap_pb2.ConfigMap) and isinstance(new, configmap_pb2.ConfigMap):
        validate_config_map_update(p, old, new)
    validate_storage_update(p, old, new)
    if isinstance(old, batch_pb2.Job) and isinstance(new, batch_pb2.Job):
        batch.validate_job_update(p, old, new)
    if isinstance(old, ingress_pb2.IngressClass) and isinstance(new, ingress_pb2.IngressClass):
        ingress_validation.validate_ingress_class_update(p, old, new)
    if isinstance(old, node_pb2.Node) and isinstance(new, node_pb2.Node):
        validate_node_update(p, old.spec, new.spec)
    revisions = workloads_pb2.ControllerRevision
    if isinstance(old, revisions) and isinstance(new, revisions) and old.data != new.data:
        p.add("data", "field is immutable")  # Kubernetes: only the revision number may change
    del info
    return p.causes


def validate_claim_spec(p: Problems, path: str, spec: storage_pb2.PersistentVolumeClaimSpec) -> None:
    storage.validate_claim_spec(p, path, spec, name=validate_name, selector=validate_optional_selector)


def validate_storage_update(p: Problems, old: Message, new: Message) -> None:
    if isinstance(old, storage_pb2.PersistentVolumeClaim) and isinstance(new, storage_pb2.PersistentVolumeClaim):
        storage.validate_claim_update(p, old, new)
    elif isinstance(old, storage_pb2.PersistentVolume) and isinstance(new, storage_pb2.PersistentVolume):
        storage.validate_volume_update(p, old, new)
    elif isinstance(old, storage_pb2.StorageClass) and isinstance(new, storage_pb2.StorageClass):
        storage.validate_storage_class_update(p, old, new)


def validate_namespace(p: Problems, ns: namespace_pb2.Namespace) -> None:
    """Its pod security labels name a level (its name is a DNS-1123 label: validate_meta); its
    only finalizer is "kubernetes" (corral has no finalize subresource to remove another)."""
    p.causes += pod_security.validate_namespace_labels(ns.metadata.labels)
    for i, finalizer in enumerate(ns.spec.finalizers):
        if finalizer != wellknown.NAMESPACE_FINALIZER:
            p.add(
                f"spec.finalizers[{i}]",
                f'unsupported value "{finalizer[:100]}": corral supports only "{wellknown.NAMESPACE_FINALIZER}" '
                "(it has no finalize subresource to remove another)",
            )


def validate_disruption_budget(p: Problems, spec: policy_pb2.PodDisruptionBudgetSpec) -> None:
    """As Kubernetes: at most one of minAvailable and maxUnavailable, each a count >= 0 or a
    percentage up to 100%; a valid selector (absent or empty allowed); a known eviction policy."""
    if spec.HasField("min_available") and spec.HasField("max_unavailable"):
        p.add("spec", "minAvailable and maxUnavailable cannot be both set")
    if spec.HasField("min_available"):
        validate_int_or_percent(p, "spec.minAvailable", spec.min_available)
    if spec.HasField("max_unavailable"):
        validate_int_or_percent(p, "spec.maxUnavailable", spec.max_unavailable)
    if spec.HasField("selector"):
        validate_optional_selector(p, "spec.selector", spec.selector)
    if spec.unhealthy_pod_eviction_policy:
        p.one_of(
            "spec.unhealthyPodEvictionPolicy",
            spec.unhealthy_pod_eviction_policy,
            disruption.UNHEALTHY_POD_EVICTION_POLICIES,
        )


def validate_secret(p: Problems, secret: secret_pb2.Secret) -> None:
    """After defaulting (stringData merged into data)."""
    for key in sorted(secret.data):
        validate_secret_key(p, f"data.{key}", key)
    if secret.type == TLS_SECRET_TYPE:
        for key in (TLS_CERT_KEY, TLS_PRIVATE_KEY):
            if key not in secret.data:
                p.add(f"data[{key}]", f"required for a Secret of type {TLS_SECRET_TYPE}")
    size = sum(len(k) + len(v) for k, v in secret.data.items())
    if size > MAX_SECRET_BYTES:
        p.add("data", f"too long: must have at most {MAX_SECRET_BYTES} bytes, got {size}")


def validate_secret_key(p: Problems, path: str, key: str) -> None:
    """Kubernetes' IsConfigMapKey (a key may be a file name in a volume: never "..something")."""
    if len(key) > 253 or not _SECRET_KEY.match(key) or key in (".", ".."):
        p.add(path, f'invalid key "{key[:60]}": must consist of alphanumeric characters, "-", "_" or "."')
    elif key.startswith(".."):
        p.add(path, f"invalid key \"{key[:60]}\": must not start with '..'")


def validate_secret_update(p: Problems, old: secret_pb2.Secret, new: secret_pb2.Secret) -> None:
    if old.type != new.type:
        p.add("type", "field is immutable")
    if old.immutable:
        if old.data != new.data:
            p.add("data", "field is immutable when `immutable` is set")
        if not new.immutable:
            p.add("immutable", "field is immutable when `immutable` is set")


def validate_config_map(p: Problems, cm: configmap_pb2.ConfigMap) -> None:
    """Keys as Secret keys, none in both maps, at most 1 MiB of values."""
    for key in sorted(cm.data):
        validate_secret_key(p, f"data.{key}", key)
    for key in sorted(cm.binary_data):
        validate_secret_key(p, f"binaryData.{key}", key)
        if key in cm.data:
            p.add(f"binaryData.{key}", f'duplicate of key "{key}" in data')
    size = sum(len(v.encode("utf-8")) for v in cm.data.values()) + sum(len(v) for v in cm.binary_data.values())
    if size > MAX_CONFIG_MAP_BYTES:
        p.add("data", f"too long: data and binaryData must have at most {MAX_CONFIG_MAP_BYTES} bytes, got {size}")


def validate_config_map_update(p: Problems, old: configmap_pb2.ConfigMap, new: configmap_pb2.ConfigMap) -> None:
    if old.immutable:
        if old.data != new.data:
            p.add("data", "field is immutable when `immutable` is set")
        if old.binary_data != new.binary_data:
            p.add("binaryData", "field is immutable when `immutable` is set")
        if not new.immutable:
            p.add("immutable", "field is immutable when `immutable` is set")


def _pod_spec_without_images(spec: pod_pb2.PodSpec) -> pod_pb2.PodSpec:
    copy = pod_pb2.PodSpec()
    copy.CopyFrom(spec)
    for _, c in every_container(copy):
        c.image = ""
        c.image_pull_policy = ""
    return copy


# -- metadata ---------------------------------------------------------------


def validate_name(p: Problems, path: str, name: str, *, label: bool = False) -> None:
    if not name:
        p.add(path, "required")
        return
    limit = 63 if label else 253
    pattern = _DNS1123_LABEL if label else _DNS1123_SUBDOMAIN
    if len(name) > limit:
        p.add(path, f"must be no more than {limit} characters, got {len(name)}")
    elif not pattern.match(name):
        what = "a DNS-1123 label" if label else "a DNS-1123 subdomain"
        p.add(path, f'must be {what} (lower case letters, digits, "-"{"" if label else ", ."}), got "{name}"')


def validate_label(p: Problems, path: str, name: str) -> None:
    """A name that must be a DNS-1123 label."""
    validate_name(p, path, name, label=True)


def validate_labels(p: Problems, path: str, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        validate_label_key(p, f"{path}.{key}", key)
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            p.add(
                f"{path}.{key}",
                f'invalid label value "{value}": at most 63 characters, '
                "alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
            )


def validate_label_key(p: Problems, path: str, key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        p.add(path, f'invalid label key prefix "{prefix}": must be a DNS-1123 subdomain')
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        p.add(
            path,
            f'invalid label key "{key}": name part must be at most 63 characters, '
            "alphanumerics, '-', '_' or '.', starting and ending alphanumeric",
        )


def validate_meta(p: Problems, info: KindInfo, meta: meta_pb2.ObjectMeta) -> None:
    if info.group == policy_validation.RBAC_GROUP:
        policy_validation.validate_rbac_name(p, "metadata.name", meta.name)
    else:
        validate_name(p, "metadata.name", meta.name, label=info.kind in ("Service", "Namespace"))
    if info.namespaced:
        validate_name(p, "metadata.namespace", meta.namespace, label=True)
    validate_labels(p, "metadata.labels", meta.labels)
    for key in meta.annotations:
        validate_label_key(p, f"metadata.annotations.{key}", key)
    size = sum(len(k) + len(v) for k, v in meta.annotations.items())
    if size > 256 * 1024:
        p.add("metadata.annotations", f"must have at most 262144 bytes, got {size}")


# -- selectors ---------------------------------------------------------------


def validate_label_selector(p: Problems, path: str, sel: meta_pb2.LabelSelector) -> None:
    if not sel.match_labels and not sel.match_expressions:
        p.add(path, "required: a selector with matchLabels or matchExpressions")
        return
    validate_optional_selector(p, path, sel)


def validate_optional_selector(p: Problems, path: str, sel: meta_pb2.LabelSelector) -> None:
    """A selector that may be empty (an empty one selects everything)."""
    validate_labels(p, f"{path}.matchLabels", sel.match_labels)
    for i, expr in enumerate(sel.match_expressions):
        at = f"{path}.matchExpressions[{i}]"
        validate_label_key(p, f"{at}.key", expr.key)
        p.one_of(f"{at}.operator", expr.operator, SELECTOR_OPS)
        needs_values = expr.operator in ("In", "NotIn")
        if needs_values and not expr.values:
            p.add(f"{at}.values", f"must be non-empty when operator is {expr.operator}")
        if expr.operator in ("Exists", "DoesNotExist") and expr.values:
            p.add(f"{at}.values", f"must be empty when operator is {expr.operator}")


def validate_template_matches(
    p: Problems, path: str, sel: meta_pb2.LabelSelector, template: pod_pb2.PodTemplateSpec
) -> None:
    if p.causes and any(c.field.startswith(f"{path}.selector") for c in p.causes):
        return
    try:
        selector = labels.from_label_selector(sel)
    except labels.SelectorError:
        return
    if not selector.matches(template.metadata.labels):
        shown = ",".join(f"{k}={v}" for k, v in sorted(template.metadata.labels.items()))
        p.add(f"{path}.template.metadata.labels", f'selector does not match template labels "{shown}"')


# -- workloads ---------------------------------------------------------------


def validate_int_or_percent(p: Problems, path: str, value: meta_pb2.IntOrString) -> int | None:
    """Validates maxSurge-like values; returns the number (int or percent) or None."""
    if value.HasField("int_val"):
        if value.int_val < 0:
            p.add(path, f"must be >= 0, got {value.int_val}")
            return None
        return value.int_val
    m = _PERCENT.match(value.str_val)
    if not m:
        p.add(path, f'must be an integer or a percentage such as "25%", got "{value.str_val}"')
        return None
    percent = int(m.group(1))
    if percent > 100:
        p.add(path, f"must not be greater than 100%, got {value.str_val}")
        return None
    return percent


def validate_deployment(p: Problems, d: workloads_pb2.Deployment) -> None:
    spec = d.spec
    p.at_least("spec.replicas", spec.replicas, 0)
    p.at_least("spec.minReadySeconds", spec.min_ready_seconds, 0)
    p.at_least("spec.revisionHistoryLimit", spec.revision_history_limit, 0)
    if spec.progress_deadline_seconds <= spec.min_ready_seconds:
        p.add(
            "spec.progressDeadlineSeconds",
            f"must be greater than minReadySeconds ({spec.min_ready_seconds}), got {spec.progress_deadline_seconds}",
        )
    validate_label_selector(p, "spec.selector", spec.selector)
    validate_template(p, "spec", spec.selector, spec.template)
    if spec.template.spec.restart_policy != "Always":
        p.add(
            "spec.template.spec.restartPolicy",
            f'must be "Always" for a Deployment, got "{spec.template.spec.restart_policy}"',
        )
    validate_strategy(p, spec.strategy)


def validate_strategy(p: Problems, strategy: workloads_pb2.DeploymentStrategy) -> None:
    p.one_of("spec.strategy.type", strategy.type, STRATEGIES)
    for field, name, owner in STRATEGY_SETTINGS:
        if strategy.type in STRATEGIES and strategy.type != owner and strategy.HasField(field):
            p.add(f"spec.strategy.{name}", f'may not be set when type is "{strategy.type}"')
    if strategy.type == BLUE_GREEN:
        validate_blue_green(p, strategy.blue_green)
    elif strategy.type == CANARY:
        validate_canary(p, strategy.canary)
    if strategy.type != ROLLING_UPDATE:
        return
    ru = strategy.rolling_update
    surge = validate_int_or_percent(p, "spec.strategy.rollingUpdate.maxSurge", ru.max_surge)
    unavailable = validate_int_or_percent(p, "spec.strategy.rollingUpdate.maxUnavailable", ru.max_unavailable)
    if surge == 0 and unavailable == 0:
        p.add(
            "spec.strategy.rollingUpdate.maxUnavailable",
            "may not be 0 when maxSurge is 0 (the rollout could never progress)",
        )


def validate_blue_green(p: Problems, blue_green: workloads_pb2.BlueGreenStrategy) -> None:
    p.at_least("spec.strategy.blueGreen.scaleDownDelaySeconds", blue_green.scale_down_delay_seconds, 0)


def validate_canary(p: Problems, canary: workloads_pb2.CanaryStrategy) -> None:
    if canary.HasField("canary_replicas"):
        p.at_least("spec.strategy.canary.canaryReplicas", canary.canary_replicas, 1)
    for i, step in enumerate(canary.steps):
        at = f"spec.strategy.canary.steps[{i}]"
        if step.HasField("set_weight") == step.HasField("pause"):
            p.add(at, "must set exactly one of setWeight, pause")
        if step.HasField("set_weight") and not 0 <= step.set_weight <= 100:
            p.add(f"{at}.setWeight", f"must be 0-100, got {step.set_weight}")
        if step.pause.HasField("duration") and step.pause.duration.WhichOneof("value") is not None:
            problem = durations.duration_problem(step.pause.duration)
            if problem is not None:
                p.add(f"{at}.pause.duration", problem)


def validate_replica_set(p: Problems, rs: workloads_pb2.ReplicaSet) -> None:
    p.at_least("spec.replicas", rs.spec.replicas, 0)
    p.at_least("spec.minReadySeconds", rs.spec.min_ready_seconds, 0)
    validate_label_selector(p, "spec.selector", rs.spec.selector)
    validate_template(p, "spec", rs.spec.selector, rs.spec.template)


def validate_controller_revision(p: Problems, cr: workloads_pb2.ControllerRevision) -> None:
    """revision >= 0; data (the pod template) required, its labels valid. Its spec is a set's
    template, checked with that set (a StatefulSet's names claim volumes added per pod)."""
    p.at_least("revision", cr.revision, 0)
    if not cr.HasField("data"):
        p.add("data", "Required value")
        return
    validate_labels(p, "data.metadata.labels", cr.data.metadata.labels)


def validate_lease(p: Problems, lease: coordination_pb2.Lease) -> None:
    """As Kubernetes' ValidateLeaseSpec: leaseDurationSeconds > 0 and leaseTransitions >= 0 when set."""
    spec = lease.spec
    if spec.HasField("lease_duration_seconds") and spec.lease_duration_seconds <= 0:
        p.add("spec.leaseDurationSeconds", f"must be greater than 0, got {spec.lease_duration_seconds}")
    if spec.HasField("lease_transitions"):
        p.at_least("spec.leaseTransitions", spec.lease_transitions, 0)


def validate_template(p: Problems, path: str, sel: meta_pb2.LabelSelector, template: pod_pb2.PodTemplateSpec) -> None:
    validate_labels(p, f"{path}.template.metadata.labels", template.metadata.labels)
    validate_template_matches(p, path, sel, template)
    validate_pod_spec(p, f"{path}.template.spec", template.spec)


# -- pods --------------------------------------------------------------------


# The causes of the last pod specs validated, by their bytes: a ReplicaSet's pods share
# their template's spec, so 10,000 of them are validated once (a pure function of the spec).
_SPEC_CAUSES: dict[bytes, tuple[Cause, ...]] = {}
SPEC_MEMO = 256


def pod_spec_causes(spec: pod_pb2.PodSpec) -> tuple[Cause, ...]:
    """`validate_pod_spec` at "spec", remembered for the last `SPEC_MEMO` specs."""
    key = spec.SerializeToString(deterministic=True)
    found = _SPEC_CAUSES.get(key)
    if found is None:
        q = Problems()
        validate_pod_spec(q, "spec", spec)
        found = tuple(q.causes)
        if len(_SPEC_CAUSES) >= SPEC_MEMO:
            del _SPEC_CAUSES[next(iter(_SPEC_CAUSES))]
        _SPEC_CAUSES[key] = found
    return found


def validate_pod_spec(p: Problems, path: str, spec: pod_pb2.PodSpec) -> None:
    if not spec.containers:
        p.add(f"{path}.containers", "required: at least one container")
    p.one_of(f"{path}.restartPolicy", spec.restart_policy, RESTART_POLICIES)
    p.one_of(f"{path}.runtimeClassName", spec.runtime_class_name, RUNTIMES)
    if spec.service_account_name:
        validate_name(p, f"{path}.serviceAccountName", spec.service_account_name)
    for json_name, value in (("hostname", spec.hostname), ("subdomain", spec.subdomain)):
        if value:
            validate_label(p, f"{path}.{json_name}", value)
    limits.check_pod_spec(p, path, spec)
    validate_labels(p, f"{path}.nodeSelector", spec.node_selector)
    seen: set[str] = set()
    app_host_ports: set[tuple[int, str]] = set()
    for where, c in every_container(spec):
        at = f"{path}.{where}"
        validate_container(p, at, c, spec.termination_grace_period_seconds)
        if c.name in seen:
            p.add(f"{at}.name", f'duplicate container name "{c.name}"')
        seen.add(c.name)
        is_init = where.startswith("initContainers")
        if is_init:
            validate_init_container(p, at, c)
        elif c.HasField("restart_policy"):
            p.add(f"{at}.restartPolicy", "may not be set for non-init containers")
        # Plain init containers run one at a time: each is checked for host port clashes on its own;
        # sidecars run beside the app containers.
        is_init = is_init and not is_sidecar(c)
        host_ports: set[tuple[int, str]] = set() if is_init else app_host_ports
        for j, port in enumerate(c.ports):
            key = (port.host_port, port.protocol)
            if port.host_port and key in host_ports:
                p.add(f"{at}.ports[{j}].hostPort", f"duplicate host port {port.host_port}/{port.protocol}")
            host_ports.add(key)
            if spec.host_network and port.host_port != port.container_port:
                p.add(
                    f"{at}.ports[{j}].hostPort",
                    f"must match containerPort ({port.container_port}) when hostNetwork is true, got {port.host_port}",
                )
    for i, t in enumerate(spec.tolerations):
        validate_toleration(p, f"{path}.tolerations[{i}]", t)
    validate_affinity(p, f"{path}.affinity", spec.affinity)
    pod_fields.validate_pod_fields(p, path, spec, selector=validate_label_selector, node_terms=validate_node_selector)
    security.validate_pod_security(p, path, spec)


def validate_container(p: Problems, path: str, c: pod_pb2.Container, grace: int) -> None:
    validate_name(p, f"{path}.name", c.name, label=True)
    if not c.image.strip():
        p.add(f"{path}.image", "required")
    p.one_of(f"{path}.imagePullPolicy", c.image_pull_policy, PULL_POLICIES)
    names: set[str] = set()
    for i, port in enumerate(c.ports):
        at = f"{path}.ports[{i}]"
        p.port(f"{at}.containerPort", port.container_port)
        p.port(f"{at}.hostPort", port.host_port, allow_zero=True)
        p.one_of(f"{at}.protocol", port.protocol, PROTOCOLS)
        if port.name:
            validate_port_name(p, f"{at}.name", port.name)
            if port.name in names:
                p.add(f"{at}.name", f'duplicate port name "{port.name}"')
            names.add(port.name)
    for i, env in enumerate(c.env):
        if not env.name:
            p.add(f"{path}.env[{i}].name", "required")
        if env.HasField("value_from"):
            validate_env_source(p, f"{path}.env[{i}]", env)
    for i, source in enumerate(c.env_from):
        validate_env_from(p, f"{path}.envFrom[{i}]", source)
    validate_resources(p, f"{path}.resources", c.resources)
    probes = (
        ("livenessProbe", c.HasField("liveness_probe"), c.liveness_probe),
        ("readinessProbe", c.HasField("readiness_probe"), c.readiness_probe),
        ("startupProbe", c.HasField("startup_probe"), c.startup_probe),
    )
    for json_name, present, probe in probes:
        if present:
            validate_probe(p, f"{path}.{json_name}", probe, names)
        if present and json_name != "readinessProbe" and probe.success_threshold != 1:
            # Kubernetes': a liveness or startup probe passes on its first success.
            p.add(f"{path}.{json_name}.successThreshold", f"must be 1, got {probe.success_threshold}")
    if c.HasField("lifecycle"):
        validate_lifecycle(p, f"{path}.lifecycle", c.lifecycle, names, grace)


def validate_init_container(p: Problems, path: str, c: pod_pb2.Container) -> None:
    """Kubernetes' rules for an init container: restartPolicy only "Always" (a sidecar, which may
    have probes and lifecycle hooks); one without it runs to completion, so it may have neither."""
    if c.HasField("restart_policy"):
        p.one_of(f"{path}.restartPolicy", c.restart_policy, (SIDECAR_RESTART_POLICY,))
    if is_sidecar(c):
        return
    for json_name, field in (
        ("lifecycle", "lifecycle"),
        ("livenessProbe", "liveness_probe"),
        ("readinessProbe", "readiness_probe"),
        ("startupProbe", "startup_probe"),
    ):
        if c.HasField(field):  # type: ignore[arg-type]
            p.add(f"{path}.{json_name}", "may not be set for init containers without restartPolicy=Always")


def validate_env_source(p: Problems, path: str, env: pod_pb2.EnvVar) -> None:
    """value and valueFrom are exclusive; valueFrom names a Secret or a ConfigMap and a key,
    or a field of the pod (fieldRef)."""
    if env.value:
        p.add(f"{path}.valueFrom", "may not be specified when `value` is not empty")
    source = env.value_from
    downward = [name for name in ("field_ref", "resource_field_ref") if source.HasField(name)]
    if downward:
        if len(downward) > 1 or source.HasField("secret_key_ref") or source.HasField("config_map_key_ref"):
            p.add(f"{path}.valueFrom", "may not have more than one field specified at a time")
        if source.HasField("field_ref"):
            pod_fields.validate_field_ref(p, f"{path}.valueFrom.fieldRef", source.field_ref)
        else:
            pod_fields.validate_resource_field_ref(p, f"{path}.valueFrom.resourceFieldRef", source.resource_field_ref)
        return
    refs = [
        (json_name, ref)
        for json_name, field, ref in (
            ("secretKeyRef", "secret_key_ref", source.secret_key_ref),
            ("configMapKeyRef", "config_map_key_ref", source.config_map_key_ref),
        )
        if source.HasField(field)  # type: ignore[arg-type]
    ]
    if not refs:
        p.add(f"{path}.valueFrom", "must specify fieldRef, resourceFieldRef, secretKeyRef or configMapKeyRef")
        return
    if len(refs) > 1:
        p.add(f"{path}.valueFrom", "may not have more than one field specified at a time")
        return
    json_name, ref = refs[0]
    validate_name(p, f"{path}.valueFrom.{json_name}.name", ref.name)
    if not ref.key:
        p.add(f"{path}.valueFrom.{json_name}.key", "required")
    else:
        validate_secret_key(p, f"{path}.valueFrom.{json_name}.key", ref.key)


def validate_env_from(p: Problems, path: str, source: pod_pb2.EnvFromSource) -> None:
    """Exactly one of configMapRef and secretRef, naming an object; a prefix that is a variable name."""
    if source.prefix and not ENV_VAR_NAME.match(source.prefix):
        p.add(
            f"{path}.prefix",
            f'must be a valid environment variable name (letters, digits, "_", "-" or ".", '
            f'not starting with a digit), got "{source.prefix[:60]}"',
        )
    refs = [
        (json_name, ref)
        for json_name, field, ref in (
            ("configMapRef", "config_map_ref", source.config_map_ref),
            ("secretRef", "secret_ref", source.secret_ref),
        )
        if source.HasField(field)  # type: ignore[arg-type]
    ]
    if not refs:
        p.add(path, "must specify configMapRef or secretRef")
    elif len(refs) > 1:
        p.add(path, "may not have more than one field specified at a time")
    else:
        json_name, ref = refs[0]
        validate_name(p, f"{path}.{json_name}.name", ref.name)


def validate_port_name(p: Problems, path: str, name: str) -> None:
    if len(name) > 15 or not _PORT_NAME.match(name) or not re.search("[a-z]", name):
        p.add(
            path,
            f"must be an IANA service name (at most 15 lower case letters, digits "
            f'and "-", with at least one letter), got "{name}"',
        )


def validate_resources(p: Problems, path: str, res: pod_pb2.ResourceRequirements) -> None:
    parsed: dict[str, dict[str, int]] = {"requests": {}, "limits": {}}
    for part, values in (("requests", res.requests), ("limits", res.limits)):
        for name, text in values.items():
            at = f"{path}.{part}.{name}"
            if name not in ("cpu", "memory", "ephemeral-storage"):
                p.add(at, f'unknown resource "{name}" (known: cpu, memory, ephemeral-storage)')
                continue
            try:
                amount = quantity.cpu_millis(text) if name == "cpu" else quantity.memory_bytes(text)
            except ValueError as e:
                p.add(at, str(e))
                continue
            parsed[part][name] = amount
    for name, limit in parsed["limits"].items():
        request = parsed["requests"].get(name)
        if request is not None and request > limit:
            p.add(
                f"{path}.requests.{name}",
                f'must be less than or equal to the limit "{res.limits[name]}", got "{res.requests[name]}"',
            )


def validate_probe(p: Problems, path: str, probe: pod_pb2.Probe, port_names: set[str]) -> None:
    handlers = [h for h in ("exec", "http_get", "tcp_socket", "grpc") if probe.HasField(h)]
    if len(handlers) != 1:
        p.add(path, f"must set exactly one of exec, httpGet, tcpSocket, grpc{'' if handlers else ' (none set)'}")
    validate_handler_actions(p, path, probe, port_names)
    if probe.HasField("tcp_socket"):
        validate_probe_port(p, f"{path}.tcpSocket.port", probe.tcp_socket.port, port_names)
    if probe.HasField("grpc"):
        p.port(f"{path}.grpc.port", probe.grpc.port)
    for name, value in (("initialDelaySeconds", probe.initial_delay_seconds),):
        p.at_least(f"{path}.{name}", value, 0)
    for name, value in (
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ):
        p.at_least(f"{path}.{name}", value, 1)


def validate_handler_actions(
    p: Problems, path: str, handler: pod_pb2.Probe | pod_pb2.LifecycleHandler, port_names: set[str]
) -> None:
    """The exec and httpGet actions probes and lifecycle hooks share."""
    if handler.HasField("exec") and not handler.exec.command:
        p.add(f"{path}.exec.command", "required")
    if handler.HasField("http_get"):
        validate_probe_port(p, f"{path}.httpGet.port", handler.http_get.port, port_names)
        p.one_of(f"{path}.httpGet.scheme", handler.http_get.scheme, ("HTTP", "HTTPS"))


def validate_lifecycle(p: Problems, path: str, hooks: pod_pb2.Lifecycle, port_names: set[str], grace: int) -> None:
    """postStart and preStop: exactly one of exec, httpGet, sleep each; tcpSocket is refused
    (deprecated in Kubernetes, where it does nothing)."""
    for json_name, field in (("postStart", "post_start"), ("preStop", "pre_stop")):
        if not hooks.HasField(field):  # type: ignore[arg-type]
            continue
        at = f"{path}.{json_name}"
        handler: pod_pb2.LifecycleHandler = getattr(hooks, field)
        handlers = [h for h in ("exec", "http_get", "tcp_socket", "sleep") if handler.HasField(h)]
        if len(handlers) != 1:
            p.add(at, f"must set exactly one of exec, httpGet, sleep{'' if handlers else ' (none set)'}")
        if handler.HasField("tcp_socket"):
            p.add(
                f"{at}.tcpSocket",
                "not supported: tcpSocket is deprecated as a lifecycle handler (use exec, httpGet or sleep)",
            )
        validate_handler_actions(p, at, handler, port_names)
        if handler.HasField("sleep") and not 0 <= handler.sleep.seconds <= grace:
            p.add(
                f"{at}.sleep.seconds",
                f"must be between 0 and terminationGracePeriodSeconds ({grace}), got {handler.sleep.seconds}",
            )


def validate_probe_port(p: Problems, path: str, port: meta_pb2.IntOrString, names: set[str]) -> None:
    if port.HasField("int_val"):
        p.port(path, port.int_val)
    elif port.str_val:
        if port.str_val not in names:
            p.add(path, f'names no port of this container: "{port.str_val}"')
    else:
        p.add(path, "required")


def validate_toleration(p: Problems, path: str, t: pod_pb2.Toleration) -> None:
    p.one_of(f"{path}.operator", t.operator, ("Equal", "Exists"))
    if t.effect:
        p.one_of(f"{path}.effect", t.effect, TAINT_EFFECTS)
    if t.operator == "Exists" and t.value:
        p.add(f"{path}.value", 'must be empty when operator is "Exists"')
    if not t.key and t.operator != "Exists":
        p.add(f"{path}.key", 'required unless operator is "Exists"')
    if t.HasField("toleration_seconds") and t.effect != "NoExecute":
        p.add(f"{path}.tolerationSeconds", 'only allowed with effect "NoExecute"')


def validate_affinity(p: Problems, path: str, affinity: pod_pb2.Affinity) -> None:
    required = affinity.node_affinity.required_during_scheduling_ignored_during_execution
    validate_node_selector(p, f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution", required)


def validate_node_selector(p: Problems, base: str, required: pod_pb2.NodeSelector) -> None:
    for i, term in enumerate(required.node_selector_terms):
        for j, expr in enumerate(term.match_expressions):
            at = f"{base}.nodeSelectorTerms[{i}].matchExpressions[{j}]"
            validate_label_key(p, f"{at}.key", expr.key)
            p.one_of(f"{at}.operator", expr.operator, NODE_SELECTOR_OPS)
            if expr.operator in ("Gt", "Lt") and (len(expr.values) != 1 or not expr.values[0].lstrip("-").isdigit()):
                p.add(f"{at}.values", f"must be one integer for operator {expr.operator}")
        for j, expr in enumerate(term.match_fields):
            at = f"{base}.nodeSelectorTerms[{i}].matchFields[{j}]"
            if expr.key != NODE_NAME_FIELD:
                p.add(f"{at}.key", f'must be "{NODE_NAME_FIELD}" (the only node field selectable), got "{expr.key}"')
            p.one_of(f"{at}.operator", expr.operator, ("In", "NotIn"))
            if len(expr.values) != 1:
                p.add(f"{at}.values", f"must have one value (a node name), got {len(expr.values)}")


# -- services, nodes, events --------------------------------------------------


def validate_endpoint_slice(p: Problems, endpoint_slice: discovery_pb2.EndpointSlice) -> None:
    p.one_of("addressType", endpoint_slice.address_type, ADDRESS_TYPES)
    if len(endpoint_slice.ports) > MAX_SLICE_PORTS:
        p.add("ports", f"must have at most {MAX_SLICE_PORTS} items, got {len(endpoint_slice.ports)}")
    names: set[str] = set()
    for i, port in enumerate(endpoint_slice.ports):
        at = f"ports[{i}]"
        if port.name:
            validate_name(p, f"{at}.name", port.name, label=True)
        if port.name in names:
            p.add(f"{at}.name", f'duplicate port name "{port.name}"')
        names.add(port.name)
        service_validation.validate_protocol(p, f"{at}.protocol", port.protocol)
        if port.HasField("port"):
            p.port(f"{at}.port", port.port)
    if len(endpoint_slice.endpoints) > MAX_SLICE_ENDPOINTS:
        p.add("endpoints", f"must have at most {MAX_SLICE_ENDPOINTS} items, got {len(endpoint_slice.endpoints)}")
    for i, endpoint in enumerate(endpoint_slice.endpoints):
        validate_endpoint(p, f"endpoints[{i}]", endpoint, endpoint_slice.address_type, names)
    for group, weight in endpoint_slice.traffic_weights.items():
        if not group or len(group) > 63 or not _LABEL_VALUE.match(group):
            p.add(f"trafficWeights.{group}", "must be a pod-template-hash (a label value)")
        p.at_least(f"trafficWeights.{group}", weight, 0)


def validate_endpoint(
    p: Problems, path: str, endpoint: discovery_pb2.Endpoint, address_type: str, port_names: set[str]
) -> None:
    if not 1 <= len(endpoint.addresses) <= MAX_ENDPOINT_ADDRESSES:
        p.add(f"{path}.addresses", f"must have 1-{MAX_ENDPOINT_ADDRESSES} items, got {len(endpoint.addresses)}")
    for j, address in enumerate(endpoint.addresses):
        validate_address(p, f"{path}.addresses[{j}]", address, address_type)
    if endpoint.node_name:
        validate_name(p, f"{path}.nodeName", endpoint.node_name)
    for name, host_port in endpoint.host_ports.items():
        at = f"{path}.hostPorts.{name}" if name else f'{path}.hostPorts[""]'
        if name not in port_names:
            p.add(at, f'names no port of this slice: "{name}"')
        p.port(at, host_port)


def validate_address(p: Problems, path: str, address: str, address_type: str) -> None:
    if address_type not in ADDRESS_TYPES:
        return
    if address_type == "FQDN":
        validate_name(p, path, address)
        return
    parse = ipaddress.IPv4Address if address_type == "IPv4" else ipaddress.IPv6Address
    try:
        parse(address)
    except ValueError:
        p.add(path, f'must be an {address_type} address, got "{address}"')


def validate_node(p: Problems, spec: node_pb2.NodeSpec) -> None:
    for i, taint in enumerate(spec.taints):
        at = f"spec.taints[{i}]"
        validate_label_key(p, f"{at}.key", taint.key)
        p.one_of(f"{at}.effect", taint.effect, TAINT_EFFECTS)
    if spec.pod_cidr:
        try:
            ipaddress.IPv4Network(spec.pod_cidr, strict=True)
        except ValueError:
            p.add("spec.podCIDR", f'must be an IPv4 CIDR such as 10.42.1.0/24, got "{spec.pod_cidr[:64]}"')
    if list(spec.pod_cidrs) not in ([], [spec.pod_cidr]):
        p.add("spec.podCIDRs", "must be empty or hold spec.podCIDR alone (IPv4 single stack)")


def validate_node_update(p: Problems, old: node_pb2.NodeSpec, new: node_pb2.NodeSpec) -> None:
    """A pod subnet, once given, stays (Kubernetes': podCIDRs may not change once set)."""
    if old.pod_cidr and new.pod_cidr != old.pod_cidr:
        p.add("spec.podCIDR", f"field is immutable once set (it is {old.pod_cidr})")


NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname", "InternalDNS", "ExternalDNS")
# Bounds on what an agent reports of its machine (a status is its node's own word, and kept in etcd).
MAX_NODE_ADDRESSES = 32
MAX_NODE_RUNTIMES = 8
MAX_NODE_RESOURCES = 32
MAX_NODE_INFO = 256


def validate_node_status(p: Problems, status: node_pb2.NodeStatus) -> None:
    """What the node's agent reports (Register) or an admin writes: resources are quantities,
    addresses typed and valid, runtimes names, every list and string bounded."""
    for part, values in (("capacity", status.capacity), ("allocatable", status.allocatable)):
        if len(values) > MAX_NODE_RESOURCES:
            p.add(f"status.{part}", f"must have at most {MAX_NODE_RESOURCES} resources, got {len(values)}")
            continue
        for name, text in sorted(values.items()):
            validate_label_key(p, f"status.{part}.{name}", name)
            try:
                quantity.parse_quantity(text)
            except ValueError as e:
                p.add(f"status.{part}.{name}", str(e))
    if len(status.addresses) > MAX_NODE_ADDRESSES:
        p.add("status.addresses", f"must have at most {MAX_NODE_ADDRESSES} items, got {len(status.addresses)}")
    else:
        for i, address in enumerate(status.addresses):
            p.one_of(f"status.addresses[{i}].type", address.type[:64], NODE_ADDRESS_TYPES)
            if not 0 < len(address.address) <= 253 or not address.address.isprintable() or " " in address.address:
                p.add(
                    f"status.addresses[{i}].address",
                    "must be an address or host name of 1-253 printable characters without spaces",
                )
    if len(status.runtimes) > MAX_NODE_RUNTIMES:
        p.add("status.runtimes", f"must have at most {MAX_NODE_RUNTIMES} items, got {len(status.runtimes)}")
    else:
        for i, runtime in enumerate(status.runtimes):
            validate_name(p, f"status.runtimes[{i}]", runtime, label=True)
    for field, value in status.node_info.ListFields():
        if isinstance(value, str) and len(value) > MAX_NODE_INFO:
            p.add(
                f"status.nodeInfo.{field.json_name}",
                f"must be no more than {MAX_NODE_INFO} characters, got {len(value)}",
            )


def validate_event(p: Problems, e: event_pb2.Event) -> None:
    if not e.involved_object.kind or not e.involved_object.name:
        p.add("involvedObject", "required: kind and name")
    if e.type:
        p.one_of("type", e.type, ("Normal", "Warning"))
    if not e.reason:
        p.add("reason", "required")


# -- horizontal pod autoscalers -------------------------------------------------


def validate_hpa(p: Problems, spec: metrics_pb2.HorizontalPodAutoscalerSpec) -> None:
    ref = spec.scale_target_ref
    if not ref.kind:
        p.add("spec.scaleTargetRef.kind", "required")
    else:
        p.one_of("spec.scaleTargetRef.kind", ref.kind, autoscaling.TARGET_KINDS)
    validate_name(p, "spec.scaleTargetRef.name", ref.name)
    if ref.api_version and ref.kind in autoscaling.TARGET_KINDS and ref.api_version != "apps/v1":
        p.add("spec.scaleTargetRef.apiVersion", f'must be "apps/v1" for {ref.kind}, got "{ref.api_version}"')
    low = autoscaling.min_replicas(spec)
    p.at_least("spec.minReplicas", low, 1)
    if spec.max_replicas < 1:
        p.at_least("spec.maxReplicas", spec.max_replicas, 1)
    elif spec.max_replicas < low:
        p.add("spec.maxReplicas", f"must be greater than or equal to minReplicas ({low}), got {spec.max_replicas}")
    for i, metric in enumerate(spec.metrics):
        validate_hpa_metric(p, f"spec.metrics[{i}]", metric)
    if spec.HasField("behavior"):
        for name, rules in (("scaleUp", spec.behavior.scale_up), ("scaleDown", spec.behavior.scale_down)):
            validate_hpa_rules(p, f"spec.behavior.{name}", rules)


def validate_hpa_metric(p: Problems, path: str, metric: metrics_pb2.MetricSpec) -> None:
    p.one_of(f"{path}.type", metric.type, autoscaling.METRIC_TYPES)
    if metric.HasField("resource") and metric.type == "Pods":
        p.add(f"{path}.resource", 'must not be set when type is "Pods"')
    if metric.HasField("pods") and metric.type == "Resource":
        p.add(f"{path}.pods", 'must not be set when type is "Resource"')
    if metric.type == "Resource":
        resource = metric.resource
        if not metric.HasField("resource"):
            p.add(f"{path}.resource", 'required when type is "Resource"')
        elif not resource.name:
            p.add(f"{path}.resource.name", "required")
        else:
            p.one_of(f"{path}.resource.name", resource.name, autoscaling.RESOURCES)
        validate_hpa_target(p, f"{path}.resource.target", resource.target, autoscaling.TARGET_TYPES)
    elif metric.type == "Pods":
        pods = metric.pods
        if not metric.HasField("pods"):
            p.add(f"{path}.pods", 'required when type is "Pods"')
        elif not pods.metric.name:
            p.add(f"{path}.pods.metric.name", "required")
        else:
            p.one_of(f"{path}.pods.metric.name", pods.metric.name, autoscaling.POD_METRICS)
        if pods.metric.selector.match_labels or pods.metric.selector.match_expressions:
            p.add(f"{path}.pods.metric.selector", "not supported: corral's pod metrics have no labels to select")
        validate_hpa_target(p, f"{path}.pods.target", pods.target, ("AverageValue",))


def validate_hpa_target(p: Problems, path: str, target: metrics_pb2.MetricTarget, types: tuple[str, ...]) -> None:
    if not target.type:
        p.add(f"{path}.type", "required")
        return
    p.one_of(f"{path}.type", target.type, types)
    if target.value:
        p.add(f"{path}.value", 'not supported: use type "AverageValue" (a value per pod)')
    if target.type == "Utilization":
        if not target.HasField("average_utilization"):
            p.add(f"{path}.averageUtilization", 'required when type is "Utilization"')
        else:
            p.at_least(f"{path}.averageUtilization", target.average_utilization, 1)
        if target.average_value:
            p.add(f"{path}.averageValue", 'must not be set when type is "Utilization"')
    elif target.type == "AverageValue":
        if target.HasField("average_utilization"):
            p.add(f"{path}.averageUtilization", 'must not be set when type is "AverageValue"')
        if not target.average_value:
            p.add(f"{path}.averageValue", 'required when type is "AverageValue"')
            return
        try:
            amount = quantity.parse_quantity(target.average_value)
        except ValueError as e:
            p.add(f"{path}.averageValue", str(e))
            return
        if amount <= 0:
            p.add(f"{path}.averageValue", f'must be positive, got "{target.average_value}"')


def validate_hpa_rules(p: Problems, path: str, rules: metrics_pb2.HPAScalingRules) -> None:
    window = rules.stabilization_window_seconds
    if not 0 <= window <= autoscaling.MAX_STABILIZATION_WINDOW:
        p.add(
            f"{path}.stabilizationWindowSeconds",
            f"must be 0-{autoscaling.MAX_STABILIZATION_WINDOW} seconds, got {window}",
        )
    p.one_of(f"{path}.selectPolicy", rules.select_policy, autoscaling.SELECT_POLICIES)
    if not rules.policies:
        p.add(f"{path}.policies", "required: at least one policy")
    for j, policy in enumerate(rules.policies):
        at = f"{path}.policies[{j}]"
        p.one_of(f"{at}.type", policy.type, autoscaling.POLICY_TYPES)
        p.at_least(f"{at}.value", policy.value, 1)
        if not 1 <= policy.period_seconds <= autoscaling.MAX_POLICY_PERIOD:
            p.add(
                f"{at}.periodSeconds", f"must be 1-{autoscaling.MAX_POLICY_PERIOD} seconds, got {policy.period_seconds}"
            )
