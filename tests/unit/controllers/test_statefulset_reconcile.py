"""StatefulSet reconcile: ordered and parallel creation, scale down, re-creation under the same
name, rolling update (partition, maxUnavailable), OnDelete, claims and their retention, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.statefulset.reconcile import StatefulSetActions, max_unavailable, reconcile
from protos import revisions, statefulsets
from protos.corral.v1 import pod_pb2, storage_pb2, workloads_pb2
from protos.kinds import by_kind
from protos.wellknown import CONTROLLER_REVISION_HASH, POD_INDEX, STATEFULSET_POD_NAME

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SELECTOR = {"app": "db"}


def stateful_set(
    replicas: int = 3,
    *,
    policy: str = "OrderedReady",
    image: str = "redis:7",
    strategy: str = "RollingUpdate",
    partition: int = 0,
    min_ready: int = 0,
    claims: bool = True,
    when_deleted: str = "Retain",
    when_scaled: str = "Retain",
    current: str = "",
    start: int = 0,
) -> workloads_pb2.StatefulSet:
    sts = workloads_pb2.StatefulSet()
    sts.metadata.name, sts.metadata.namespace, sts.metadata.uid = "db", "default", "sts-uid"
    sts.metadata.generation = 2
    spec = sts.spec
    spec.replicas, spec.service_name, spec.pod_management_policy = replicas, "db", policy
    spec.min_ready_seconds = min_ready
    spec.ordinals.start = start
    spec.selector.match_labels.update(SELECTOR)
    spec.template.metadata.labels.update({**SELECTOR, "tier": "data"})
    container = spec.template.spec.containers.add(name="db", image=image)
    spec.update_strategy.type = strategy
    if strategy == "RollingUpdate":
        spec.update_strategy.rolling_update.partition = partition
    if claims:
        container.volume_mounts.add(name="data", mount_path="/data")
        template = spec.volume_claim_templates.add()
        template.metadata.name = "data"
        template.metadata.labels["kind"] = "storage"
        template.spec.access_modes.append("ReadWriteOnce")
        template.spec.resources.requests["storage"] = "1Gi"
    retention = spec.persistent_volume_claim_retention_policy
    retention.when_deleted, retention.when_scaled = when_deleted, when_scaled
    apply_defaults(by_kind("StatefulSet"), sts)
    sts.status.current_revision = current
    return sts


OLD = stateful_set(image="redis:6")
OLD_REVISION = statefulsets.revision(OLD)


def pod(
    ordinal: int,
    sts: workloads_pb2.StatefulSet | None = None,
    *,
    phase: str = "Running",
    ready: bool = True,
    ready_for: float = 3600,
    deleting: bool = False,
    owned: bool = True,
) -> pod_pb2.Pod:
    """Pod `db-<ordinal>` as the controller makes it from `sts` (default: the old template)."""
    from controlplane.controllers.statefulset import identity

    source = sts or OLD
    made = identity.new_pod(source, ordinal, source.spec.template, statefulsets.revision(source))
    made.metadata.uid = f"uid-db-{ordinal}"
    if not owned:
        del made.metadata.owner_references[:]
    made.status.phase = phase
    condition = made.status.conditions.add(type="Ready", status="True" if ready else "False")
    condition.last_transition_time.FromDatetime(NOW - timedelta(seconds=ready_for))
    if deleting:
        made.metadata.deletion_timestamp.FromDatetime(NOW)
    return made


def claim(ordinal: int, *, owners: list[tuple[str, str]] | None = None) -> storage_pb2.PersistentVolumeClaim:
    c = storage_pb2.PersistentVolumeClaim()
    c.metadata.name, c.metadata.namespace = f"data-db-{ordinal}", "default"
    for kind, uid in owners or []:
        c.metadata.owner_references.add(kind=kind, uid=uid, name="x", api_version="v1")
    return c


def run(
    sts: workloads_pb2.StatefulSet,
    pods: list[pod_pb2.Pod],
    claims: list[storage_pb2.PersistentVolumeClaim] = (),  # type: ignore[assignment]
) -> StatefulSetActions:
    return reconcile(sts, pods, {c.metadata.name: c for c in claims}, now=NOW)


def names(items: Any) -> list[str]:
    return [i.metadata.name for i in items]


# -- creation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sts", "pods", "created", "deleted"),
    [
        pytest.param(stateful_set(), [], ["db-0"], [], id="ordered-starts-with-0"),
        pytest.param(stateful_set(), [pod(0, ready=False)], [], [], id="ordered-waits-for-ready"),
        pytest.param(stateful_set(), [pod(0, phase="Pending", ready=False)], [], [], id="ordered-waits-for-running"),
        pytest.param(stateful_set(current=OLD_REVISION), [pod(0)], ["db-1"], [], id="ordered-next-after-ready"),
        pytest.param(
            stateful_set(current=OLD_REVISION), [pod(0), pod(1, ready=False)], [], [], id="ordered-one-at-a-time"
        ),
        pytest.param(
            stateful_set(min_ready=10, current=OLD_REVISION),
            [pod(0, ready_for=2)],
            [],
            [],
            id="ordered-waits-for-min-ready-seconds",
        ),
        pytest.param(stateful_set(policy="Parallel"), [], ["db-0", "db-1", "db-2"], [], id="parallel-all-at-once"),
        pytest.param(
            stateful_set(policy="Parallel", current=OLD_REVISION),
            [pod(1, ready=False)],
            ["db-0", "db-2"],
            [],
            id="parallel-does-not-wait",
        ),
        pytest.param(stateful_set(start=5, replicas=2), [], ["db-5"], [], id="ordinals-start"),
        pytest.param(
            stateful_set(current=OLD_REVISION), [pod(0, deleting=True)], [], [], id="deleted-pod-not-gone-yet"
        ),
        pytest.param(stateful_set(current=OLD_REVISION), [pod(1)], ["db-0"], [], id="deleted-pod-made-again"),
        pytest.param(
            stateful_set(current=OLD_REVISION), [pod(0, phase="Failed", ready=False)], [], ["db-0"], id="failed-deleted"
        ),
        pytest.param(
            stateful_set(current=OLD_REVISION),
            [pod(0, phase="Failed", ready=False, deleting=True)],
            [],
            [],
            id="failed-waits-until-gone",
        ),
    ],
)
def test_pods_are_made_in_order(
    sts: workloads_pb2.StatefulSet, pods: list[pod_pb2.Pod], created: list[str], deleted: list[str]
) -> None:
    actions = run(sts, pods)
    assert names(actions.create) == created
    assert names(actions.delete) == deleted


def test_a_pod_has_its_identity() -> None:
    made = run(stateful_set(), []).create[0]
    revision = statefulsets.revision(stateful_set())
    assert made.metadata.name == "db-0"
    assert dict(made.metadata.labels) == {
        "app": "db",
        "tier": "data",
        STATEFULSET_POD_NAME: "db-0",
        POD_INDEX: "0",
        CONTROLLER_REVISION_HASH: revision,
    }
    assert revision.startswith("db-")
    assert (made.spec.hostname, made.spec.subdomain) == ("db-0", "db")
    ref = made.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("StatefulSet", "db", "sts-uid", True)
    volume = next(v for v in made.spec.volumes if v.name == "data")
    assert volume.persistent_volume_claim.claim_name == "data-db-0"


# -- scale down ---------------------------------------------------------------------------

PARALLEL_ONE = stateful_set(1, policy="Parallel")


@pytest.mark.parametrize(
    ("sts", "pods", "deleted"),
    [
        pytest.param(
            stateful_set(1, current=OLD_REVISION), [pod(0), pod(1), pod(2)], ["db-2"], id="highest-ordinal-first"
        ),
        pytest.param(
            stateful_set(1, current=OLD_REVISION), [pod(0), pod(1), pod(2, deleting=True)], [], id="one-at-a-time"
        ),
        pytest.param(
            stateful_set(1, current=OLD_REVISION),
            [pod(0), pod(1, ready=False), pod(2, ready=False)],
            ["db-2"],
            id="the-highest-unhealthy-goes-first",
        ),
        pytest.param(
            stateful_set(1, current=OLD_REVISION),
            [pod(0), pod(1), pod(2, ready=False)],
            ["db-2"],
            id="the-first-unhealthy-may-go",
        ),
        pytest.param(
            stateful_set(1, current=OLD_REVISION),
            [pod(0, ready=False), pod(1), pod(2)],
            [],
            id="waits-for-the-replicas",
        ),
        pytest.param(
            PARALLEL_ONE,
            [pod(0, PARALLEL_ONE), pod(1, PARALLEL_ONE), pod(2, PARALLEL_ONE)],
            ["db-2", "db-1"],
            id="parallel-all-at-once",
        ),
        pytest.param(stateful_set(0, current=OLD_REVISION), [pod(0)], ["db-0"], id="to-zero"),
        pytest.param(
            stateful_set(1, min_ready=10, current=OLD_REVISION),
            [pod(0), pod(1, ready=False), pod(2, ready_for=1)],
            [],
            id="a-pod-not-yet-available-waits",
        ),
    ],
)
def test_scale_down_from_the_highest_ordinal(
    sts: workloads_pb2.StatefulSet, pods: list[pod_pb2.Pod], deleted: list[str]
) -> None:
    actions = run(sts, pods)
    assert names(actions.delete) == deleted
    assert actions.create == ()


# -- updates ------------------------------------------------------------------------------

NEW = stateful_set(current=OLD_REVISION)


@pytest.mark.parametrize(
    ("sts", "pods", "created", "deleted"),
    [
        pytest.param(NEW, [pod(0), pod(1), pod(2)], [], ["db-2"], id="rolling-from-the-highest"),
        pytest.param(NEW, [pod(0), pod(1), pod(2, NEW)], [], ["db-1"], id="rolling-next-down"),
        pytest.param(NEW, [pod(0), pod(1), pod(2, NEW, ready=False)], [], [], id="rolling-waits-for-ready"),
        pytest.param(NEW, [pod(0), pod(1)], ["db-2"], [], id="rolling-makes-the-deleted-new"),
        pytest.param(
            stateful_set(partition=2, current=OLD_REVISION),
            [pod(0), pod(1), pod(2, NEW)],
            [],
            [],
            id="partition-holds",
        ),
        pytest.param(
            stateful_set(partition=2, current=OLD_REVISION),
            [pod(0), pod(1), pod(2)],
            [],
            ["db-2"],
            id="partition-updates-above",
        ),
        pytest.param(
            stateful_set(strategy="OnDelete", current=OLD_REVISION), [pod(0), pod(1), pod(2)], [], [], id="on-delete"
        ),
        pytest.param(
            stateful_set(strategy="OnDelete", current=OLD_REVISION),
            [pod(0), pod(2)],
            ["db-1"],
            [],
            id="on-delete-makes-new",
        ),
    ],
)
def test_updates(
    sts: workloads_pb2.StatefulSet, pods: list[pod_pb2.Pod], created: list[str], deleted: list[str]
) -> None:
    actions = run(sts, pods)
    assert names(actions.create) == created
    assert names(actions.delete) == deleted
    update = statefulsets.revision(sts)
    assert all(p.metadata.labels[CONTROLLER_REVISION_HASH] == update for p in actions.create)


def test_below_the_partition_a_pod_is_made_again_at_the_current_revision() -> None:
    sts = stateful_set(partition=2, current=OLD_REVISION)
    made = run(sts, [pod(1), pod(2, NEW)]).create
    assert names(made) == ["db-0"]
    assert made[0].metadata.labels[CONTROLLER_REVISION_HASH] == OLD_REVISION
    assert made[0].spec.containers[0].image == "redis:6"


def test_below_the_partition_without_a_current_pod_the_update_is_used() -> None:
    sts = stateful_set(partition=2, current=OLD_REVISION)
    made = run(sts, [pod(1, NEW), pod(2, NEW)]).create
    assert made[0].metadata.labels[CONTROLLER_REVISION_HASH] == statefulsets.revision(sts)


def test_below_the_partition_the_current_revisions_template_is_read_from_its_controller_revision() -> None:
    sts = stateful_set(partition=2, current=OLD_REVISION)
    old = revisions.new_revision(sts, OLD_REVISION.removeprefix("db-"), 1)
    old.data.CopyFrom(OLD.spec.template)
    other_owner = revisions.new_revision(sts, OLD_REVISION.removeprefix("db-"), 1)
    other_owner.metadata.owner_references[0].uid = "another-set"
    other_owner.data.spec.containers[0].image = "wrong:1"
    made = reconcile(sts, [pod(1, NEW), pod(2, NEW)], {}, now=NOW, revisions=[other_owner, old]).create
    assert names(made) == ["db-0"]
    assert made[0].metadata.labels[CONTROLLER_REVISION_HASH] == OLD_REVISION
    assert made[0].spec.containers[0].image == "redis:6"


def test_max_unavailable_deletes_several() -> None:
    sts = stateful_set(4, current=OLD_REVISION)
    sts.spec.update_strategy.rolling_update.max_unavailable.int_val = 2
    assert names(run(sts, [pod(0), pod(1), pod(2), pod(3)]).delete) == ["db-3", "db-2"]
    sts.spec.update_strategy.rolling_update.max_unavailable.str_val = "50%"
    assert max_unavailable(sts) == 2
    sts.spec.update_strategy.rolling_update.max_unavailable.str_val = "10%"
    assert max_unavailable(sts) == 1


# -- claims -------------------------------------------------------------------------------


def test_claims_are_made_before_their_pod_and_never_again() -> None:
    actions = run(stateful_set(), [])
    assert names(actions.create_claims) == ["data-db-0"]
    made = actions.create_claims[0]
    assert dict(made.metadata.labels) == {"app": "db", "kind": "storage"}
    assert list(made.spec.access_modes) == ["ReadWriteOnce"]
    assert made.spec.resources.requests["storage"] == "1Gi"
    assert list(made.metadata.owner_references) == []
    again = run(stateful_set(), [], [claim(0)])
    assert again.create_claims == ()
    assert names(again.create) == ["db-0"]


def test_a_missing_claim_of_a_pending_pod_is_made() -> None:
    actions = run(stateful_set(current=OLD_REVISION), [pod(0, phase="Pending", ready=False)])
    assert names(actions.create_claims) == ["data-db-0"]


def test_when_deleted_delete_owns_claims_by_the_set() -> None:
    sts = stateful_set(when_deleted="Delete")
    made = run(sts, []).create_claims[0]
    assert [(r.kind, r.uid, r.controller) for r in made.metadata.owner_references] == [
        ("StatefulSet", "sts-uid", False)
    ]
    fixed = run(stateful_set(when_deleted="Delete", current=OLD_REVISION), [pod(0)], [claim(0)]).update_claims
    assert [r.uid for r in fixed[0].metadata.owner_references] == ["sts-uid"]


def test_retain_removes_the_sets_ownership() -> None:
    fixed = run(stateful_set(current=OLD_REVISION), [pod(0)], [claim(0, owners=[("StatefulSet", "sts-uid")])])
    assert [list(c.metadata.owner_references) for c in fixed.update_claims] == [[]]


def test_when_scaled_delete_gives_a_condemned_pods_claim_to_the_pod() -> None:
    sts = stateful_set(1, when_scaled="Delete", current=OLD_REVISION)
    actions = run(sts, [pod(0), pod(1)], [claim(0), claim(1)])
    assert names(actions.delete) == ["db-1"]
    assert names(actions.update_claims) == ["data-db-1"]
    assert [(r.kind, r.uid) for r in actions.update_claims[0].metadata.owner_references] == [("Pod", "uid-db-1")]


def test_when_scaled_retain_keeps_claims_unowned() -> None:
    actions = run(stateful_set(1, current=OLD_REVISION), [pod(0), pod(1)], [claim(0), claim(1)])
    assert names(actions.delete) == ["db-1"]
    assert actions.update_claims == ()


# -- adoption and status ---------------------------------------------------------------------


def test_orphans_named_as_members_are_adopted() -> None:
    orphan = pod(0, owned=False)
    stranger = pod(0, owned=False)
    stranger.metadata.name = "other-0"
    actions = run(stateful_set(current=OLD_REVISION), [orphan, stranger])
    assert names(actions.adopt) == ["db-0"]


def test_status_counts_and_completes_a_rolling_update() -> None:
    sts = stateful_set(2, current=OLD_REVISION)
    status = run(sts, [pod(0), pod(1, NEW)]).status
    assert status is not None
    assert (status.replicas, status.ready_replicas, status.available_replicas) == (2, 2, 2)
    assert (status.current_replicas, status.updated_replicas) == (1, 1)
    assert (status.current_revision, status.update_revision) == (OLD_REVISION, statefulsets.revision(sts))
    assert status.observed_generation == 2
    done = run(sts, [pod(0, NEW), pod(1, NEW)]).status
    assert done is not None
    assert done.current_revision == done.update_revision == statefulsets.revision(sts)
    assert done.current_replicas == 2


def test_a_set_being_deleted_only_reports() -> None:
    sts = stateful_set()
    sts.metadata.deletion_timestamp.FromDatetime(NOW)
    actions = run(sts, [])
    assert actions.create == () and actions.create_claims == ()


def test_requeue_when_a_pod_becomes_available() -> None:
    actions = run(stateful_set(min_ready=10, current=OLD_REVISION), [pod(0, ready_for=4)])
    assert actions.requeue_after is not None
    assert 5.9 < actions.requeue_after < 6.2


def test_a_running_pods_missing_claim_is_not_made_again() -> None:
    assert run(stateful_set(1, current=OLD_REVISION), [pod(0)]).create_claims == ()


# -- properties ---------------------------------------------------------------------------

POD_STATES = st.tuples(
    st.sampled_from(["Pending", "Running", "Failed", "Succeeded"]),
    st.booleans(),  # ready
    st.booleans(),  # being deleted
    st.booleans(),  # at the new revision
)


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(0, 5),
    parallel=st.booleans(),
    partition=st.integers(0, 6),
    states=st.dictionaries(st.integers(0, 6), POD_STATES, max_size=7),
)
def test_never_two_pods_of_one_name_and_ordered_ready_acts_once(
    replicas: int, parallel: bool, partition: int, states: dict[int, tuple[str, bool, bool, bool]]
) -> None:
    sts = stateful_set(replicas, policy="Parallel" if parallel else "OrderedReady", partition=partition)
    sts.status.current_revision = OLD_REVISION
    pods = [
        pod(o, sts if new else None, phase=phase, ready=ready and phase == "Running", deleting=deleting)
        for o, (phase, ready, deleting, new) in states.items()
    ]
    actions = run(sts, pods)
    existing = {p.metadata.name for p in pods}
    created = names(actions.create)
    assert not existing & set(created)
    assert len(created) == len(set(created))
    assert all(statefulsets.ordinal_of("db", n) in range(replicas) for n in created)
    assert not any(p.metadata.deletion_timestamp.seconds for p in actions.delete)
    if not parallel:
        assert len(actions.create) + len(actions.delete) <= 1
