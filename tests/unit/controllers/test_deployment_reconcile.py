"""Deployment reconcile: fenceposts, rollouts step by step (on the `sim` model),
Recreate, pause, proportional scaling, history, progress deadline, rollback,
and Hypothesis properties of the rollout bounds."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.controllers.deployment import conditions as cond
from controlplane.controllers.deployment.reconcile import reconcile
from controlplane.controllers.deployment.strategy import resolve_fenceposts
from protos import deployments
from protos.corral.v1 import meta_pb2, workloads_pb2
from protos.deployments import template_hash, without_hash
from protos.wellknown import (
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    POD_TEMPLATE_HASH,
    REVISION,
    REVISION_HISTORY,
    ROLLBACK_ON_FAILURE,
    ROLLED_BACK_TO,
)
from tests.unit.controllers.sim import START, Sim, make_deployment


def int_or_str(value: int | str) -> meta_pb2.IntOrString:
    return meta_pb2.IntOrString(int_val=value) if isinstance(value, int) else meta_pb2.IntOrString(str_val=value)


def progressing(d: workloads_pb2.Deployment) -> meta_pb2.Condition:
    condition = cond.get_condition(d.status, deployments.PROGRESSING)
    assert condition is not None
    return condition


def stable(**kwargs: object) -> Sim:
    """A Sim whose first rollout (image httpd:1) is complete, every pod ready."""
    sim = Sim(make_deployment(**kwargs))  # type: ignore[arg-type]
    sim.settle()
    sim.advance(sim.deployment.spec.min_ready_seconds)
    sim.settle()
    assert sim.complete()
    return sim


def roll_out(sim: Sim, *, max_rounds: int = 40) -> list[tuple[int, int, int]]:
    """Rounds until complete, pods made ready after each; (total, available, ready) after each step."""
    seen = []
    for _ in range(max_rounds):
        sim.round()
        seen.append(_observed(sim))
        sim.mark_ready()
        seen.append(_observed(sim))
        if sim.complete():
            sim.settle()
            return seen
    raise AssertionError(f"rollout not complete after {max_rounds} rounds: {sim.sizes()}")


def _observed(sim: Sim) -> tuple[int, int, int]:
    b = sim.bounds()
    return b.total, b.available, b.ready


# -- fenceposts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        pytest.param("25%", "25%", 3, (1, 0), id="defaults-on-3"),
        pytest.param("25%", "25%", 10, (3, 2), id="defaults-on-10"),
        pytest.param("25%", "25%", 1, (1, 0), id="defaults-on-1"),
        pytest.param("25%", "25%", 0, (0, 1), id="defaults-on-0-unavailable-becomes-1"),
        pytest.param(3, 0, 3, (3, 0), id="appendix-ints"),
        pytest.param("0%", "10%", 3, (0, 1), id="both-round-to-0"),
        pytest.param("50%", "50%", 5, (3, 2), id="half-rounds-each-way"),
        pytest.param("100%", 0, 4, (4, 0), id="blue-green-like"),
    ],
)
def test_fenceposts(surge: int | str, unavailable: int | str, replicas: int, expected: tuple[int, int]) -> None:
    assert resolve_fenceposts(int_or_str(surge), int_or_str(unavailable), replicas) == expected


# -- first rollout -----------------------------------------------------------------


def test_first_rollout_creates_the_replica_set() -> None:
    sim = Sim(make_deployment(replicas=3))
    d = sim.deployment
    actions = reconcile(d, [], [], now=START)
    assert len(actions.create) == 1 and not actions.update and not actions.scale_down
    rs = actions.create[0]
    pod_hash = template_hash(d.spec.template)
    assert len(pod_hash) == 10
    assert rs.metadata.name == f"web-{pod_hash}"
    assert rs.spec.replicas == 3
    assert dict(rs.spec.selector.match_labels) == {"app": "web", POD_TEMPLATE_HASH: pod_hash}
    assert dict(rs.spec.template.metadata.labels) == {"app": "web", POD_TEMPLATE_HASH: pod_hash}
    assert dict(rs.metadata.labels) == {"app": "web", POD_TEMPLATE_HASH: pod_hash}
    assert rs.spec.template.spec == d.spec.template.spec
    assert dict(rs.metadata.annotations) == {REVISION: "1", DESIRED_REPLICAS: "3", MAX_REPLICAS: "4"}
    ref = rs.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == (
        "Deployment",
        "web",
        d.metadata.uid,
        True,
        True,
    )
    assert actions.deployment is not None
    assert actions.deployment.metadata.annotations[REVISION] == "1"
    assert progressing(actions.deployment).reason == deployments.NEW_RS_CREATED
    assert [e.message for e in actions.events] == [f"Scaled up replica set web-{pod_hash} from 0 to 3"]


def test_template_hash_is_deterministic_and_ignores_the_hash_label() -> None:
    template = make_deployment().spec.template
    labelled = type(template)()
    labelled.CopyFrom(template)
    labelled.metadata.labels[POD_TEMPLATE_HASH] = "whatever"
    assert template_hash(template) == template_hash(labelled) == template_hash(make_deployment().spec.template)
    assert template_hash(template, 1) != template_hash(template)
    assert template_hash(make_deployment(image="httpd:2").spec.template) != template_hash(template)


def test_a_name_collision_bumps_the_collision_count() -> None:
    d = Sim(make_deployment(replicas=2)).deployment
    squatter = workloads_pb2.ReplicaSet()
    squatter.metadata.name, squatter.metadata.namespace = f"web-{template_hash(d.spec.template)}", "default"
    squatter.metadata.uid = "someone-else"
    actions = reconcile(d, [squatter], [], now=START)
    assert not actions.create
    assert actions.deployment is not None and actions.deployment.status.collision_count == 1
    d.status.CopyFrom(actions.deployment.status)
    actions = reconcile(d, [squatter], [], now=START)
    assert [rs.metadata.name for rs in actions.create] == [f"web-{template_hash(d.spec.template, 1)}"]


def test_an_orphan_replica_set_with_the_template_is_adopted_and_reused() -> None:
    sim = stable(replicas=2)
    rs = next(iter(sim.replica_sets.values()))
    del rs.metadata.owner_references[:]
    actions = sim.round()
    assert not actions.create
    assert [r.metadata.name for r in actions.update] == [rs.metadata.name]
    ref = rs.metadata.owner_references[0]
    assert (ref.kind, ref.uid, ref.controller) == ("Deployment", sim.deployment.metadata.uid, True)


def test_first_rollout_completes_with_status() -> None:
    sim = stable(replicas=3)
    status = sim.deployment.status
    assert (
        status.replicas,
        status.updated_replicas,
        status.ready_replicas,
        status.available_replicas,
        status.unavailable_replicas,
        status.observed_generation,
    ) == (3, 3, 3, 3, 0, 1)
    available = cond.get_condition(status, deployments.AVAILABLE)
    assert available is not None and (available.status, available.reason) == ("True", deployments.MIN_AVAILABLE)
    done = progressing(sim.deployment)
    assert (done.status, done.reason) == ("True", deployments.NEW_RS_AVAILABLE)


# -- rolling updates ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "max_total", "min_available"),
    [
        pytest.param(3, 3, 0, 6, 3, id="appendix-surge-3-unavailable-0-on-3"),
        pytest.param(10, "25%", "25%", 13, 8, id="defaults-on-10"),
        pytest.param(3, "25%", "25%", 4, 3, id="defaults-on-3"),
        pytest.param(1, "25%", "25%", 2, 1, id="defaults-on-1"),
        pytest.param(4, 0, 1, 4, 3, id="no-surge"),
    ],
)
def test_rolling_update_keeps_the_bounds_at_every_step(
    replicas: int,
    surge: int | str,
    unavailable: int | str,
    max_total: int,
    min_available: int,
) -> None:
    sim = stable(replicas=replicas, max_surge=surge, max_unavailable=unavailable)
    sim.set_image("httpd:2")
    seen = roll_out(sim)
    assert max(total for total, _, _ in seen) <= max_total
    assert min(available for _, available, _ in seen) >= min_available
    assert max(total for total, _, _ in seen) == max_total or surge == 0
    old = sim.rs_with_image("httpd:1")
    assert old.spec.replicas == 0 and not sim.pods_of(old.metadata.name)
    assert sim.deployment.metadata.annotations[REVISION] == "2"


def test_appendix_rollout_goes_surge_then_drain() -> None:
    sim = stable(replicas=3, max_surge=3, max_unavailable=0)
    sim.set_image("httpd:2")
    sim.round()
    new = sim.rs_with_image("httpd:2").metadata.name
    old = sim.rs_with_image("httpd:1").metadata.name
    assert sim.sizes() == {old: 3, new: 3} and sim.bounds().total == 6
    sim.round()  # new pods not ready yet: nothing may go
    assert sim.sizes() == {old: 3, new: 3}
    sim.mark_ready(p.metadata.name for p in sim.pods_of(new)[:2])
    sim.round()
    assert sim.sizes() == {old: 1, new: 3} and sim.bounds().available == 3
    sim.mark_ready()
    sim.round()
    assert sim.sizes() == {old: 0, new: 3}


def test_min_ready_seconds_delays_scale_down_and_requeues() -> None:
    sim = stable(replicas=2, max_surge=1, max_unavailable=0, min_ready_seconds=30)
    sim.set_image("httpd:2")
    sim.round()
    sim.mark_ready()
    actions = sim.round()
    assert not actions.scale_down
    assert actions.requeue_after == pytest.approx(30, abs=0.1)
    sim.advance(30)
    actions = sim.round()
    assert [rs.spec.replicas for rs in actions.scale_down] == [1]


def test_scale_down_of_unhealthy_old_pods_first() -> None:
    sim = stable(replicas=4, max_surge=0, max_unavailable=1)
    old = sim.rs_with_image("httpd:1").metadata.name
    sim.mark_not_ready(sim.pods_of(old)[0].metadata.name)
    sim.set_image("httpd:2")
    actions = sim.round()
    # max_scaled_down = 4 - 3 - 0 = 1: the unhealthy pod goes, available stays 3.
    assert [rs.spec.replicas for rs in actions.scale_down] == [3]
    assert sim.bounds().available == 3


def test_a_pending_scale_down_still_counts_towards_the_surge() -> None:
    sim = stable(replicas=3, max_surge=1, max_unavailable=1)
    old = sim.rs_with_image("httpd:1").metadata.name
    sim.set_image("httpd:2")
    sim.sync_deployment()
    new = sim.rs_with_image("httpd:2").metadata.name
    assert sim.sizes() == {old: 2, new: 1}
    sim.sync_replica_set(new)  # the old ReplicaSet's controller lags: 3 old pods still run
    sim.mark_ready()
    sim.sync_deployment()
    assert sim.sizes()[new] == 1  # 3 old + 1 new = replicas + maxSurge already
    sim.sync_replica_sets()
    assert sim.bounds().total <= 4


def test_available_pods_a_pending_scale_down_removes_do_not_count() -> None:
    sim = stable(replicas=4, max_surge=1, max_unavailable=1)
    old = sim.rs_with_image("httpd:1").metadata.name
    sim.set_image("httpd:2")
    sim.sync_deployment()
    new = sim.rs_with_image("httpd:2").metadata.name
    assert sim.sizes() == {old: 3, new: 1}
    sim.sync_replica_set(new)  # the old ReplicaSet's controller lags: 4 available old pods
    sim.mark_ready()
    sim.sync_deployment()
    assert sim.sizes()[old] == 2  # one of the 4 available old pods is already doomed
    sim.sync_replica_sets()
    assert sim.bounds().available >= 3


# -- Recreate ----------------------------------------------------------------------


def test_recreate_scales_old_to_zero_and_waits_for_its_pods() -> None:
    sim = stable(replicas=3, recreate=True)
    old = sim.rs_with_image("httpd:1").metadata.name
    sim.set_image("httpd:2")
    actions = sim.sync_deployment()
    assert [rs.spec.replicas for rs in actions.scale_down] == [0]
    assert not actions.create
    actions = sim.sync_deployment()  # the old pods still exist
    assert not actions.create and not actions.update
    sim.sync_replica_set(old)
    assert not sim.pods_of(old)
    assert not sim.sync_deployment().create  # its status does not show it yet
    sim.sync_replica_set(old)
    actions = sim.sync_deployment()
    assert len(actions.create) == 1 and actions.create[0].spec.replicas == 3
    sim.settle()
    assert sim.complete()


# -- paused ------------------------------------------------------------------------


def test_paused_makes_no_rollout_progress_but_scales() -> None:
    sim = stable(replicas=3)
    sim.pause()
    sim.set_image("httpd:2")
    sim.settle()
    assert len(sim.replica_sets) == 1
    assert (progressing(sim.deployment).status, progressing(sim.deployment).reason) == ("Unknown", deployments.PAUSED)
    sim.scale(5)
    sim.settle()
    assert list(sim.sizes().values()) == [5]
    sim.advance(3600)
    sim.round()
    assert progressing(sim.deployment).reason == deployments.PAUSED  # no deadline while paused
    sim.pause(False)
    sim.round()
    assert len(sim.replica_sets) == 2
    assert progressing(sim.deployment).reason == deployments.NEW_RS_CREATED
    roll_out(sim)
    assert sim.complete()


# -- proportional scaling ----------------------------------------------------------


def test_scaling_mid_rollout_is_proportional() -> None:
    # Kubernetes' documented example: 10 replicas, maxSurge 3, maxUnavailable 2,
    # a rollout stuck at old 8 / new 5, then scaled to 15: +3 old, +2 new.
    sim = stable(replicas=10, max_surge=3, max_unavailable=2)
    sim.set_image("httpd:2")
    sim.round()
    sim.round()
    old, new = sim.rs_with_image("httpd:1").metadata.name, sim.rs_with_image("httpd:2").metadata.name
    assert sim.sizes() == {old: 8, new: 5}
    sim.scale(15)
    actions = sim.round()
    assert sim.sizes() == {old: 11, new: 7}
    assert sorted(e.message for e in actions.events) == [
        f"Scaled up replica set {old} from 8 to 11",
        f"Scaled up replica set {new} from 5 to 7",
    ]
    for rs in sim.replica_sets.values():
        assert (rs.metadata.annotations[DESIRED_REPLICAS], rs.metadata.annotations[MAX_REPLICAS]) == ("15", "18")
    assert sim.bounds().total <= 18
    sim.scale(5)
    sim.round()
    assert sum(sim.sizes().values()) <= 5 + 3
    roll_out(sim)
    assert sim.complete()


def test_scaling_down_mid_rollout_keeps_the_available_pods() -> None:
    # Proportional shares alone would give old 2 / new 2 (2 available, bound 3):
    # the cut moves to the new set's unavailable pods instead.
    sim = stable(replicas=10, max_surge="25%", max_unavailable="25%")
    sim.set_image("httpd:2")
    sim.round()
    sim.round()
    old, new = sim.rs_with_image("httpd:1").metadata.name, sim.rs_with_image("httpd:2").metadata.name
    assert sim.sizes() == {old: 8, new: 5}
    sim.scale(3)
    sim.round()
    assert sim.sizes() == {old: 3, new: 1}
    assert sim.bounds().available == 3
    roll_out(sim)
    assert sim.complete()


# -- revision history --------------------------------------------------------------


def test_revision_history_keeps_the_newest_old_replica_sets() -> None:
    sim = stable(replicas=2, revision_history_limit=2)
    for version in range(2, 6):
        sim.set_image(f"httpd:{version}")
        roll_out(sim)
    images = sorted(rs.spec.template.spec.containers[0].image for rs in sim.replica_sets.values())
    assert images == ["httpd:3", "httpd:4", "httpd:5"]
    revisions = sorted(int(rs.metadata.annotations[REVISION]) for rs in sim.replica_sets.values())
    assert revisions == [3, 4, 5]


def test_revision_history_limit_zero_keeps_no_old_replica_set() -> None:
    sim = stable(replicas=1, revision_history_limit=0)
    sim.set_image("httpd:2")
    roll_out(sim)
    assert [rs.spec.template.spec.containers[0].image for rs in sim.replica_sets.values()] == ["httpd:2"]


# -- rollback by template reuse ----------------------------------------------------


def test_rollback_reuses_the_old_replica_set_and_bumps_its_revision() -> None:
    sim = stable(replicas=3)
    v1 = sim.rs_with_image("httpd:1")
    sim.set_image("httpd:2")
    roll_out(sim)
    sim.set_template(without_hash(v1.spec.template))
    actions = sim.round()
    assert not actions.create
    assert len(sim.replica_sets) == 2
    reused = sim.rs_with_image("httpd:1")
    assert reused.metadata.uid == v1.metadata.uid
    assert reused.metadata.annotations[REVISION] == "3"
    assert reused.metadata.annotations[REVISION_HISTORY] == "1"
    assert sim.deployment.metadata.annotations[REVISION] == "3"
    assert progressing(sim.deployment).reason == deployments.FOUND_NEW_RS
    roll_out(sim)
    assert sim.complete() and sim.rs_with_image("httpd:2").spec.replicas == 0


# -- progress deadline and automatic rollback --------------------------------------


def _stuck(*, rollback: bool) -> Sim:
    annotations = {ROLLBACK_ON_FAILURE: "true"} if rollback else {}
    sim = stable(replicas=3, progress_deadline_seconds=60, annotations=annotations)
    sim.set_image("httpd:broken")
    sim.round()
    sim.round()  # the new pods exist (progress) but never become ready
    return sim


def test_progress_deadline_exceeded_sets_the_condition() -> None:
    sim = _stuck(rollback=False)
    actions = sim.round()
    assert progressing(sim.deployment).reason == deployments.RS_UPDATED
    assert actions.requeue_after == pytest.approx(61, abs=0.1)
    sim.advance(59)
    sim.round()
    assert progressing(sim.deployment).status == "True"
    sim.advance(2)
    actions = sim.round()
    condition = progressing(sim.deployment)
    assert (condition.status, condition.reason) == ("False", deployments.TIMED_OUT)
    assert actions.rollback is None
    sim.settle(ready=False)
    assert sim.deployment.spec.template.spec.containers[0].image == "httpd:broken"


def test_progress_resets_the_deadline() -> None:
    sim = _stuck(rollback=False)
    sim.advance(50)
    new = sim.rs_with_image("httpd:broken").metadata.name
    sim.mark_ready([sim.pods_of(new)[0].metadata.name])
    sim.round()
    condition = progressing(sim.deployment)
    assert condition.reason == deployments.RS_UPDATED
    assert condition.last_update_time.ToDatetime().replace(tzinfo=sim.now.tzinfo) == sim.now
    sim.advance(50)
    sim.round()
    assert progressing(sim.deployment).reason == deployments.RS_UPDATED


def test_deadline_exceeded_with_annotation_rolls_back() -> None:
    sim = _stuck(rollback=True)
    v1 = sim.rs_with_image("httpd:1")
    sim.advance(61)
    sim.round()
    assert progressing(sim.deployment).reason == deployments.TIMED_OUT
    actions = sim.sync_deployment()
    assert actions.rollback == without_hash(v1.spec.template)
    assert [(e.type, e.reason) for e in actions.events] == [("Warning", "RolledBack")]
    assert "from revision 2 to revision 1" in actions.events[0].message
    assert sim.deployment.metadata.annotations[ROLLED_BACK_TO] == v1.spec.template.metadata.labels[POD_TEMPLATE_HASH]
    assert sim.deployment.spec.template.spec.containers[0].image == "httpd:1"
    sim.round()
    assert sim.rs_with_image("httpd:1").metadata.annotations[REVISION] == "3"
    condition = progressing(sim.deployment)  # a new rollout: the deadline starts again
    assert (condition.status, condition.reason) == ("True", deployments.RS_UPDATED)
    sim.settle()
    assert sim.complete()
    assert sim.rs_with_image("httpd:broken").spec.replicas == 0


def test_an_automatic_rollback_is_not_rolled_back_again() -> None:
    sim = _stuck(rollback=True)
    sim.advance(61)
    sim.round()
    sim.round()  # rolled back to httpd:1
    for pod in sim.running_pods():
        sim.mark_not_ready(pod.metadata.name)  # and now nothing is ready at all
    sim.round()
    sim.advance(120)
    sim.round()
    assert progressing(sim.deployment).reason == deployments.TIMED_OUT
    actions = sim.round()
    assert actions.rollback is None
    assert sim.deployment.spec.template.spec.containers[0].image == "httpd:1"


# -- properties --------------------------------------------------------------------

_rounds = st.tuples(st.just("round"), st.lists(st.integers(0, 5), max_size=4))
operations = st.lists(
    st.one_of(
        _rounds,
        _rounds,
        _rounds,
        st.tuples(st.just("scale"), st.integers(0, 8)),
        st.tuples(st.just("image"), st.sampled_from(["httpd:1", "httpd:2", "httpd:3"])),
        st.tuples(st.just("ready"), st.integers(0, 50)),
        st.tuples(st.just("ready"), st.integers(0, 50)),
        st.tuples(st.just("unready"), st.integers(0, 50)),
        st.tuples(st.just("fail"), st.integers(0, 50)),
        st.tuples(st.just("tick"), st.integers(1, 20)),
        st.tuples(st.just("pause"), st.booleans()),
    ),
    min_size=15,
    max_size=60,
)


def _external(sim: Sim, op: str, arg: int | str) -> None:
    running = sorted(sim.running_pods(), key=lambda p: p.metadata.name)
    if op == "scale":
        sim.scale(int(arg))
    elif op == "pause":
        sim.pause(bool(arg))
    elif op == "image":
        sim.set_image(str(arg))
    elif op == "tick":
        sim.advance(int(arg))
    elif running and op in ("ready", "unready", "fail"):
        name = running[int(arg) % len(running)].metadata.name
        if op == "ready":
            sim.mark_ready([name])
        elif op == "unready":
            sim.mark_not_ready(name)
        else:
            sim.mark_failed(name)


def _round_keeps_bounds(sim: Sim, replica_sets: list[int]) -> None:
    """One Deployment sync, then some ReplicaSets' syncs (a lagging ReplicaSet
    controller leaves others behind); the bounds hold after each step."""
    committed_size, committed_available = sim.committed()
    sim.sync_deployment()
    names = sorted(sim.replica_sets)
    chosen = [names[i % len(names)] for i in replica_sets] if names else []
    for name in chosen:
        sim.sync_replica_set(name)
        b = sim.bounds()
        assert b.total <= max(b.max_total, committed_size), (b, committed_size)
        assert b.available >= min(b.min_available, committed_available), (b, committed_available)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replicas=st.integers(1, 6),
    surge=st.sampled_from([0, 1, 3, "25%", "50%"]),
    unavailable=st.sampled_from([0, 1, "25%", "50%"]),
    min_ready=st.sampled_from([0, 10]),
    ops=operations,
)
def test_rollouts_keep_surge_and_availability_bounds(
    replicas: int,
    surge: int | str,
    unavailable: int | str,
    min_ready: int,
    ops: list[tuple[str, object]],
) -> None:
    sim = stable(replicas=replicas, max_surge=surge, max_unavailable=unavailable, min_ready_seconds=min_ready)
    sim.advance(min_ready)
    for op, arg in ops:
        if op == "round":
            assert isinstance(arg, list)
            _round_keeps_bounds(sim, arg)
        else:
            assert isinstance(arg, int | str)
            _external(sim, op, arg)
    # And it converges once the pods come up.
    sim.pause(False)
    for _ in range(60):
        sim.round()
        sim.mark_ready()
        sim.advance(min_ready)
        if sim.complete():
            break
    assert sim.complete(), sim.sizes()


@settings(max_examples=100, deadline=None)
@given(
    replicas=st.integers(1, 8), steps=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 6)), min_size=1, max_size=30)
)
def test_recreate_never_runs_old_and_new_together(replicas: int, steps: list[tuple[int, int]]) -> None:
    sim = stable(replicas=replicas, recreate=True)
    sim.set_image("httpd:2")
    for step, value in steps:
        if step == 0:
            sim.sync_deployment()
        elif step == 1:
            sim.sync_replica_set(sorted(sim.replica_sets)[value % len(sim.replica_sets)])
        elif step == 2:
            sim.mark_ready()
        elif step == 3:
            sim.scale(value)
        else:
            sim.advance(value)
        images = {p.spec.containers[0].image for p in sim.running_pods()}
        assert len(images) <= 1
    for _ in range(20):
        sim.round()
        sim.mark_ready()
    assert sim.complete()
