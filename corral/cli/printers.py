"""How `corral get` shows objects: kubectl-like tables, YAML and JSON.

`-o json`/`-o yaml` print one object as itself and several as a kubectl
`List` (`{"apiVersion": "v1", "kind": "List", "items": [...]}`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from protos import codec, jobs, storage
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
    serviceaccount_pb2,
    storage_pb2,
    workloads_pb2,
)
from protos.kinds import KindInfo, meta
from protos.nodes import ready_condition
from protos.pods import POD_INITIALIZED, is_sidecar, is_terminating
from protos.times import as_datetime
from protos.wellknown import NODE_ROLE_PREFIX

Row = list[str]


def age(ts: Timestamp, now: datetime) -> str:
    """kubectl's compact durations: 45s, 3m12s, 17m, 5h3m, 20h, 3d4h, 12d."""
    if not ts.seconds:
        return "<unknown>"
    return human_duration((now - ts.ToDatetime(tzinfo=UTC)).total_seconds())


def human_duration(elapsed: float) -> str:
    """kubectl's HumanDuration of a number of seconds (AGE, a Job's DURATION)."""
    seconds = max(0, int(elapsed))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def selector_text(match_labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items())) or "<none>"


def _images(template: pod_pb2.PodTemplateSpec) -> tuple[str, str]:
    names = ",".join(c.name for c in template.spec.containers)
    images = ",".join(c.image for c in template.spec.containers)
    return names, images


# -- per-kind rows --------------------------------------------------------------


def init_status(p: pod_pb2.Pod) -> str | None:
    """kubectl's STATUS while init containers are not all completed: the first one not
    completed (a sidecar: not started) gives `Init:<reason>` (waiting or terminated) or
    `Init:<done>/<total>`; None once every one completed, or once the pod is Initialized."""
    if _initialized(p):
        return None
    total = len(p.spec.init_containers)
    sidecars = _sidecars(p)
    for i, s in enumerate(p.status.init_container_statuses):
        terminated, waiting = s.state.terminated, s.state.waiting
        if s.state.HasField("terminated") and terminated.exit_code == 0:
            continue
        if s.name in sidecars and s.started:
            continue
        if s.state.HasField("terminated"):
            if terminated.reason:
                return f"Init:{terminated.reason}"
            if terminated.signal:
                return f"Init:Signal:{terminated.signal}"
            return f"Init:ExitCode:{terminated.exit_code}"
        if s.state.HasField("waiting") and waiting.reason and waiting.reason != "PodInitializing":
            return f"Init:{waiting.reason}"
        return f"Init:{i}/{total}"
    return None


def _sidecars(p: pod_pb2.Pod) -> set[str]:
    return {c.name for c in p.spec.init_containers if is_sidecar(c)}


def _initialized(p: pod_pb2.Pod) -> bool:
    return any(c.type == POD_INITIALIZED and c.status == "True" for c in p.status.conditions)


def pod_row(p: pod_pb2.Pod, now: datetime, wide: bool) -> Row:
    """kubectl's columns: READY and RESTARTS count the sidecars (started and ready) beside the
    app containers."""
    sidecars = [s for s in p.status.init_container_statuses if s.name in _sidecars(p)]
    total = len(p.spec.containers) + len(_sidecars(p))
    ready = sum(1 for s in p.status.container_statuses if s.ready)
    ready += sum(1 for s in sidecars if s.started and s.ready)
    restarts = sum(s.restart_count for s in [*sidecars, *p.status.container_statuses])
    status = p.status.phase or "Pending"
    initializing = init_status(p)
    if initializing is not None:
        status = initializing
        restarts = sum(s.restart_count for s in p.status.init_container_statuses)
    for s in p.status.container_statuses if initializing is None else ():
        if s.state.HasField("waiting") and s.state.waiting.reason:
            status = s.state.waiting.reason
        elif s.state.HasField("terminated") and s.state.terminated.reason and status == "Running":
            status = s.state.terminated.reason
    if is_terminating(p):
        status = "Terminating"
    row = [f"{ready}/{total}", status, str(restarts), age(p.metadata.creation_timestamp, now)]
    if wide:
        row += [p.status.pod_ip or "<none>", p.spec.node_name or "<none>"]
    return row


def deployment_row(d: workloads_pb2.Deployment, now: datetime, wide: bool) -> Row:
    row = [
        f"{d.status.ready_replicas}/{d.spec.replicas}",
        str(d.status.updated_replicas),
        str(d.status.available_replicas),
        age(d.metadata.creation_timestamp, now),
    ]
    if wide:
        row += [*_images(d.spec.template), selector_text(d.spec.selector.match_labels)]
    return row


