"""Small builders for the objects controller tests reason about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from protos.corral.v1 import event_pb2, meta_pb2, node_pb2, pod_pb2, workloads_pb2

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def node(
    name: str = "n1",
    *,
    heartbeat: float | None = 0.0,
    ready: str | None = "True",
    created: float = -100.0,
    taints: tuple[tuple[str, str, float | None], ...] = (),
) -> node_pb2.Node:
    """A node whose Ready condition has `ready` status and a heartbeat at T0+`heartbeat`."""
    n = node_pb2.Node(api_version="v1", kind="Node")
    n.metadata.name, n.metadata.uid = name, f"uid-{name}"
    n.metadata.creation_timestamp.FromDatetime(at(created))
    if ready is not None:
        cond = n.status.conditions.add(type="Ready", status=ready, reason="AgentReady")
        if heartbeat is not None:
            cond.last_heartbeat_time.FromDatetime(at(heartbeat))
    for key, effect, added in taints:
        taint = n.spec.taints.add(key=key, effect=effect)
        if added is not None:
            taint.time_added.FromDatetime(at(added))
    return n


def toleration(
    key: str = "node.kubernetes.io/unreachable",
    *,
    operator: str = "Exists",
    effect: str = "NoExecute",
    seconds: int | None = None,
    value: str = "",
) -> pod_pb2.Toleration:
    t = pod_pb2.Toleration(key=key, operator=operator, effect=effect, value=value)
    if seconds is not None:
        t.toleration_seconds = seconds
    return t


def owner(
    kind: str = "ReplicaSet", name: str = "web-abc", uid: str = "rs-uid", *, controller: bool = True
) -> meta_pb2.OwnerReference:
    return meta_pb2.OwnerReference(api_version="apps/v1", kind=kind, name=name, uid=uid, controller=controller)


def pod(
    name: str = "p1",
    *,
    node_name: str = "n1",
    owned: bool = True,
    created: float = -50.0,
    tolerations: tuple[pod_pb2.Toleration, ...] = (),
    phase: str = "Running",
    ready: bool = True,
    namespace: str = "default",
) -> pod_pb2.Pod:
    p = pod_pb2.Pod(api_version="v1", kind="Pod")
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, namespace, f"uid-{name}"
    p.metadata.creation_timestamp.FromDatetime(at(created))
    if owned:
        p.metadata.owner_references.append(owner())
    p.spec.node_name = node_name
    p.spec.tolerations.extend(tolerations)
    p.status.phase = phase
    status = "True" if ready else "False"
    p.status.conditions.add(type="Ready", status=status)
    p.status.conditions.add(type="ContainersReady", status=status)
    return p


def replica_set(
    name: str, uid: str, *, owners: tuple[meta_pb2.OwnerReference, ...] = (), namespace: str = "default"
) -> workloads_pb2.ReplicaSet:
    rs = workloads_pb2.ReplicaSet(api_version="apps/v1", kind="ReplicaSet")
    rs.metadata.name, rs.metadata.namespace, rs.metadata.uid = name, namespace, uid
    rs.metadata.owner_references.extend(owners)
    return rs


def event(
    name: str,
    *,
    last: float | None,
    first: float | None = None,
    created: float | None = None,
    namespace: str = "default",
) -> event_pb2.Event:
    e = event_pb2.Event(api_version="v1", kind="Event", reason="Test", message="m")
    e.metadata.name, e.metadata.namespace = name, namespace
    for field, value in (("last_timestamp", last), ("first_timestamp", first)):
        if value is not None:
            getattr(e, field).FromDatetime(at(value))
    if created is not None:
        e.metadata.creation_timestamp.FromDatetime(at(created))
    return e
