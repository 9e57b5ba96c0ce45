"""ReplicaSet reconcile: claiming, creating, deleting (victim order), status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.replicaset import victims
from controlplane.controllers.replicaset.reconcile import reconcile
from protos import owners
from protos import pods as podutil
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LABELS = {"app": "web", "pod-template-hash": "abc"}


def replica_set(replicas: int = 3, *, min_ready_seconds: int = 0, generation: int = 4) -> workloads_pb2.ReplicaSet:
    rs = workloads_pb2.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace, rs.metadata.uid = "web-abc", "default", "rs-uid"
    rs.metadata.generation = generation
    rs.spec.replicas = replicas
    rs.spec.min_ready_seconds = min_ready_seconds
    rs.spec.selector.match_labels.update(LABELS)
    rs.spec.template.metadata.labels.update(LABELS)
    rs.spec.template.metadata.annotations["note"] = "from-template"
    rs.spec.template.spec.containers.add(name="main", image="httpd:2")
    apply_defaults(by_kind("ReplicaSet"), rs)
    return rs


RS = replica_set()


def pod(
    name: str,
    *,
    owner: str | None = "rs-uid",
    phase: str = "Running",
    ready: bool = True,
    ready_for: float = 3600,
    node: str = "node-a",
    restarts: int = 0,
    age: float = 7200,
    labels: dict[str, str] | None = None,
    deleting: bool = False,
) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.metadata.labels.update(LABELS if labels is None else labels)
    p.metadata.creation_timestamp.FromDatetime(NOW - timedelta(seconds=age))
    if owner is not None:
        p.metadata.owner_references.add(
            api_version="apps/v1", kind="ReplicaSet", name="web-abc", uid=owner, controller=True
        )
    if deleting:
        p.metadata.deletion_timestamp.FromDatetime(NOW)
    p.spec.node_name = node
    p.status.phase = phase
    condition = p.status.conditions.add(type="Ready", status="True" if ready else "False")
    condition.last_transition_time.FromDatetime(NOW - timedelta(seconds=ready_for))
    p.status.container_statuses.add(name="main", restart_count=restarts)
    return p


def names(pods: tuple[pod_pb2.Pod, ...]) -> list[str]:
    return [p.metadata.name for p in pods]


# -- creating ----------------------------------------------------------------------


def test_creates_missing_pods_from_the_template() -> None:
    actions = reconcile(RS, [pod("a")], now=NOW)
    assert len(actions.create) == 2
    new = actions.create[0]
    assert new.metadata.generate_name == "web-abc-" and not new.metadata.name
    assert new.metadata.namespace == "default"
    assert dict(new.metadata.labels) == LABELS
    assert dict(new.metadata.annotations) == {"note": "from-template"}
    assert list(new.metadata.owner_references) == [
        meta_pb2.OwnerReference(
            api_version="apps/v1",
            kind="ReplicaSet",
            name="web-abc",
            uid="rs-uid",
            controller=True,
            block_owner_deletion=True,
        )
    ]
    assert new.spec == RS.spec.template.spec
    assert not actions.delete


def test_creates_at_most_a_burst_per_sync() -> None:
    actions = reconcile(replica_set(1200), [], now=NOW, burst=500)
    assert len(actions.create) == 500


def test_manage_false_claims_and_reports_but_does_not_act() -> None:
    actions = reconcile(RS, [pod("a", ready=False)], now=NOW, manage=False)
    assert not actions.create and not actions.delete
    assert actions.status is not None and actions.status.replicas == 1


def test_a_replica_set_being_deleted_creates_nothing() -> None:
    rs = replica_set()
    rs.metadata.deletion_timestamp.FromDatetime(NOW)
    assert not reconcile(rs, [], now=NOW).create


# -- what counts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "creates", "deletes"),
    [
        pytest.param(pod("x", phase="Failed", ready=False), 1, ["x"], id="failed-replaced-and-deleted"),
        pytest.param(pod("x", phase="Succeeded", ready=False), 1, ["x"], id="succeeded-replaced-and-deleted"),
        pytest.param(pod("x", deleting=True), 1, [], id="terminating-not-counted-not-deleted-again"),
        pytest.param(pod("x", owner="someone-else"), 1, [], id="owned-by-another-ignored"),
        pytest.param(pod("x", owner=None, labels={"app": "api"}), 1, [], id="orphan-not-matching-ignored"),
        pytest.param(pod("x", owner=None), 0, [], id="orphan-matching-adopted-and-counted"),
        pytest.param(pod("x"), 0, [], id="owned-active-counted"),
    ],
)
def test_which_pods_count(extra: pod_pb2.Pod, creates: int, deletes: list[str]) -> None:
    actions = reconcile(RS, [pod("a"), pod("b"), extra], now=NOW)
    assert len(actions.create) == creates
    assert names(actions.delete) == deletes


def test_orphans_are_adopted_with_an_owner_reference() -> None:
    actions = reconcile(RS, [pod("a"), pod("b"), pod("orphan", owner=None)], now=NOW)
    assert names(actions.adopt) == ["orphan"]
    ref = owners.controller_ref(actions.adopt[0])
    assert ref is not None and ref.uid == "rs-uid" and ref.kind == "ReplicaSet"


def test_owned_pods_that_no_longer_match_are_released() -> None:
    actions = reconcile(RS, [pod("a"), pod("b"), pod("c"), pod("relabelled", labels={"app": "debug"})], now=NOW)
    assert names(actions.release) == ["relabelled"]
    assert owners.controller_ref(actions.release[0]) is None
    assert not actions.create and not actions.delete


# -- deleting: victims -------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            pod("v", node="", phase="Pending", ready=False),
            pod("k", phase="Pending", ready=False),
            id="unassigned-before-assigned",
        ),
        pytest.param(
            pod("v", phase="Pending", ready=False), pod("k", phase="Unknown", ready=False), id="pending-before-unknown"
        ),
        pytest.param(
            pod("v", phase="Unknown", ready=False), pod("k", phase="Running", ready=False), id="unknown-before-running"
        ),
        pytest.param(pod("v", ready=False), pod("k"), id="not-ready-before-ready"),
        pytest.param(pod("v", ready_for=10), pod("k", ready_for=100), id="ready-for-less-time-first"),
        pytest.param(pod("v", restarts=5), pod("k", restarts=1), id="more-restarts-first"),
        pytest.param(pod("v", age=60), pod("k", age=600), id="newer-first"),
        pytest.param(pod("v", node="node-a"), pod("k", node="node-b"), id="doubled-up-node-first"),
    ],
)
def test_victim_order(first: pod_pb2.Pod, second: pod_pb2.Pod) -> None:
    # "other" shares node-a, so a pod on node-a is doubled up (only matters when all else is equal).
    other = pod("other", ready_for=100000, age=100000)
    for pods in ([first, second, other], [second, first, other]):
        actions = reconcile(replica_set(2), pods, now=NOW)
        assert names(actions.delete) == ["v"]


def test_not_yet_available_goes_before_available() -> None:
    rs = replica_set(1, min_ready_seconds=60)
    pods = [pod("available", ready_for=120, node="node-b", age=10), pod("warming", ready_for=30, age=10000)]
    assert names(reconcile(rs, pods, now=NOW).delete) == ["warming"]


def test_deletes_the_surplus_only() -> None:
    pods = [pod(f"p{i}", age=100 * i) for i in range(5)]
    actions = reconcile(replica_set(2), pods, now=NOW)
    assert names(actions.delete) == ["p0", "p1", "p2"]
    assert not actions.create


def test_a_scale_to_zero_ranks_no_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    def ranked(*args: object, **kwargs: object) -> list[pod_pb2.Pod]:
        raise AssertionError("every pod goes: no ranking")

    monkeypatch.setattr(victims, "victim_order", ranked)
    pods = [pod(f"p{i}", age=100 * i) for i in range(5)]
    assert names(reconcile(replica_set(0), pods, now=NOW, burst=2).delete) == ["p0", "p1"]
    assert len(reconcile(replica_set(0), pods, now=NOW).delete) == 5


# -- status ------------------------------------------------------------------------


def test_status_counts() -> None:
    rs = replica_set(4, min_ready_seconds=30)
    pods = [
        pod("a"),
        pod("b", ready_for=10),
        pod("c", ready=False),
        pod("d", labels={**LABELS, "x": "y"}),
        pod("e", phase="Failed", ready=False),
        pod("f", deleting=True),
    ]
    status = reconcile(rs, pods, now=NOW, manage=False).status
    assert status == workloads_pb2.ReplicaSetStatus(
        replicas=4, fully_labeled_replicas=4, ready_replicas=3, available_replicas=2, observed_generation=4
    )


def test_status_none_when_unchanged() -> None:
    rs = replica_set(1)
    rs.status.CopyFrom(
        workloads_pb2.ReplicaSetStatus(
            replicas=1, fully_labeled_replicas=1, ready_replicas=1, available_replicas=1, observed_generation=4
        )
    )
    assert reconcile(rs, [pod("a")], now=NOW).status is None


def test_requeues_when_a_ready_pod_becomes_available() -> None:
    rs = replica_set(2, min_ready_seconds=30)
    actions = reconcile(rs, [pod("a", ready_for=10), pod("b", ready_for=25)], now=NOW)
    assert actions.requeue_after == pytest.approx(5, abs=0.1)
    assert reconcile(rs, [pod("a"), pod("b")], now=NOW).requeue_after is None


# -- property: never more than asked -----------------------------------------------

pod_states = st.builds(
    lambda i, phase, ready, owner, deleting, node: pod(
        f"p{i}", phase=phase, ready=ready, owner=owner, deleting=deleting, node=node, age=i * 10
    ),
    i=st.integers(0, 10_000),
    phase=st.sampled_from(["Pending", "Running", "Unknown", "Failed", "Succeeded"]),
    ready=st.booleans(),
    owner=st.sampled_from(["rs-uid", None, "other"]),
    deleting=st.booleans(),
    node=st.sampled_from(["", "node-a", "node-b"]),
)


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(0, 12),
    pods=st.lists(pod_states, max_size=20, unique_by=lambda p: p.metadata.name),
    burst=st.integers(1, 20),
)
def test_never_places_more_pods_than_asked(replicas: int, pods: list[pod_pb2.Pod], burst: int) -> None:
    actions = reconcile(replica_set(replicas), pods, now=NOW, burst=burst)
    adopted = {p.metadata.name for p in actions.adopt}
    mine = [p for p in pods if owners.is_controlled_by(p, "rs-uid") or p.metadata.name in adopted]
    active = [p for p in mine if podutil.is_active(p)]
    deleted = {p.metadata.name for p in actions.delete}
    remaining = [p for p in active if p.metadata.name not in deleted]
    assert len(remaining) + len(actions.create) <= max(replicas, len(active))
    assert len(remaining) >= min(replicas, len(active))
    assert len(actions.create) <= burst and len(actions.delete) <= burst
    assert deleted <= {p.metadata.name for p in mine}
    assert not (actions.create and len(remaining) + len(actions.create) > replicas)