def stateful_set_row(s: workloads_pb2.StatefulSet, now: datetime, wide: bool) -> Row:
    row = [f"{s.status.ready_replicas}/{s.spec.replicas}", age(s.metadata.creation_timestamp, now)]
    if wide:
        row += list(_images(s.spec.template))
    return row


def daemon_set_row(ds: workloads_pb2.DaemonSet, now: datetime, wide: bool) -> Row:
    st = ds.status
    row = [
        str(st.desired_number_scheduled),
        str(st.current_number_scheduled),
        str(st.number_ready),
        str(st.updated_number_scheduled),
        str(st.number_available),
        selector_text(ds.spec.template.spec.node_selector),
        age(ds.metadata.creation_timestamp, now),
    ]
    if wide:
        row += [*_images(ds.spec.template), selector_text(ds.spec.selector.match_labels)]
    return row


def replica_set_row(rs: workloads_pb2.ReplicaSet, now: datetime, wide: bool) -> Row:
    row = [
        str(rs.spec.replicas),
        str(rs.status.replicas),
        str(rs.status.ready_replicas),
        age(rs.metadata.creation_timestamp, now),
    ]
    if wide:
        row += [*_images(rs.spec.template), selector_text(rs.spec.selector.match_labels)]
    return row


def service_ports(s: service_pb2.Service) -> str:
    parts = []
    for p in s.spec.ports:
        text = f"{p.port}/{p.protocol}"
        if p.node_port:
            text = f"{p.port}:{p.node_port}/{p.protocol}"
        parts.append(text)
    return ",".join(parts) or "<none>"


def service_external_ip(s: service_pb2.Service) -> str:
    """kubectl's EXTERNAL-IP: a LoadBalancer's ingress addresses (<pending> until it has some)."""
    if s.spec.type != "LoadBalancer":
        return "<none>"
    found = [i.ip or i.hostname for i in s.status.load_balancer.ingress if i.ip or i.hostname]
    return ",".join(found) or "<pending>"


def service_row(s: service_pb2.Service, now: datetime, wide: bool) -> Row:
    row = [
        s.spec.type,
        s.spec.cluster_ip or "<none>",
        service_external_ip(s),
        service_ports(s),
        age(s.metadata.creation_timestamp, now),
    ]
    if wide:
        row.append(selector_text(s.spec.selector))
    return row


def node_status(n: node_pb2.Node) -> str:
    """kubectl's STATUS column: Ready, NotReady or Unknown, and SchedulingDisabled when cordoned."""
    condition = ready_condition(n)
    if condition is None:
        return "Unknown"
    status = "Ready" if condition.status == "True" else "NotReady"
    return f"{status},SchedulingDisabled" if n.spec.unschedulable else status


def node_row(n: node_pb2.Node, now: datetime, wide: bool) -> Row:
    roles = (
        ",".join(sorted(k.split("/", 1)[1] for k in n.metadata.labels if k.startswith(NODE_ROLE_PREFIX))) or "<none>"
    )
    row = [
        node_status(n),
        roles,
        age(n.metadata.creation_timestamp, now),
        n.status.node_info.agent_version or "<unknown>",
    ]
    if wide:
        internal = next((a.address for a in n.status.addresses if a.type == "InternalIP"), "<none>")
        row += [
            internal,
            n.status.node_info.os_image or "<unknown>",
            n.status.node_info.kernel_version or "<unknown>",
            ",".join(n.status.runtimes) or "<none>",
            n.spec.pod_cidr or "<none>",
        ]
    return row


def event_row(e: event_pb2.Event, now: datetime, wide: bool) -> Row:
    ts = e.last_timestamp if e.last_timestamp.seconds else e.metadata.creation_timestamp
    obj = f"{e.involved_object.kind.lower()}/{e.involved_object.name}"
    row = [age(ts, now), e.type, e.reason, obj, e.message]
    if wide:
        row += [e.source.component, str(e.count or 1)]
    return row


def endpoint_slice_row(s: discovery_pb2.EndpointSlice, now: datetime, wide: bool) -> Row:
    """kubectl's columns: the container ports, and the first three addresses."""
    ports = ",".join(str(p.port) for p in s.ports if p.HasField("port")) or "<unset>"
    addresses = [a for e in s.endpoints for a in e.addresses]
    shown = ",".join(addresses[:3]) or "<unset>"
    if len(addresses) > 3:
        shown += f" + {len(addresses) - 3} more..."
    return [s.address_type, ports, shown, age(s.metadata.creation_timestamp, now)]


