"""Server-side defaulting, the values Kubernetes fills in when a field is unset.

Runs before validation on every create, update and apply, so stored objects are
always complete and `apply` of the same manifest twice compares equal.
Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from controlplane.apiserver import storage
from protos import daemonsets, statefulsets
from protos.autoscaling import default_hpa
from protos.corral.v1 import (
    batch_pb2,
    discovery_pb2,
    meta_pb2,
    metrics_pb2,
    namespace_pb2,
    networking_pb2,
    node_pb2,
    pod_pb2,
    quota_pb2,
    rbac_pb2,
    secret_pb2,
    service_pb2,
    storage_pb2,
    workloads_pb2,
)
from protos.deployments import (
    BLUE_GREEN,
    CANARY,
    DEFAULT_MAX_SURGE,
    DEFAULT_MAX_UNAVAILABLE,
    DEFAULT_PROGRESS_DEADLINE_SECONDS,
    DEFAULT_REVISION_HISTORY_LIMIT,
    DEFAULT_SCALE_DOWN_DELAY_SECONDS,
    ROLLING_UPDATE,
)
from protos.jobs import default_cron_job_spec, default_job_spec
from protos.kinds import KindInfo
from protos.pods import DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, every_container
from protos.services import CLIENT_IP, DEFAULT_AFFINITY_SECONDS
from protos.wellknown import DEFAULT_NAMESPACE, NAMESPACE_FINALIZER

DEFAULT_LOAD_BALANCING = "RoundRobin"
DEFAULT_ADDRESS_TYPE = "IPv4"


def apply_defaults(info: KindInfo, obj: Message) -> None:
    """Fill in defaults in place."""
    obj.api_version = info.api_version  # type: ignore[attr-defined]
    obj.kind = info.kind  # type: ignore[attr-defined]
    meta: meta_pb2.ObjectMeta = obj.metadata  # type: ignore[attr-defined]
    if info.namespaced and not meta.namespace:
        meta.namespace = DEFAULT_NAMESPACE
    if not info.namespaced:
        meta.namespace = ""
    if isinstance(obj, workloads_pb2.Deployment):
        default_deployment(obj.spec)
    elif isinstance(obj, workloads_pb2.ReplicaSet):
        default_replica_set(obj.spec)
    elif isinstance(obj, workloads_pb2.StatefulSet):
        default_stateful_set(obj.spec)
    elif isinstance(obj, workloads_pb2.DaemonSet):
        default_daemon_set(obj.spec)
    elif isinstance(obj, pod_pb2.Pod):
        default_pod_spec(obj.spec)
    elif isinstance(obj, service_pb2.Service):
        default_service(obj.spec)
    elif isinstance(obj, node_pb2.Node):
        default_node(obj.spec)
    elif isinstance(obj, discovery_pb2.EndpointSlice):
        default_endpoint_slice(obj)
    elif isinstance(obj, metrics_pb2.HorizontalPodAutoscaler):
        default_hpa(obj.spec)
    elif isinstance(obj, secret_pb2.Secret):
        default_secret(obj)
    elif isinstance(obj, rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding):
        default_subjects(obj.subjects)
    elif isinstance(obj, networking_pb2.NetworkPolicy):
        default_policy_types(obj.spec)
    elif isinstance(obj, namespace_pb2.Namespace) and not obj.spec.finalizers:
        obj.spec.finalizers.append(NAMESPACE_FINALIZER)
    elif isinstance(obj, quota_pb2.LimitRange):
        for item in obj.spec.limits:
            default_limit_range_item(item)
    elif isinstance(obj, batch_pb2.Job):
        default_job(obj.spec)
    elif isinstance(obj, batch_pb2.CronJob):
        default_cron_job_spec(obj.spec)
        default_job(obj.spec.job_template.spec)

    elif isinstance(obj, storage_pb2.PersistentVolumeClaim):
        storage.default_claim(obj)
    elif isinstance(obj, storage_pb2.PersistentVolume):
        storage.default_volume(obj)
    elif isinstance(obj, storage_pb2.StorageClass):
        storage.default_storage_class(obj)


def default_job(spec: batch_pb2.JobSpec) -> None:
    default_job_spec(spec)
    default_pod_spec(spec.template.spec)


def default_limit_range_item(item: quota_pb2.LimitRangeItem) -> None:
    """A Container item's default limit is its max, and its default request its default limit,
    else its min, where unset (Kubernetes' defaulting of LimitRangeItem)."""
    if item.type != "Container":
        return
    for name, value in item.max.items():
        item.default.setdefault(name, value)
    for name, value in item.default.items():
        item.default_request.setdefault(name, value)
    for name, value in item.min.items():
        item.default_request.setdefault(name, value)


def default_policy_types(spec: networking_pb2.NetworkPolicySpec) -> None:
    """Unset policyTypes: Ingress always, Egress too when there are egress rules, as Kubernetes defaults it."""
    if not spec.policy_types:
        spec.policy_types.extend(["Ingress", "Egress"] if spec.egress else ["Ingress"])


def default_subjects(subjects: Iterable[rbac_pb2.Subject]) -> None:
    """A User or Group subject's apiGroup is rbac.authorization.k8s.io, as Kubernetes defaults it."""
    for subject in subjects:
        if subject.kind in ("User", "Group") and not subject.api_group:
            subject.api_group = "rbac.authorization.k8s.io"


def default_secret(secret: secret_pb2.Secret) -> None:
    """stringData is write-only: merged into data (winning over it), never stored."""
    for key, value in secret.string_data.items():
        secret.data[key] = value.encode("utf-8")
    secret.ClearField("string_data")
    if not secret.type:
        secret.type = "Opaque"


def default_deployment(spec: workloads_pb2.DeploymentSpec) -> None:
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.strategy.type:
        spec.strategy.type = ROLLING_UPDATE
    if spec.strategy.type == ROLLING_UPDATE:
        ru = spec.strategy.rolling_update
        if not ru.HasField("max_surge"):
            ru.max_surge.str_val = DEFAULT_MAX_SURGE
        if not ru.HasField("max_unavailable"):
            ru.max_unavailable.str_val = DEFAULT_MAX_UNAVAILABLE
    elif spec.strategy.type == BLUE_GREEN:
        blue_green = spec.strategy.blue_green
        if not blue_green.HasField("auto_promotion_enabled"):
            blue_green.auto_promotion_enabled = True
        if not blue_green.HasField("scale_down_delay_seconds"):
            blue_green.scale_down_delay_seconds = DEFAULT_SCALE_DOWN_DELAY_SECONDS
    elif spec.strategy.type == CANARY and not spec.strategy.canary.HasField("abort_on_failure"):
        spec.strategy.canary.abort_on_failure = True
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = DEFAULT_REVISION_HISTORY_LIMIT
    if not spec.HasField("progress_deadline_seconds"):
        spec.progress_deadline_seconds = DEFAULT_PROGRESS_DEADLINE_SECONDS
    default_pod_spec(spec.template.spec)


def default_replica_set(spec: workloads_pb2.ReplicaSetSpec) -> None:
    if not spec.HasField("replicas"):
        spec.replicas = 1
    default_pod_spec(spec.template.spec)


def default_stateful_set(spec: workloads_pb2.StatefulSetSpec) -> None:
    """Kubernetes' defaults; maxUnavailable (alpha in Kubernetes) is 1 when unset."""
    if not spec.HasField("replicas"):
        spec.replicas = 1
    if not spec.pod_management_policy:
        spec.pod_management_policy = statefulsets.ORDERED_READY
    strategy = spec.update_strategy
    if not strategy.type:
        strategy.type = statefulsets.ROLLING_UPDATE
    if strategy.type == statefulsets.ROLLING_UPDATE:
        if not strategy.rolling_update.HasField("partition"):
            strategy.rolling_update.partition = 0
        if not strategy.rolling_update.HasField("max_unavailable"):
            strategy.rolling_update.max_unavailable.int_val = statefulsets.DEFAULT_MAX_UNAVAILABLE
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = statefulsets.DEFAULT_REVISION_HISTORY_LIMIT
    retention = spec.persistent_volume_claim_retention_policy
    retention.when_deleted = retention.when_deleted or statefulsets.RETAIN
    retention.when_scaled = retention.when_scaled or statefulsets.RETAIN
    default_pod_spec(spec.template.spec)


def default_daemon_set(spec: workloads_pb2.DaemonSetSpec) -> None:
    """Kubernetes' defaults: RollingUpdate with maxUnavailable 1 and maxSurge 0, history 10."""
    strategy = spec.update_strategy
    if not strategy.type:
        strategy.type = daemonsets.ROLLING_UPDATE
    if strategy.type == daemonsets.ROLLING_UPDATE:
        if not strategy.rolling_update.HasField("max_unavailable"):
            strategy.rolling_update.max_unavailable.int_val = daemonsets.DEFAULT_MAX_UNAVAILABLE
        if not strategy.rolling_update.HasField("max_surge"):
            strategy.rolling_update.max_surge.int_val = daemonsets.DEFAULT_MAX_SURGE
    if not spec.HasField("revision_history_limit"):
        spec.revision_history_limit = daemonsets.DEFAULT_REVISION_HISTORY_LIMIT
    default_pod_spec(spec.template.spec)


def default_pod_spec(spec: pod_pb2.PodSpec) -> None:
    if spec.service_account:
        # The deprecated alias of serviceAccountName, which wins when both are set (Kubernetes' conversion).
        spec.service_account_name = spec.service_account_name or spec.service_account
        spec.service_account = spec.service_account_name
    if not spec.restart_policy:
        spec.restart_policy = "Always"
    if not spec.HasField("termination_grace_period_seconds"):
        spec.termination_grace_period_seconds = DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    for toleration in spec.tolerations:
        if not toleration.operator:
            toleration.operator = "Equal"
    for _, container in every_container(spec):
        if spec.host_network:  # as Kubernetes: in the host's network a port is its own host port
            for port in container.ports:
                if not port.host_port:
                    port.host_port = port.container_port
        default_container(container)
    for volume in spec.volumes:
        default_volume(volume)


# defaultMode of configMap, secret and projected volumes when unset (0644), as Kubernetes.
DEFAULT_VOLUME_MODE = 0o644


def default_volume(volume: pod_pb2.Volume) -> None:
    if volume.HasField("config_map") and not volume.config_map.HasField("default_mode"):
        volume.config_map.default_mode = DEFAULT_VOLUME_MODE
    elif volume.HasField("secret") and not volume.secret.HasField("default_mode"):
        volume.secret.default_mode = DEFAULT_VOLUME_MODE
    elif volume.HasField("projected"):
        if not volume.projected.HasField("default_mode"):
            volume.projected.default_mode = DEFAULT_VOLUME_MODE
        for source in volume.projected.sources:
            for item in source.downward_api.items:
                if item.HasField("field_ref") and not item.field_ref.api_version:
                    item.field_ref.api_version = "v1"


def default_image_pull_policy(image: str) -> str:
    """Always for `:latest` or untagged images, IfNotPresent otherwise (Kubernetes)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_container(container: pod_pb2.Container) -> None:
    if not container.image_pull_policy and container.image:
        container.image_pull_policy = default_image_pull_policy(container.image)
    for port in container.ports:
        if not port.protocol:
            port.protocol = "TCP"
    for probe_field in ("liveness_probe", "readiness_probe", "startup_probe"):
        if container.HasField(probe_field):
            default_probe(getattr(container, probe_field))
    for handler in (container.lifecycle.post_start, container.lifecycle.pre_stop):
        if handler.HasField("http_get"):
            default_http_get(handler.http_get)
    for env in container.env:
        if env.value_from.HasField("field_ref") and not env.value_from.field_ref.api_version:
            env.value_from.field_ref.api_version = "v1"


def default_probe(probe: pod_pb2.Probe) -> None:
    if not probe.timeout_seconds:
        probe.timeout_seconds = 1
    if not probe.period_seconds:
        probe.period_seconds = 10
    if not probe.success_threshold:
        probe.success_threshold = 1
    if not probe.failure_threshold:
        probe.failure_threshold = 3
    if probe.HasField("http_get"):
        default_http_get(probe.http_get)


def default_http_get(action: pod_pb2.HTTPGetAction) -> None:
    if not action.path:
        action.path = "/"
    if not action.scheme:
        action.scheme = "HTTP"


def default_node(spec: node_pb2.NodeSpec) -> None:
    """As Kubernetes: podCIDR alone fills podCIDRs, and podCIDRs alone podCIDR (its first entry)."""
    if spec.pod_cidr and not spec.pod_cidrs:
        spec.pod_cidrs.append(spec.pod_cidr)
    elif spec.pod_cidrs and not spec.pod_cidr:
        spec.pod_cidr = spec.pod_cidrs[0]


def default_service(spec: service_pb2.ServiceSpec) -> None:
    if not spec.type:
        spec.type = "ClusterIP"
    if not spec.load_balancing:
        spec.load_balancing = DEFAULT_LOAD_BALANCING
    if not spec.cluster_ip and spec.cluster_ips:
        spec.cluster_ip = spec.cluster_ips[0]
    if spec.cluster_ip and not spec.cluster_ips:
        spec.cluster_ips.append(spec.cluster_ip)
    if not spec.session_affinity:
        spec.session_affinity = "None"
    if spec.session_affinity == "None":
        spec.ClearField("session_affinity_config")  # as Kubernetes: None leaves no config
    elif spec.session_affinity == CLIENT_IP and not spec.session_affinity_config.client_ip.HasField("timeout_seconds"):
        spec.session_affinity_config.client_ip.timeout_seconds = DEFAULT_AFFINITY_SECONDS
    if not spec.ip_families:
        spec.ip_families.append("IPv4")
    if not spec.HasField("ip_family_policy"):
        spec.ip_family_policy = "SingleStack"
    if not spec.HasField("internal_traffic_policy"):
        spec.internal_traffic_policy = "Cluster"
    if spec.type in ("NodePort", "LoadBalancer") and not spec.external_traffic_policy:
        spec.external_traffic_policy = "Cluster"
    if spec.type == "LoadBalancer" and not spec.HasField("allocate_load_balancer_node_ports"):
        spec.allocate_load_balancer_node_ports = True
    for port in spec.ports:
        if not port.protocol:
            port.protocol = "TCP"
        if not port.HasField("target_port"):
            port.target_port.int_val = port.port


def default_endpoint_slice(endpoint_slice: discovery_pb2.EndpointSlice) -> None:
    if not endpoint_slice.address_type:
        endpoint_slice.address_type = DEFAULT_ADDRESS_TYPE
    for port in endpoint_slice.ports:
        if not port.protocol:
            port.protocol = "TCP"
