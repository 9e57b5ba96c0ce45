"""The event-fed scheduler cache against a full rebuild (`build_snapshot`) of the same state."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from controlplane.scheduler.cache import SchedulerCache
from controlplane.scheduler.snapshot import Resources, Snapshot, build_snapshot
from protos.corral.v1 import node_pb2, pod_pb2

from .builders import MI, container, node_proto, pod_proto

NODES = ("n0", "n1", "n2")
PODS = tuple(f"p{i}" for i in range(8))


def a_node(name: str, *, ready: str = "True", cpu: str = "4", taint: bool = False, zone: str = "") -> node_pb2.Node:
    node = node_proto(name, ready=ready, allocatable={"cpu": cpu, "memory": "8Gi", "pods": "110"})
    if taint:
        node.spec.taints.add(key="dedicated", value="db", effect="NoSchedule")
    if zone:
        node.metadata.labels["topology.kubernetes.io/zone"] = zone
    return node


def a_pod(uid: str, *, node: str = "", phase: str = "", shape: int = 0) -> pod_pb2.Pod:
    """Pod `uid`; its requests, host port and owner depend on `shape` (fixed per uid below)."""
    ports = ((8000 + shape % 2, "TCP"),) if shape % 3 == 0 else ()
    requests = {"cpu": f"{100 * (shape + 1)}m", "memory": f"{16 * (shape % 4 + 1)}Mi"}
    pod = pod_proto(
        uid,
        containers=[container(requests, host_ports=ports)],
        node_name=node,
        phase=phase,
        owner_uid=f"rs{shape % 2}" if shape % 4 else "",
    )
    pod.metadata.uid = uid
    return pod


def shape(uid: str) -> int:
    return int(uid[1:])


@dataclass
class Model:
    """The cluster as the informers would hold it, and what the scheduler assumed."""

    nodes: dict[str, node_pb2.Node] = field(default_factory=dict)
    pods: dict[str, pod_pb2.Pod] = field(default_factory=dict)
    assumed: dict[str, tuple[str, float]] = field(default_factory=dict)

    def rebuild(self) -> Snapshot:
        """The full recomputation: every pod as it must be counted, assumed ones on their node."""
        seen = []
        for uid, pod in self.pods.items():
            if uid in self.assumed and not pod.spec.node_name:
                pod = a_pod(uid, node=self.assumed[uid][0], phase=pod.status.phase, shape=shape(uid))
            seen.append(pod)
        return build_snapshot(self.nodes.values(), seen)


node_events = hs.builds(
    lambda name, ready, cpu, taint, zone: ("node", name, a_node(name, ready=ready, cpu=cpu, taint=taint, zone=zone)),
    hs.sampled_from(NODES),
    hs.sampled_from(["True", "False", "Unknown"]),
    hs.sampled_from(["2", "4", "8"]),
    hs.booleans(),
    hs.sampled_from(["", "a", "b"]),
)
pod_events = hs.builds(
    lambda uid, node, phase: ("pod", uid, a_pod(uid, node=node, phase=phase, shape=shape(uid))),
    hs.sampled_from(PODS),
    hs.sampled_from(["", *NODES, "gone"]),
    hs.sampled_from(["", "Pending", "Running", "Succeeded", "Failed"]),
)
KINDS = {
    "node": node_events,
    "pod": pod_events,
    "delete-node": hs.tuples(hs.just("delete-node"), hs.sampled_from(NODES)),
    "delete-pod": hs.tuples(hs.just("delete-pod"), hs.sampled_from(PODS)),
    "assume": hs.tuples(hs.just("assume"), hs.sampled_from(PODS), hs.sampled_from(NODES), hs.floats(0, 10)),
    "expire": hs.tuples(hs.just("expire"), hs.floats(0, 10)),
}
# Mostly pod events (bindings, moves, finishes), as a cluster sees them.
WEIGHTS = ["pod"] * 8 + ["assume"] * 3 + ["node"] * 2 + ["delete-pod"] * 2 + ["delete-node", "expire"]
events = hs.sampled_from(WEIGHTS).flatmap(lambda kind: KINDS[kind])


def apply(cache: SchedulerCache, model: Model, event: tuple) -> None:  # type: ignore[type-arg]
    match event:
        case ("node", name, node):
            model.nodes[name] = node
            cache.set_node(node)
        case ("delete-node", name):
            model.nodes.pop(name, None)
            cache.remove_node(name)
        case ("pod", uid, pod):
            model.pods[uid] = pod
            if pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
                model.assumed.pop(uid, None)  # confirmed (or finished)
            cache.set_pod(pod)
        case ("delete-pod", uid):
            pod = model.pods.pop(uid, None)
            model.assumed.pop(uid, None)
            if pod is not None:
                cache.remove_pod(pod)
        case ("assume", uid, node, until):
            # As the scheduler does: only pods it saw waiting (present, unbound, unfinished, not assumed).
            pod = model.pods.get(uid)
            if pod is None or pod.spec.node_name or pod.status.phase in ("Succeeded", "Failed"):
                return
            if uid in model.assumed:
                return
            model.assumed[uid] = (node, until)
            cache.assume(pod, node, until=until)
        case ("expire", now):
            expired = sorted(uid for uid, (_, until) in model.assumed.items() if until < now)
            for uid in expired:
                del model.assumed[uid]
            assert sorted(cache.expire(now)) == expired


def assert_same(incremental: Snapshot, rebuilt: Snapshot) -> None:
    assert [n.name for n in incremental] == [n.name for n in rebuilt]
    for got, want in zip(incremental, rebuilt, strict=True):
        assert got == want, got.name


@settings(max_examples=400, deadline=None)
@given(hs.lists(events, min_size=5, max_size=80))
def test_random_events_give_the_full_rebuild(sequence: list[tuple]) -> None:  # type: ignore[type-arg]
    cache, model = SchedulerCache(), Model()
    for event in sequence:
        apply(cache, model, event)
        assert_same(cache.snapshot(), model.rebuild())
    assert_same(cache.snapshot(), model.rebuild())


# -- table cases ------------------------------------------------------------------------------


def counted(cache: SchedulerCache, node: str) -> tuple[int, Resources]:
    info = cache.snapshot()[node]
    return info.pod_count, info.requested


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([("assume", "n0")], (1, Resources(100, 16 * MI)), id="assumed-counts-at-once"),
        pytest.param(
            [("assume", "n0"), ("event", "n0")], (1, Resources(100, 16 * MI)), id="assumed-then-confirmed-counts-once"
        ),
        pytest.param(
            [("event", "n0"), ("assume", "n0")], (1, Resources(100, 16 * MI)), id="event-before-assume-counts-once"
        ),
        pytest.param(
            [("assume", "n0"), ("event", "")], (1, Resources(100, 16 * MI)), id="stale-unbound-event-keeps-assumption"
        ),
        pytest.param([("assume", "n0"), ("expire", 20.0)], (0, Resources()), id="unconfirmed-expires"),
        pytest.param(
            [("assume", "n0"), ("event", "n0"), ("expire", 20.0)], (1, Resources(100, 16 * MI)), id="confirmed-stays"
        ),
        pytest.param([("assume", "n0"), ("delete", "")], (0, Resources()), id="deleted-while-assumed"),
        pytest.param([("assume", "n0"), ("event", "n1")], (0, Resources()), id="confirmed-elsewhere-moves"),
    ],
)
def test_assume_and_forget(steps: list[tuple[str, object]], expected: tuple[int, Resources]) -> None:
    cache = SchedulerCache()
    for name in ("n0", "n1"):
        cache.set_node(a_node(name))
    for step, arg in steps:
        match step:
            case "assume":
                cache.assume(a_pod("p0"), str(arg), until=10.0)
            case "event":
                cache.set_pod(a_pod("p0", node=str(arg)))
            case "expire":
                cache.expire(float(arg))  # type: ignore[arg-type]
            case "delete":
                cache.remove_pod(a_pod("p0"))
    assert counted(cache, "n0") == expected


def test_pods_of_a_node_that_comes_later_are_counted() -> None:
    cache = SchedulerCache()
    cache.set_pod(a_pod("p1", node="late", shape=1))
    assert "late" not in cache.snapshot()
    cache.set_node(a_node("late"))
    assert counted(cache, "late") == (1, Resources(200, 32 * MI))


def test_a_finished_pod_frees_its_room_and_its_port() -> None:
    cache = SchedulerCache()
    cache.set_node(a_node("n0"))
    cache.set_pod(a_pod("p0", node="n0", phase="Running"))
    assert cache.snapshot()["n0"].host_ports == frozenset({(8000, "TCP")})
    cache.set_pod(a_pod("p0", node="n0", phase="Succeeded"))
    assert cache.snapshot()["n0"].host_ports == frozenset()
    assert counted(cache, "n0") == (0, Resources())


def test_a_heartbeat_keeps_the_snapshot_and_a_new_taint_changes_it() -> None:
    cache = SchedulerCache()
    cache.set_node(a_node("n0"))
    cache.set_node(a_node("n1"))
    first = cache.snapshot()
    cache.set_node(a_node("n0"))
    assert cache.snapshot() is first
    cache.set_node(a_node("n0", taint=True))
    second = cache.snapshot()
    assert second["n0"].taints and second["n1"] is first["n1"]  # only the changed node is rebuilt