def hpa_metric(spec: metrics_pb2.MetricSpec, status: metrics_pb2.MetricStatus | None) -> tuple[str, str, str]:
    """A metric of an HPA as (name, current, target): ("cpu", "35%", "50%"), ("memory", "<unknown>", "1Gi")."""
    if status is None:
        current = metrics_pb2.MetricValueStatus()
    else:
        current = status.pods.current if spec.type == "Pods" else status.resource.current
    if spec.type == "Pods":
        return spec.pods.metric.name, current.average_value or "<unknown>", spec.pods.target.average_value
    target = spec.resource.target
    if target.type == "Utilization":
        shown = f"{current.average_utilization}%" if current.HasField("average_utilization") else "<unknown>"
        return spec.resource.name, shown, f"{target.average_utilization}%"
    return spec.resource.name, current.average_value or "<unknown>", target.average_value


def hpa_targets(h: metrics_pb2.HorizontalPodAutoscaler) -> str:
    """kubectl's TARGETS: `cpu: 35%/50%, requests_per_second: 12/10` (two at most, then "+ N more...")."""
    statuses = list(h.status.current_metrics)
    shown = []
    for i, spec in enumerate(h.spec.metrics):
        name, current, target = hpa_metric(spec, statuses[i] if i < len(statuses) else None)
        shown.append(f"{name}: {current}/{target}")
    if not shown:
        return "<none>"
    more = f" + {len(shown) - 2} more..." if len(shown) > 2 else ""
    return ", ".join(shown[:2]) + more


def hpa_row(h: metrics_pb2.HorizontalPodAutoscaler, now: datetime, wide: bool) -> Row:
    ref = h.spec.scale_target_ref
    low = str(h.spec.min_replicas) if h.spec.HasField("min_replicas") else "<unset>"
    return [
        f"{ref.kind}/{ref.name}",
        hpa_targets(h),
        low,
        str(h.spec.max_replicas),
        str(h.status.current_replicas),
        age(h.metadata.creation_timestamp, now),
    ]


def job_status(j: batch_pb2.Job) -> str:
    """kubectl's STATUS of a Job (1.28+)."""
    for type_, shown in ((jobs.COMPLETE, "Complete"), (jobs.FAILED, "Failed")):
        if jobs.condition(j, type_) is not None:
            return shown
    if is_terminating(j):
        return "Terminating"
    for type_ in (jobs.SUSPENDED, jobs.FAILURE_TARGET, jobs.SUCCESS_CRITERIA_MET):
        if jobs.condition(j, type_) is not None:
            return type_
    return "Running"


def job_completions(j: batch_pb2.Job) -> str:
    """kubectl's COMPLETIONS: `2/3`, or `1/1 of 3` for a work queue of parallelism 3."""
    if j.spec.HasField("completions"):
        return f"{j.status.succeeded}/{j.spec.completions}"
    if j.spec.parallelism > 1:
        return f"{j.status.succeeded}/1 of {j.spec.parallelism}"
    return f"{j.status.succeeded}/1"


def job_duration(j: batch_pb2.Job, now: datetime) -> str:
    """From startTime to completionTime (or now while it runs); empty before it started."""
    started = as_datetime(j.status.start_time)
    if started is None:
        return ""
    return human_duration(((as_datetime(j.status.completion_time) or now) - started).total_seconds())


def job_row(j: batch_pb2.Job, now: datetime, wide: bool) -> Row:
    row = [job_status(j), job_completions(j), job_duration(j, now), age(j.metadata.creation_timestamp, now)]
    if wide:
        row += [*_images(j.spec.template), selector_text(j.spec.selector.match_labels)]
    return row


def cron_job_row(c: batch_pb2.CronJob, now: datetime, wide: bool) -> Row:
    last = c.status.last_schedule_time
    row = [
        c.spec.schedule,
        c.spec.time_zone if c.spec.HasField("time_zone") else "<none>",
        str(c.spec.suspend),
        str(len(c.status.active)),
        age(last, now) if last.seconds else "<none>",
        age(c.metadata.creation_timestamp, now),
    ]
    if wide:
        template = c.spec.job_template.spec
        row += [*_images(template.template), selector_text(template.selector.match_labels)]
    return row


