"""DaemonSet reconcile: one pod per fitting node (selectors, affinity, taints and the DaemonSet
tolerations), nodes that join and leave, misscheduled pods, rolling update (maxUnavailable,
maxSurge), OnDelete, and status."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.daemonset.reconcile import DaemonSetActions, reconcile
from protos import daemonsets
from protos.corral.v1 import node_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind
from protos.wellknown import CONTROLLER_REVISION_HASH

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SELECTOR = {"app": "exporter"}


def daemon_set(
    *,
    image: str = "exporter:2",
    strategy: str = "RollingUpdate",
    max_unavailable: int | str | None = None,
    max_surge: int | str | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[pod_pb2.Toleration] | None = None,
    affinity: list[pod_pb2.NodeSelectorRequirement] | None = None,
    min_ready: int = 0,
) -> workloads_pb2.DaemonSet:
    ds = workloads_pb2.DaemonSet()
    ds.metadata.name, ds.metadata.namespace, ds.metadata.uid = "exporter", "default", "ds-uid"
    ds.metadata.generation = 2
    spec = ds.spec
    spec.min_ready_seconds = min_ready
    spec.selector.match_labels.update(SELECTOR)
    spec.template.metadata.labels.update(SELECTOR)
    spec.template.spec.containers.add(name="exporter", image=image)
    spec.template.spec.node_selector.update(node_selector or {})
    spec.template.spec.tolerations.extend(tolerations or [])
    if affinity:
        required = spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
        required.node_selector_terms.add().match_expressions.extend(affinity)
    spec.update_strategy.type = strategy
    for name, value in (("max_unavailable", max_unavailable), ("max_surge", max_surge)):
        if value is not None:
            target = getattr(spec.update_strategy.rolling_update, name)
            if isinstance(value, int):
                target.int_val = value
            else:
                target.str_val = value
    apply_defaults(by_kind("DaemonSet"), ds)
    return ds


OLD = daemon_set(image="exporter:1")


def node(
    name: str, *, labels: dict[str, str] | None = None, taints: tuple[tuple[str, str], ...] = (), cordoned: bool = False
) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    n.metadata.labels.update(labels or {})
    for key, effect in taints:
        n.spec.taints.add(key=key, effect=effect)
    n.spec.unschedulable = cordoned
    return n


_uids = itertools.count()


def pod(
    node_name: str,
    ds: workloads_pb2.DaemonSet | None = None,
    *,
    ready: bool = True,
    ready_for: float = 3600,
    phase: str = "Running",
    deleting: bool = False,
    bound: bool = True,
    age: float = 7200,
) -> pod_pb2.Pod:
    """A pod as the controller makes it for `node_name` from `ds` (default: the old template)."""
    from controlplane.controllers.daemonset.reconcile import new_pod

    source = ds or OLD
    made = new_pod(source, node_name, daemonsets.revision(source))
    n = next(_uids)
    made.metadata.name, made.metadata.uid = f"exporter-{node_name}-{n}", f"uid-{n}"
    made.metadata.creation_timestamp.FromDatetime(NOW - timedelta(seconds=age))
    if bound:
        made.spec.node_name = node_name
    made.status.phase = phase
    condition = made.status.conditions.add(type="Ready", status="True" if ready else "False")
    condition.last_transition_time.FromDatetime(NOW - timedelta(seconds=ready_for))
    if deleting:
        made.metadata.deletion_timestamp.FromDatetime(NOW)
    return made


def run(ds: workloads_pb2.DaemonSet, pods: list[pod_pb2.Pod], nodes: list[node_pb2.Node]) -> DaemonSetActions:
    return reconcile(ds, pods, nodes, now=NOW)


def created_on(actions: DaemonSetActions) -> list[str]:
    return sorted(daemonsets.node_of(p) for p in actions.create)


def deleted_on(actions: DaemonSetActions) -> list[str]:
    return sorted(daemonsets.node_of(p) for p in actions.delete)


NEW = daemon_set()
NOT_READY = (("node.kubernetes.io/not-ready", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute"))
UNREACHABLE = (("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute"))
THREE = [node("a"), node("b"), node("c")]


# -- placement ----------------------------------------------------------------------------


def _exists(key: str, effect: str = "") -> pod_pb2.Toleration:
    return pod_pb2.Toleration(key=key, operator="Exists", effect=effect)


@pytest.mark.parametrize(
    ("ds", "nodes", "expected"),
    [
        pytest.param(NEW, THREE, ["a", "b", "c"], id="every-node"),
        pytest.param(NEW, [], [], id="no-nodes"),
        pytest.param(
            daemon_set(node_selector={"disk": "ssd"}),
            [node("a", labels={"disk": "ssd"}), node("b"), node("c", labels={"disk": "hdd"})],
            ["a"],
            id="node-selector",
        ),
        pytest.param(
            daemon_set(affinity=[pod_pb2.NodeSelectorRequirement(key="zone", operator="In", values=["x", "y"])]),
            [node("a", labels={"zone": "x"}), node("b", labels={"zone": "z"}), node("c")],
            ["a"],
            id="node-affinity",
        ),
        pytest.param(NEW, [node("a", taints=(("dedicated", "NoSchedule"),)), node("b")], ["b"], id="noschedule-taint"),
        pytest.param(NEW, [node("a", taints=(("dedicated", "NoExecute"),)), node("b")], ["b"], id="noexecute-taint"),
        pytest.param(
            NEW, [node("a", taints=(("dedicated", "PreferNoSchedule"),))], ["a"], id="prefer-noschedule-ignored"
        ),
        pytest.param(
            daemon_set(tolerations=[_exists("dedicated")]),
            [node("a", taints=(("dedicated", "NoSchedule"),)), node("b")],
            ["a", "b"],
            id="tolerated-taint",
        ),
        pytest.param(
            NEW,
            [node("a", cordoned=True, taints=(("node.kubernetes.io/unschedulable", "NoSchedule"),))],
            ["a"],
            id="cordoned-node-gets-one",
        ),
        pytest.param(
            NEW,
            [
                node("a", taints=(("node.kubernetes.io/memory-pressure", "NoSchedule"),)),
                node("b", taints=(("node.kubernetes.io/disk-pressure", "NoSchedule"),)),
                node("c", taints=(("node.kubernetes.io/pid-pressure", "NoSchedule"),)),
            ],
            ["a", "b", "c"],
            id="pressure-taints-tolerated",
        ),
        pytest.param(
            NEW,
            [node("a", taints=NOT_READY)],
            [],
            id="not-ready-node-gets-none",
        ),
        pytest.param(
            NEW,
            [node("a", taints=(("node.kubernetes.io/network-unavailable", "NoSchedule"),))],
            [],
            id="network-unavailable-without-host-network",
        ),
    ],
)
def test_one_pod_per_fitting_node(ds: workloads_pb2.DaemonSet, nodes: list[node_pb2.Node], expected: list[str]) -> None:
    assert created_on(run(ds, [], nodes)) == expected


def test_new_pod_carries_revision_tolerations_and_affinity_to_its_node() -> None:
    ds = daemon_set(affinity=[pod_pb2.NodeSelectorRequirement(key="zone", operator="Exists")])
    (made,) = run(ds, [], [node("a", labels={"zone": "x"})]).create
    assert made.metadata.generate_name == "exporter-"
    assert made.metadata.labels[CONTROLLER_REVISION_HASH] == daemonsets.revision(ds)
    assert made.metadata.owner_references[0].kind == "DaemonSet"
    assert made.metadata.owner_references[0].controller
    assert not made.spec.node_name  # the scheduler binds it
    (term,) = made.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert [(r.key, r.operator, list(r.values)) for r in term.match_fields] == [("metadata.name", "In", ["a"])]
    assert [r.key for r in term.match_expressions] == ["zone"]
    keys = {(t.key, t.effect) for t in made.spec.tolerations}
    assert ("node.kubernetes.io/not-ready", "NoExecute") in keys
    assert ("node.kubernetes.io/unreachable", "NoExecute") in keys
    assert ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") not in keys
    assert all(not t.HasField("toleration_seconds") for t in made.spec.tolerations)


def test_host_network_pod_tolerates_network_unavailable() -> None:
    ds = daemon_set()
    ds.spec.template.spec.host_network = True
    nodes = [node("a", taints=(("node.kubernetes.io/network-unavailable", "NoSchedule"),))]
    (made,) = run(ds, [], nodes).create
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in {
        (t.key, t.effect) for t in made.spec.tolerations
    }


@pytest.mark.parametrize(
    ("pods", "nodes", "created", "deleted"),
    [
        pytest.param([pod("a", NEW), pod("b", NEW)], THREE, ["c"], [], id="node-joins"),
        pytest.param([pod("a", NEW), pod("b", NEW), pod("gone", NEW)], THREE[:2], [], ["gone"], id="node-removed"),
        pytest.param([pod("a", NEW, bound=False)], [node("a")], [], [], id="pending-pod-counts-for-its-node"),
        pytest.param([pod("a", NEW, deleting=True)], [node("a")], [], [], id="waits-for-terminating-pod"),
        pytest.param([pod("a", NEW, phase="Failed")], [node("a")], [], ["a"], id="failed-pod-deleted"),
        pytest.param(
            [pod("a", NEW, age=100), pod("a", NEW, age=50)], [node("a")], [], ["a"], id="duplicate-newer-deleted"
        ),
        pytest.param(
            [pod("a", NEW)],
            [node("a", taints=(("dedicated", "NoExecute"),))],
            [],
            ["a"],
            id="noexecute-taint-evicts",
        ),
        pytest.param(
            [pod("a", NEW)],
            [node("a", taints=(("dedicated", "NoSchedule"),))],
            [],
            [],
            id="noschedule-taint-keeps-running-pod",
        ),
        pytest.param(
            [pod("a", NEW, ready=False)],
            [node("a", taints=UNREACHABLE)],
            [],
            [],
            id="unreachable-node-keeps-its-pod",
        ),
    ],
)
def test_manage(pods: list[pod_pb2.Pod], nodes: list[node_pb2.Node], created: list[str], deleted: list[str]) -> None:
    actions = run(NEW, pods, nodes)
    assert (created_on(actions), deleted_on(actions)) == (created, deleted)


def test_pod_on_node_that_no_longer_matches_is_deleted_and_misscheduled() -> None:
    ds = daemon_set(node_selector={"disk": "ssd"})
    pods = [pod("a", ds), pod("b", ds)]
    actions = run(ds, pods, [node("a", labels={"disk": "ssd"}), node("b")])
    assert deleted_on(actions) == ["b"]
    assert actions.status is not None
    assert actions.status.number_misscheduled == 1
    assert actions.status.desired_number_scheduled == 1


def test_orphan_matching_pod_is_adopted_and_counts() -> None:
    orphan = pod("a", NEW)
    del orphan.metadata.owner_references[:]
    actions = run(NEW, [orphan], [node("a")])
    assert [p.metadata.owner_references[0].uid for p in actions.adopt] == ["ds-uid"]
    assert actions.create == ()


def test_deleting_daemon_set_only_reports_status() -> None:
    ds = daemon_set()
    ds.metadata.deletion_timestamp.FromDatetime(NOW)
    actions = run(ds, [], THREE)
    assert actions.create == () and actions.delete == ()


# -- status ---------------------------------------------------------------------------------


def test_status_counts() -> None:
    pods = [pod("a", NEW), pod("b", OLD), pod("c", NEW, ready=False)]
    actions = reconcile(NEW, pods, [*THREE, node("d")], now=NOW, manage=False)
    st = actions.status
    assert st is not None
    assert (
        st.desired_number_scheduled,
        st.current_number_scheduled,
        st.number_ready,
        st.number_available,
        st.number_unavailable,
        st.updated_number_scheduled,
        st.number_misscheduled,
        st.observed_generation,
    ) == (4, 3, 2, 2, 2, 2, 0, 2)


def test_min_ready_seconds_delays_availability_and_requeues() -> None:
    ds = daemon_set(min_ready=30)
    actions = run(ds, [pod("a", ds, ready_for=10)], [node("a")])
    assert actions.status is not None
    assert (actions.status.number_ready, actions.status.number_available) == (1, 0)
    assert actions.requeue_after == pytest.approx(20.05)


# -- updates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ds", "pods", "created", "deleted"),
    [
        pytest.param(NEW, [pod(n) for n in "abc"], [], ["a"], id="max-unavailable-1"),
        pytest.param(daemon_set(max_unavailable=2), [pod(n) for n in "abc"], [], ["a", "b"], id="max-unavailable-2"),
        pytest.param(daemon_set(max_unavailable="50%"), [pod(n) for n in "abcd"], [], ["a", "b"], id="percent"),
        pytest.param(
            NEW, [pod("a", NEW, ready=False), pod("b"), pod("c")], [], [], id="waits-for-updated-pod-to-be-ready"
        ),
        pytest.param(NEW, [pod("a", NEW), pod("b"), pod("c")], [], ["b"], id="next-after-ready"),
        pytest.param(NEW, [pod("b"), pod("c")], ["a"], [], id="missing-pod-counts-unavailable"),
        pytest.param(NEW, [pod("a", ready=False), pod("b"), pod("c")], [], ["a"], id="unavailable-old-replaced-first"),
        pytest.param(daemon_set(strategy="OnDelete"), [pod(n) for n in "abc"], [], [], id="on-delete"),
        pytest.param(
            daemon_set(max_surge=1, max_unavailable=0), [pod(n) for n in "abc"], ["a"], [], id="surge-creates-beside"
        ),
        pytest.param(
            daemon_set(max_surge=1, max_unavailable=0),
            [pod("a"), pod("a", daemon_set(max_surge=1, max_unavailable=0), ready=False), pod("b"), pod("c")],
            [],
            [],
            id="surge-waits-for-new-pod",
        ),
        pytest.param(
            daemon_set(max_surge=1, max_unavailable=0),
            [pod("a"), pod("a", daemon_set(max_surge=1, max_unavailable=0), age=10), pod("b"), pod("c")],
            ["b"],
            ["a"],
            id="surge-deletes-old-once-new-available",
        ),
        pytest.param(
            daemon_set(max_surge="100%", max_unavailable=0),
            [pod(n) for n in "abc"],
            ["a", "b", "c"],
            [],
            id="surge-100-percent",
        ),
    ],
)
def test_rolling_update(
    ds: workloads_pb2.DaemonSet, pods: list[pod_pb2.Pod], created: list[str], deleted: list[str]
) -> None:
    nodes = [node(n) for n in sorted({p.spec.node_name for p in pods} | {"a", "b", "c"})]
    actions = run(ds, pods, nodes)
    assert (created_on(actions), deleted_on(actions)) == (created, deleted)


# -- rolling update never has more than maxUnavailable nodes without an available pod -------


class _Cluster:
    """Pods on nodes as reconcile's actions leave them; the scheduler binds at once and pods
    become ready on the steps `ready` picks."""

    def __init__(self, nodes: list[str], pods: list[pod_pb2.Pod]) -> None:
        self.nodes = [node(n) for n in nodes]
        self.pods = {p.metadata.uid: p for p in pods}

    def apply(self, actions: DaemonSetActions) -> None:
        for p in actions.delete:
            self.pods.pop(p.metadata.uid)
        for p in actions.create:
            made = pod_pb2.Pod()
            made.CopyFrom(p)
            n = next(_uids)
            made.metadata.name, made.metadata.uid = f"exporter-{n}", f"uid-{n}"
            made.metadata.creation_timestamp.FromDatetime(NOW)
            made.spec.node_name = daemonsets.node_of(p)
            made.status.phase = "Pending"
            self.pods[made.metadata.uid] = made

    def make_ready(self, which: list[bool]) -> None:
        pending = [p for p in self.pods.values() if p.status.phase == "Pending"]
        for p, ready in zip(pending, which, strict=False):
            if ready:
                p.status.phase = "Running"
                c = p.status.conditions.add(type="Ready", status="True")
                c.last_transition_time.FromDatetime(NOW - timedelta(hours=1))

    def without_available(self) -> int:
        available = {p.spec.node_name for p in self.pods.values() if p.status.phase == "Running"}
        return sum(n.metadata.name not in available for n in self.nodes)


@given(
    nodes=st.integers(min_value=1, max_value=6),
    max_unavailable=st.integers(min_value=1, max_value=3),
    surge=st.integers(min_value=0, max_value=2),
    readiness=st.lists(st.lists(st.booleans(), max_size=6), min_size=1, max_size=30),
)
@settings(max_examples=150, deadline=None)
def test_rolling_update_keeps_nodes_available(
    nodes: int, max_unavailable: int, surge: int, readiness: list[list[bool]]
) -> None:
    """With every old pod available, a rolling update never leaves more than maxUnavailable
    nodes without an available pod (none with maxSurge and maxUnavailable 0), never runs a
    second pod on more than maxSurge nodes, and finishes."""
    limit = 0 if surge else max_unavailable
    ds = daemon_set(max_unavailable=limit, max_surge=surge)
    names = [f"n{i}" for i in range(nodes)]
    cluster = _Cluster(names, [pod(n) for n in names])
    for step in [*readiness, *([[True] * 6] * (2 * nodes + 2))]:
        cluster.apply(reconcile(ds, list(cluster.pods.values()), cluster.nodes, now=NOW))
        assert cluster.without_available() <= limit
        assert len(cluster.pods) <= nodes + surge
        cluster.make_ready(step)
    updated = [
        p for p in cluster.pods.values() if p.metadata.labels[CONTROLLER_REVISION_HASH] == daemonsets.revision(ds)
    ]
    assert sorted(p.spec.node_name for p in updated) == names
    assert len(cluster.pods) == nodes


def names_of(items: Any) -> list[str]:
    return [i.metadata.name for i in items]


def test_label_selector_must_match_pod_labels_to_claim() -> None:
    stranger = pod("a", NEW)
    stranger.metadata.labels.clear()
    actions = run(NEW, [stranger], [node("a")])
    assert names_of(actions.release) == [stranger.metadata.name]


def test_revision_is_the_template_hash() -> None:
    assert daemonsets.revision(NEW) != daemonsets.revision(OLD)
    assert len(daemonsets.revision(NEW)) == 10


# -- failed pods ---------------------------------------------------------------------------


def test_failed_pod_waits_for_its_node_back_off() -> None:
    failed = pod("a", NEW, phase="Failed")
    held = reconcile(NEW, [failed], [node("a")], now=NOW, failed_not_before={"a": NOW + timedelta(seconds=4)})
    assert held.delete == () and held.failed_on == ()
    assert held.requeue_after == pytest.approx(4.0)
    gone = reconcile(NEW, [failed], [node("a")], now=NOW, failed_not_before={"a": NOW})
    assert deleted_on(gone) == ["a"] and gone.failed_on == ("a",)


def test_succeeded_pod_is_replaced_without_back_off() -> None:
    done = pod("a", NEW, phase="Succeeded")
    actions = reconcile(NEW, [done], [node("a")], now=NOW, failed_not_before={"a": NOW + timedelta(seconds=4)})
    assert deleted_on(actions) == ["a"] and actions.failed_on == ()