@dataclass(frozen=True)
class Columns:
    headers: tuple[str, ...]
    wide: tuple[str, ...]
    row: Callable[[Any, datetime, bool], Row]
    # Events have no NAME column in kubectl.
    named: bool = True


def secret_row(s: secret_pb2.Secret, now: datetime, wide: bool) -> Row:
    return [s.type, str(len(s.data)), age(s.metadata.creation_timestamp, now)]


def config_map_row(c: configmap_pb2.ConfigMap, now: datetime, wide: bool) -> Row:
    return [str(len(c.data) + len(c.binary_data)), age(c.metadata.creation_timestamp, now)]


def namespace_row(n: namespace_pb2.Namespace, now: datetime, wide: bool) -> Row:
    return [n.status.phase or "Active", age(n.metadata.creation_timestamp, now)]


def service_account_row(s: serviceaccount_pb2.ServiceAccount, now: datetime, wide: bool) -> Row:
    return [str(len(s.secrets)), age(s.metadata.creation_timestamp, now)]


def created_row(obj: rbac_pb2.Role | rbac_pb2.ClusterRole | quota_pb2.LimitRange, now: datetime, wide: bool) -> Row:
    """kubectl shows a role's (and a limit range's) creation time, not its age."""
    stamp = obj.metadata.creation_timestamp
    return [stamp.ToJsonString() if stamp.seconds else "<unknown>"]


def binding_row(b: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding, now: datetime, wide: bool) -> Row:
    row = [f"{b.role_ref.kind}/{b.role_ref.name}", age(b.metadata.creation_timestamp, now)]
    if wide:
        for kind in ("User", "Group"):
            row.append(",".join(s.name for s in b.subjects if s.kind == kind))
        row.append(",".join(f"{s.namespace}/{s.name}" for s in b.subjects if s.kind == "ServiceAccount"))
    return row


def network_policy_row(n: networking_pb2.NetworkPolicy, now: datetime, wide: bool) -> Row:
    sel = n.spec.pod_selector
    shown = ",".join(f"{k}={v}" for k, v in sorted(sel.match_labels.items()))
    if sel.match_expressions:
        shown = ",".join(filter(None, [shown, f"{len(sel.match_expressions)} expression(s)"]))
    return [shown or "<none>", age(n.metadata.creation_timestamp, now)]


def ingress_hosts(i: ingress_pb2.Ingress) -> str:
    """kubectl's HOSTS: every rule's host ("*" for none), at most three then "+ N more..."."""
    hosts = [r.host or "*" for r in i.spec.rules] or ["*"]
    shown = ",".join(hosts[:3])
    return shown if len(hosts) <= 3 else f"{shown} + {len(hosts) - 3} more..."


def ingress_row(i: ingress_pb2.Ingress, now: datetime, wide: bool) -> Row:
    addresses = ",".join(x.ip or x.hostname for x in i.status.load_balancer.ingress)
    ports = "80, 443" if i.spec.tls else "80"
    klass = i.spec.ingress_class_name if i.spec.HasField("ingress_class_name") else "<none>"
    return [klass, ingress_hosts(i), addresses, ports, age(i.metadata.creation_timestamp, now)]


def ingress_class_row(c: ingress_pb2.IngressClass, now: datetime, wide: bool) -> Row:
    ref = c.spec.parameters
    parameters = f"{ref.kind}/{ref.name}" if ref.name else "<none>"
    return [c.spec.controller, parameters, age(c.metadata.creation_timestamp, now)]


def controller_revision_row(r: workloads_pb2.ControllerRevision, now: datetime, wide: bool) -> Row:
    """kubectl's CONTROLLER column: `<kind>.<group>/<name>` of the controller owner."""
    ref = next((o for o in r.metadata.owner_references if o.controller), None)
    controller = "<none>"
    if ref is not None:
        group = ref.api_version.rpartition("/")[0]
        controller = f"{ref.kind.lower()}.{group}/{ref.name}" if group else f"{ref.kind.lower()}/{ref.name}"
    return [controller, str(r.revision), age(r.metadata.creation_timestamp, now)]


def lease_row(lease: coordination_pb2.Lease, now: datetime, wide: bool) -> Row:
    return [lease.spec.holder_identity or "<none>", age(lease.metadata.creation_timestamp, now)]


def int_or_percent(value: meta_pb2.IntOrString) -> str:
    return str(value.int_val) if value.HasField("int_val") else value.str_val


def pdb_row(b: policy_pb2.PodDisruptionBudget, now: datetime, wide: bool) -> Row:
    """kubectl's columns: the one of minAvailable and maxUnavailable set, N/A for the other."""
    low = int_or_percent(b.spec.min_available) if b.spec.HasField("min_available") else "N/A"
    high = int_or_percent(b.spec.max_unavailable) if b.spec.HasField("max_unavailable") else "N/A"
    return [low, high, str(b.status.disruptions_allowed), age(b.metadata.creation_timestamp, now)]


def quota_usage_text(rq: quota_pb2.ResourceQuota, *, limits: bool) -> str:
    """kubectl's REQUEST or LIMIT column: `pods: 1/2, requests.cpu: 500m/1` (used/hard)."""
    hard = rq.status.hard or rq.spec.hard
    names = sorted(n for n in hard if n.startswith("limits.") == limits)
    return ", ".join(f"{n}: {rq.status.used.get(n, '0')}/{hard[n]}" for n in names)


def resource_quota_row(rq: quota_pb2.ResourceQuota, now: datetime, wide: bool) -> Row:
    return [
        age(rq.metadata.creation_timestamp, now),
        quota_usage_text(rq, limits=False),
        quota_usage_text(rq, limits=True),
    ]


def _access_modes(modes: Sequence[str]) -> str:
    return ",".join(storage.ACCESS_MODE_SHORT.get(m, m) for m in modes)


def claim_row(c: storage_pb2.PersistentVolumeClaim, now: datetime, wide: bool) -> Row:
    """kubectl's columns, and the node the volume is on (corral's: local volumes live on one node)."""
    status = "Terminating" if c.metadata.HasField("deletion_timestamp") else (c.status.phase or "Pending")
    row = [
        status,
        c.spec.volume_name,
        c.status.capacity.get("storage", ""),
        _access_modes(c.status.access_modes),
        storage.class_of(c) or ("<unset>" if not storage.has_class(c) else ""),
        age(c.metadata.creation_timestamp, now),
        c.metadata.annotations.get(storage.SELECTED_NODE, "") or "<none>",
    ]
    return row + ([c.spec.volume_mode or storage.FILESYSTEM] if wide else [])


def volume_row(v: storage_pb2.PersistentVolume, now: datetime, wide: bool) -> Row:
    status = "Terminating" if v.metadata.HasField("deletion_timestamp") else (v.status.phase or "Pending")
    ref = v.spec.claim_ref
    row = [
        v.spec.capacity.get("storage", ""),
        _access_modes(v.spec.access_modes),
        v.spec.persistent_volume_reclaim_policy,
        status,
        f"{ref.namespace}/{ref.name}" if ref.name else "",
        v.spec.storage_class_name,
        v.status.reason,
        age(v.metadata.creation_timestamp, now),
        storage.volume_node(v) or "<none>",
    ]
    return row + ([v.spec.volume_mode or storage.FILESYSTEM] if wide else [])


def storage_class_row(sc: storage_pb2.StorageClass, now: datetime, wide: bool) -> Row:
    return [
        sc.provisioner,
        sc.reclaim_policy or storage.DELETE,
        sc.volume_binding_mode or storage.IMMEDIATE,
        "true" if sc.allow_volume_expansion else "false",
        age(sc.metadata.creation_timestamp, now),
    ]


_BINDING_WIDE = ("USERS", "GROUPS", "SERVICEACCOUNTS")

COLUMNS: dict[str, Columns] = {
    "PersistentVolumeClaim": Columns(
        ("STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE", "NODE"), ("VOLUMEMODE",), claim_row
    ),
    "PersistentVolume": Columns(
        ("CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "REASON", "AGE", "NODE"),
        ("VOLUMEMODE",),
        volume_row,
    ),
    "StorageClass": Columns(
        ("PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"), (), storage_class_row
    ),
    "ServiceAccount": Columns(("SECRETS", "AGE"), (), service_account_row),
    "Role": Columns(("CREATED AT",), (), created_row),
    "ClusterRole": Columns(("CREATED AT",), (), created_row),
    "RoleBinding": Columns(("ROLE", "AGE"), _BINDING_WIDE, binding_row),
    "ClusterRoleBinding": Columns(("ROLE", "AGE"), _BINDING_WIDE, binding_row),
    "NetworkPolicy": Columns(("POD-SELECTOR", "AGE"), (), network_policy_row),
    "Namespace": Columns(("STATUS", "AGE"), (), namespace_row),
    "Secret": Columns(("TYPE", "DATA", "AGE"), (), secret_row),
    "ConfigMap": Columns(("DATA", "AGE"), (), config_map_row),
    "PodDisruptionBudget": Columns(("MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"), (), pdb_row),
    "ResourceQuota": Columns(("AGE", "REQUEST", "LIMIT"), (), resource_quota_row),
    "LimitRange": Columns(("CREATED AT",), (), created_row),
    "Ingress": Columns(("CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"), (), ingress_row),
    "IngressClass": Columns(("CONTROLLER", "PARAMETERS", "AGE"), (), ingress_class_row),
    "ControllerRevision": Columns(("CONTROLLER", "REVISION", "AGE"), (), controller_revision_row),
    "Lease": Columns(("HOLDER", "AGE"), (), lease_row),
    "Pod": Columns(("READY", "STATUS", "RESTARTS", "AGE"), ("IP", "NODE"), pod_row),
    "Deployment": Columns(
        ("READY", "UP-TO-DATE", "AVAILABLE", "AGE"), ("CONTAINERS", "IMAGES", "SELECTOR"), deployment_row
    ),
    "ReplicaSet": Columns(
        ("DESIRED", "CURRENT", "READY", "AGE"), ("CONTAINERS", "IMAGES", "SELECTOR"), replica_set_row
    ),
    "StatefulSet": Columns(("READY", "AGE"), ("CONTAINERS", "IMAGES"), stateful_set_row),
    "DaemonSet": Columns(
        ("DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"),
        ("CONTAINERS", "IMAGES", "SELECTOR"),
        daemon_set_row,
    ),
    "Job": Columns(("STATUS", "COMPLETIONS", "DURATION", "AGE"), ("CONTAINERS", "IMAGES", "SELECTOR"), job_row),
    "CronJob": Columns(
        ("SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"),
        ("CONTAINERS", "IMAGES", "SELECTOR"),
        cron_job_row,
    ),
    "Service": Columns(("TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"), ("SELECTOR",), service_row),
    "Node": Columns(
        ("STATUS", "ROLES", "AGE", "VERSION"),
        ("INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "RUNTIMES", "POD-CIDR"),
        node_row,
    ),
    "EndpointSlice": Columns(("ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"), (), endpoint_slice_row),
    "HorizontalPodAutoscaler": Columns(("REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"), (), hpa_row),
    "Event": Columns(("LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"), ("SOURCE", "COUNT"), event_row, named=False),
}


def table_headers(info: KindInfo, *, wide: bool, all_namespaces: bool) -> list[str]:
    cols = COLUMNS[info.kind]
    headers = ["NAMESPACE"] if all_namespaces and info.namespaced else []
    headers += ["NAME"] if cols.named else []
    headers += list(cols.headers) + (list(cols.wide) if wide else [])
    return headers


def table_row(info: KindInfo, obj: Message, now: datetime, *, wide: bool, all_namespaces: bool) -> Row:
    cols = COLUMNS[info.kind]
    m = meta(obj)
    row = [m.namespace] if all_namespaces and info.namespaced else []
    shown = m.name
    if isinstance(obj, storage_pb2.StorageClass) and storage.is_default_class(obj):
        shown = f"{m.name} (default)"
    row += [shown] if cols.named else []
    return row + cols.row(obj, now, wide)


def format_table(rows: Sequence[Row], headers: Sequence[str] | None) -> str:
    """Columns separated by three spaces, like kubectl's tabwriter output."""
    all_rows = ([list(headers)] if headers else []) + [list(r) for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in all_rows]
    return "\n".join(lines)


# -- documents --------------------------------------------------------------------

REDACTED = "<redacted>"


def object_document(obj: Message, *, show_secrets: bool = False) -> dict[str, Any]:
    """`obj` as YAML/JSON data; a Secret's values redacted unless `show_secrets`."""
    doc = codec.to_dict(obj)
    if isinstance(obj, secret_pb2.Secret) and not show_secrets:
        if "data" in doc:
            doc["data"] = dict.fromkeys(doc["data"], REDACTED)
        doc.pop("stringData", None)
    return doc


def as_document(objs: Sequence[Message], *, single: bool, show_secrets: bool = False) -> dict[str, Any]:
    if single and len(objs) == 1:
        return object_document(objs[0], show_secrets=show_secrets)
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [object_document(o, show_secrets=show_secrets) for o in objs],
        "metadata": {"resourceVersion": ""},
    }


def dump(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=4)
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).rstrip("\n")
