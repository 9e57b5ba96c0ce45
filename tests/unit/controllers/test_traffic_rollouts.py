"""BlueGreen and Canary rollouts on the `sim` model: switches, steps, pauses,
promotion, abort, undo, and Hypothesis properties of the traffic weights."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.controllers.deployment import conditions as cond
from controlplane.controllers.deployment.reconcile import reconcile
from controlplane.controllers.deployment.steps import canary_size
from protos import deployments, times
from protos import pods as podutil
from protos.corral.v1 import meta_pb2, workloads_pb2
from protos.wellknown import ABORT, POD_TEMPLATE_HASH, PROMOTE, SCALE_DOWN_AT
from tests.unit.controllers.sim import START, Sim, make_deployment
from tests.unit.controllers.traffic_sim import (
    abort,
    blue_green,
    canary,
    crash,
    hash_of_image,
    pods_of_image,
    promote,
    settled,
    sizes_by_image,
    stable_image,
    traffic_deployment,
    undo,
    weights,
)


def progressing(sim: Sim) -> meta_pb2.Condition:
    condition = cond.get_condition(sim.deployment.status, deployments.PROGRESSING)
    assert condition is not None
    return condition


def reasons(sim: Sim) -> list[str]:
    return [e.reason for e in sim.events]


def round_and_ready(sim: Sim, rounds: int = 1) -> None:
    for _ in range(rounds):
        sim.round()
        sim.mark_ready()


# -- BlueGreen ------------------------------------------------------------------------


def test_blue_green_first_rollout_is_stable_at_once() -> None:
    sim = Sim(traffic_deployment(blue_green()))
    sim.round()
    assert weights(sim) == {"httpd:1": 100}
    assert stable_image(sim) == "httpd:1"
    assert not sim.deployment.status.HasField("canary")
    sim.settle()
    assert progressing(sim).reason == deployments.NEW_RS_AVAILABLE


def test_blue_green_switches_in_one_write_once_the_preview_is_available() -> None:
    sim = settled(blue_green())
    sim.set_image("httpd:2")
    sim.round()
    assert sizes_by_image(sim) == {"httpd:1": 3, "httpd:2": 3}
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    ready = sim.mark_ready(pods_of_image(sim, "httpd:2")[:2])
    sim.round()
    assert len(ready) == 2 and weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    sim.mark_ready()
    actions = sim.round()
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}
    assert stable_image(sim) == "httpd:2"
    assert [e.reason for e in actions.events] == ["TrafficSwitched"]
    assert "3/3 pods available (auto-promotion)" in actions.events[0].message
    assert progressing(sim).reason == deployments.NEW_RS_AVAILABLE
    assert sizes_by_image(sim) == {"httpd:1": 3, "httpd:2": 3}  # the old version keeps running


def test_blue_green_scales_the_old_version_down_after_the_delay() -> None:
    sim = settled(blue_green(scaleDownDelaySeconds=30))
    sim.set_image("httpd:2")
    round_and_ready(sim, 2)
    assert stable_image(sim) == "httpd:2"
    actions = sim.round()
    old = sim.rs_with_image("httpd:1")
    assert old.metadata.annotations[SCALE_DOWN_AT] == "2026-03-01T12:00:30Z"
    assert actions.requeue_after == 31
    assert "ScaleDownDelayed" in [e.reason for e in actions.events]
    sim.advance(29)
    sim.round()
    assert sim.rs_with_image("httpd:1").spec.replicas == 3
    sim.advance(1)
    sim.round()
    old = sim.rs_with_image("httpd:1")
    assert old.spec.replicas == 0 and SCALE_DOWN_AT not in old.metadata.annotations
    sim.settle()
    assert weights(sim) == {"httpd:2": 100}
    assert sim.complete()


def test_blue_green_undo_within_the_delay_switches_back_at_once() -> None:
    sim = settled(blue_green())
    sim.set_image("httpd:2")
    round_and_ready(sim, 3)
    assert SCALE_DOWN_AT in sim.rs_with_image("httpd:1").metadata.annotations
    undo(sim)
    actions = sim.round()
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    assert stable_image(sim) == "httpd:1"
    assert [e.reason for e in actions.events] == ["TrafficSwitched"]
    assert SCALE_DOWN_AT not in sim.rs_with_image("httpd:1").metadata.annotations
    assert not actions.create  # the old ReplicaSet, still running, is reused
    sim.round()
    assert SCALE_DOWN_AT in sim.rs_with_image("httpd:2").metadata.annotations


def test_blue_green_honours_min_ready_seconds() -> None:
    sim = settled(blue_green(), min_ready_seconds=10)
    sim.advance(10)
    sim.settle()
    sim.set_image("httpd:2")
    round_and_ready(sim)
    actions = sim.round()
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    assert actions.requeue_after is not None and actions.requeue_after <= 11
    sim.advance(10)
    sim.round()
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}


def test_blue_green_without_auto_promotion_waits_for_the_preview_hash() -> None:
    sim = settled(blue_green(autoPromotionEnabled=False))
    sim.set_image("httpd:2")
    round_and_ready(sim, 3)
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    condition = progressing(sim)
    assert (condition.status, condition.reason) == ("Unknown", deployments.ROLLOUT_PAUSED)
    assert "waiting for `corral rollout promote deployment/web`" in condition.message
    assert reasons(sim).count("WaitingForPromotion") == 1
    promote(sim, "0123456789")
    sim.round()
    assert PROMOTE not in sim.deployment.metadata.annotations
    assert reasons(sim)[-1] == "PromotionIgnored"
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    promote(sim, hash_of_image(sim, "httpd:2"))
    actions = sim.round()
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}
    assert PROMOTE not in sim.deployment.metadata.annotations
    assert actions.deployment is not None  # the annotation goes in the same write as the switch
    assert "promoted with `corral rollout promote`" in actions.events[-1].message


def test_a_promotion_before_the_preview_is_available_is_kept_until_it_is() -> None:
    sim = settled(blue_green(autoPromotionEnabled=False))
    sim.set_image("httpd:2")
    sim.round()
    promote(sim, hash_of_image(sim, "httpd:2"))
    sim.round()
    assert PROMOTE in sim.deployment.metadata.annotations
    sim.mark_ready()
    sim.round()
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}
    assert PROMOTE not in sim.deployment.metadata.annotations


def test_blue_green_scaling_applies_to_active_and_preview() -> None:
    sim = settled(blue_green(autoPromotionEnabled=False))
    sim.set_image("httpd:2")
    round_and_ready(sim, 2)
    sim.scale(5)
    sim.round()
    assert sizes_by_image(sim) == {"httpd:1": 5, "httpd:2": 5}
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}  # 3/5 available: no longer ready to promote
    assert progressing(sim).reason != deployments.ROLLOUT_PAUSED


def test_a_paused_blue_green_deployment_does_not_switch() -> None:
    sim = settled(blue_green())
    sim.set_image("httpd:2")
    sim.round()
    sim.pause()
    sim.mark_ready()
    round_and_ready(sim, 3)
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    assert progressing(sim).reason == deployments.PAUSED
    sim.pause(False)
    sim.round()
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}


def test_a_crash_looping_preview_never_gets_traffic_and_times_out() -> None:
    sim = settled(blue_green(), progress_deadline_seconds=60)
    sim.set_image("httpd:2")
    sim.round()
    sim.sync_replica_sets()
    for name in pods_of_image(sim, "httpd:2"):
        crash(sim, name)
    for _ in range(4):
        sim.advance(30)
        sim.round()
        assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    condition = progressing(sim)
    assert (condition.status, condition.reason) == ("False", deployments.TIMED_OUT)


def test_blue_green_refuses_an_abort() -> None:
    sim = settled(blue_green())
    sim.deployment.metadata.annotations[ABORT] = "whatever"
    sim.round()
    assert ABORT not in sim.deployment.metadata.annotations
    assert sim.events[-1].type == "Warning" and "rollout undo" in sim.events[-1].message


# -- Canary ---------------------------------------------------------------------------


def test_canary_walks_its_steps_and_is_promoted() -> None:
    sim = settled(canary())
    v1 = hash_of_image(sim, "httpd:1")
    sim.set_image("httpd:2")
    sim.round()
    v2 = hash_of_image(sim, "httpd:2")
    status = sim.deployment.status
    assert (status.canary.pod_template_hash, status.canary.current_step_index) == (v2, 0)
    assert status.stable_pod_template_hash == v1
    assert sizes_by_image(sim) == {"httpd:1": 3, "httpd:2": 1}
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    sim.mark_ready()
    actions = sim.round()
    assert weights(sim) == {"httpd:1": 90, "httpd:2": 10}
    assert sim.deployment.status.canary.current_step_index == 1
    assert times.as_datetime(sim.deployment.status.canary.pause_start_time) == START
    assert actions.requeue_after == 61
    assert progressing(sim).reason == deployments.ROLLOUT_PAUSED
    sim.advance(60)
    round_and_ready(sim)
    assert sizes_by_image(sim) == {"httpd:1": 3, "httpd:2": 2}
    sim.round()
    assert weights(sim) == {"httpd:1": 50, "httpd:2": 50}
    assert sim.deployment.status.canary.current_step_index == 3
    assert progressing(sim).message == "canary paused at step 4/4 until promoted"
    round_and_ready(sim, 3)
    assert weights(sim) == {"httpd:1": 50, "httpd:2": 50}
    promote(sim, "3")
    round_and_ready(sim)
    assert sizes_by_image(sim) == {"httpd:1": 3, "httpd:2": 3}
    assert PROMOTE not in sim.deployment.metadata.annotations
    actions = sim.round()
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}
    assert stable_image(sim) == "httpd:2"
    assert not sim.deployment.status.HasField("canary")
    assert "CanaryPromoted" in [e.reason for e in actions.events]
    assert sizes_by_image(sim)["httpd:1"] == 3  # scaled down only once the switch is written
    sim.round()
    assert sizes_by_image(sim)["httpd:1"] == 0
    sim.settle()
    assert sim.complete() and weights(sim) == {"httpd:2": 100}
    assert progressing(sim).reason == deployments.NEW_RS_AVAILABLE
    assert reasons(sim).count("TrafficWeightSet") == 2


def test_full_promotion_skips_the_remaining_steps() -> None:
    sim = settled(canary())
    sim.set_image("httpd:2")
    round_and_ready(sim, 2)
    promote(sim, "full")
    round_and_ready(sim, 2)
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}
    assert "Full promotion requested at step 2/4" in " ".join(e.message for e in sim.events)


def test_a_canary_without_steps_is_promoted_once_fully_available() -> None:
    sim = settled(canary(steps=[]))
    sim.set_image("httpd:2")
    sim.round()
    assert sizes_by_image(sim) == {"httpd:1": 3, "httpd:2": 3}
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    sim.mark_ready()
    sim.round()
    assert weights(sim) == {"httpd:2": 100, "httpd:1": 0}


def _at_pause(**settings: Any) -> Sim:
    sim = settled(canary(**settings))
    sim.set_image("httpd:2")
    round_and_ready(sim, 2)
    assert weights(sim) == {"httpd:1": 90, "httpd:2": 10}
    return sim


def test_abort_sends_all_traffic_back_and_rolls_the_template_back() -> None:
    sim = _at_pause()
    v1 = sim.rs_with_image("httpd:1")
    abort(sim)
    actions = sim.round()
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    assert actions.rollback is not None
    assert actions.rollback.spec.containers[0].image == "httpd:1"
    assert sim.deployment.spec.template.spec.containers[0].image == "httpd:1"
    assert sim.deployment.status.canary.aborted == "abort requested with `corral rollout abort`"
    event = actions.events[-1]
    assert (event.type, event.reason) == ("Warning", "RolloutAborted")
    assert f"all traffic is back on {v1.metadata.name}" in event.message
    assert (progressing(sim).status, progressing(sim).reason) == ("False", deployments.ROLLOUT_ABORTED)
    assert ABORT not in sim.deployment.metadata.annotations
    sim.round()
    assert sizes_by_image(sim) == {"httpd:1": 3, "httpd:2": 0}
    sim.settle()
    assert weights(sim) == {"httpd:1": 100}
    assert sim.deployment.status.canary.aborted  # the record stays until the next rollout
    assert progressing(sim).reason == deployments.ROLLOUT_ABORTED


def test_a_rollback_lost_after_the_abort_is_written_again() -> None:
    sim = _at_pause()
    abort(sim)
    first = reconcile(sim.deployment, list(sim.replica_sets.values()), list(sim.pods.values()), now=sim.now)
    assert first.deployment is not None and first.rollback is not None
    # Only the status write lands; the template write is lost.
    sim.deployment.metadata.annotations.clear()
    sim.deployment.metadata.annotations.update(first.deployment.metadata.annotations)
    sim.deployment.status.CopyFrom(first.deployment.status)
    again = reconcile(sim.deployment, list(sim.replica_sets.values()), list(sim.pods.values()), now=sim.now)
    assert again.rollback == first.rollback
    assert not [e for e in again.events if e.reason == "CanaryStarted"]


def test_reapplying_the_aborted_template_starts_a_new_canary() -> None:
    sim = _at_pause()
    abort(sim)
    sim.settle()
    sim.set_image("httpd:2")
    sim.round()
    status = sim.deployment.status.canary
    assert status.pod_template_hash == hash_of_image(sim, "httpd:2") and not status.aborted
    assert status.current_step_index == 0
    assert reasons(sim)[-2:] == ["CanaryStarted", "ScalingReplicaSet"]


def test_a_crash_looping_canary_is_aborted_by_itself() -> None:
    sim = _at_pause()
    crash(sim, pods_of_image(sim, "httpd:2")[0])
    actions = sim.round()
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    aborted = sim.deployment.status.canary.aborted
    assert aborted.startswith("canary pod web-") and "crash-looping" in aborted
    assert actions.events[-1].reason == "RolloutAborted" and aborted in actions.events[-1].message
    assert sim.deployment.spec.template.spec.containers[0].image == "httpd:1"


def test_a_canary_that_loses_readiness_is_aborted() -> None:
    sim = _at_pause()
    sim.advance(5)
    sim.mark_not_ready(pods_of_image(sim, "httpd:2")[0])
    sim.round()
    assert "failed readiness after being ready" in sim.deployment.status.canary.aborted


def test_abort_on_failure_can_be_turned_off() -> None:
    sim = _at_pause(abortOnFailure=False)
    crash(sim, pods_of_image(sim, "httpd:2")[0])
    sim.round()
    assert not sim.deployment.status.canary.aborted
    assert weights(sim) == {"httpd:1": 90, "httpd:2": 10}


def test_a_newer_template_mid_canary_becomes_the_canary() -> None:
    sim = _at_pause()
    sim.set_image("httpd:3")
    actions = sim.round()
    assert weights(sim) == {"httpd:1": 100, "httpd:3": 0, "httpd:2": 0}
    assert sim.deployment.status.canary.pod_template_hash == hash_of_image(sim, "httpd:3")
    assert sim.deployment.status.canary.current_step_index == 0
    assert "replacing canary" in next(e.message for e in actions.events if e.reason == "CanaryStarted")
    assert sizes_by_image(sim)["httpd:2"] == 1  # still had weight as written: not yet
    sim.round()
    assert sizes_by_image(sim)["httpd:2"] == 0
    sim.mark_ready()
    sim.round()
    assert weights(sim) == {"httpd:1": 90, "httpd:3": 10}


def test_undo_mid_canary_stops_it() -> None:
    sim = _at_pause()
    undo(sim)
    actions = sim.round()
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    assert not sim.deployment.status.HasField("canary")
    assert "CanaryStopped" in [e.reason for e in actions.events]


def test_a_rolling_update_deployment_switched_to_canary_keeps_serving_from_its_replica_set() -> None:
    sim = Sim(make_deployment(replicas=3))
    sim.settle()
    assert not sim.deployment.status.traffic
    changed = traffic_deployment(canary())
    sim.deployment.spec.strategy.CopyFrom(changed.spec.strategy)
    sim.set_image("httpd:2")
    actions = sim.round()
    assert not actions.scale_down
    assert weights(sim) == {"httpd:1": 100, "httpd:2": 0}
    assert stable_image(sim) == "httpd:1"


def test_rolling_update_leaves_the_traffic_fields_unset() -> None:
    sim = Sim(make_deployment(replicas=2))
    sim.settle()
    sim.set_image("httpd:2")
    sim.settle()
    status = sim.deployment.status
    assert not status.traffic and not status.stable_pod_template_hash and not status.HasField("canary")


def test_a_promote_without_a_canary_is_refused() -> None:
    sim = settled(canary())
    promote(sim, "1")
    sim.round()
    assert PROMOTE not in sim.deployment.metadata.annotations
    assert sim.events[-1].reason == "PromotionIgnored"


# -- properties --------------------------------------------------------------------

STRATEGIES = {
    "canary": canary(),
    "canary-no-steps": canary(steps=[]),
    "canary-fixed": canary(steps=[{"setWeight": 30}, {"pause": {"duration": 20}}, {"setWeight": 80}], canaryReplicas=2),
    "blue-green": blue_green(),
    "blue-green-manual": blue_green(autoPromotionEnabled=False, scaleDownDelaySeconds=10),
}

operations = st.lists(
    st.one_of(
        st.tuples(st.just("round"), st.integers(0, 3)),
        st.tuples(st.just("round"), st.integers(0, 3)),
        st.tuples(st.just("round"), st.integers(0, 3)),
        st.tuples(st.just("ready"), st.integers(0, 50)),
        st.tuples(st.just("ready-all"), st.just(0)),
        st.tuples(st.just("ready-all"), st.just(0)),
        st.tuples(st.just("unready"), st.integers(0, 50)),
        st.tuples(st.just("crash"), st.integers(0, 50)),
        st.tuples(st.just("image"), st.integers(1, 4)),
        st.tuples(st.just("scale"), st.integers(0, 6)),
        st.tuples(st.just("tick"), st.integers(1, 40)),
        st.tuples(st.just("promote"), st.integers(0, 4)),
        st.tuples(st.just("promote-full"), st.just(0)),
        st.tuples(st.just("abort"), st.just(0)),
        st.tuples(st.just("undo"), st.just(0)),
        st.tuples(st.just("pause"), st.integers(0, 1)),
    ),
    min_size=10,
    max_size=50,
)


def _external(sim: Sim, op: str, arg: int) -> None:
    running = sorted(sim.running_pods(), key=lambda p: p.metadata.name)
    if op == "image":
        sim.set_image(f"httpd:{arg}")
    elif op == "scale":
        sim.scale(arg)
    elif op == "tick":
        sim.advance(arg)
    elif op == "ready-all":
        sim.mark_ready()
    elif op == "promote":
        promote(sim, str(arg) if arg < 4 else sim.deployment.status.stable_pod_template_hash)
        if arg == 3 and len(sim.replica_sets) > 1:
            newest = max(sim.replica_sets.values(), key=lambda rs: rs.metadata.creation_timestamp.ToDatetime())
            promote(sim, newest.spec.template.metadata.labels[POD_TEMPLATE_HASH])
    elif op == "promote-full":
        promote(sim, "full")
    elif op == "abort":
        abort(sim)
    elif op == "undo":
        undo(sim)
    elif op == "pause":
        sim.pause(bool(arg))
    elif running and op in ("ready", "unready", "crash"):
        name = running[arg % len(running)].metadata.name
        if op == "ready":
            sim.mark_ready([name])
        elif op == "unready":
            sim.mark_not_ready(name)
        else:
            crash(sim, name)


def _available_by_hash(sim: Sim) -> dict[str, int]:
    min_ready = sim.deployment.spec.min_ready_seconds
    counts: dict[str, int] = {}
    for name, rs in sim.replica_sets.items():
        h = rs.spec.template.metadata.labels[POD_TEMPLATE_HASH]
        counts[h] = sum(podutil.is_available(p, min_ready, sim.now) for p in sim.pods_of(name))
    return counts


def _sync_keeps_traffic_safe(sim: Sim, kind: str) -> None:
    """One Deployment sync; the traffic it writes is safe given what was before."""
    d = sim.deployment
    before = {t.pod_template_hash: t.weight for t in d.status.traffic}
    available = _available_by_hash(sim)
    replicas = d.spec.replicas
    config = d.spec.strategy.canary
    fixed = config.canary_replicas if config.HasField("canary_replicas") else None
    actions = sim.sync_deployment()
    after = [(t.pod_template_hash, t.weight) for t in sim.deployment.status.traffic]
    hashes = {rs.spec.template.metadata.labels[POD_TEMPLATE_HASH] for rs in sim.replica_sets.values()}
    assert sum(w for _, w in after) == 100, after
    assert len({h for h, _ in after}) == len(after) and {h for h, _ in after} <= hashes
    assert all(0 <= w <= 100 for _, w in after)
    if kind.startswith("blue-green"):
        assert sorted(w for _, w in after) == [0] * (len(after) - 1) + [100], after  # never mixes
    for h, w in after:
        if before and w > before.get(h, 0) and before.get(h, 0) == 0:
            # A version that had no traffic gets some only with the pods for it.
            need = replicas if kind.startswith("blue-green") or w == 100 else canary_size(w, replicas, fixed)
            assert available.get(h, 0) >= need, (h, w, available, before)
    for rs in (*actions.scale_down, *actions.update):
        if rs.spec.replicas == 0 and replicas > 0:  # (the user may scale the Deployment to 0)
            h = rs.spec.template.metadata.labels[POD_TEMPLATE_HASH]
            assert before and before.get(h, 0) == 0, ("scaled down while serving", h, before)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(STRATEGIES)),
    replicas=st.integers(1, 5),
    min_ready=st.sampled_from([0, 5]),
    ops=operations,
)
def test_traffic_is_always_whole_and_only_points_at_available_pods(
    kind: str,
    replicas: int,
    min_ready: int,
    ops: list[tuple[str, int]],
) -> None:
    sim = settled(STRATEGIES[kind], replicas=replicas, min_ready_seconds=min_ready)
    sim.advance(min_ready)
    for op, arg in ops:
        if op == "round":
            _sync_keeps_traffic_safe(sim, kind)
            names = sorted(sim.replica_sets)  # a ReplicaSet controller that may lag
            for i in range(arg if arg < 3 else len(names)):
                sim.sync_replica_set(names[i % len(names)])
        else:
            _external(sim, op, arg)
    # And it converges on the current template (after an abort: the stable one) once the pods
    # come up and it is promoted.
    sim.pause(False)
    for _ in range(40):
        if kind.startswith("canary"):  # walking the steps, promoting every pause
            promote(sim, str(sim.deployment.status.canary.current_step_index))
        elif len(sim.replica_sets) > 1:
            promote(sim, _current_hash(sim))
        _sync_keeps_traffic_safe(sim, kind)
        sim.sync_replica_sets()
        for pod in sim.running_pods():
            pod.status.ClearField("container_statuses")
        sim.mark_ready()
        sim.advance(max(min_ready, 11))
        if _converged(sim):
            break
    assert _converged(sim), (sim.sizes(), weights(sim))


def _converged(sim: Sim) -> bool:
    image = sim.deployment.spec.template.spec.containers[0].image
    return sim.complete() and weights(sim) == {image: 100}


def _current_hash(sim: Sim) -> str:
    revision = sim.deployment.metadata.annotations.get("deployment.kubernetes.io/revision")
    return next(
        (
            rs.spec.template.metadata.labels[POD_TEMPLATE_HASH]
            for rs in sim.replica_sets.values()
            if rs.metadata.annotations.get("deployment.kubernetes.io/revision") == revision
        ),
        "",
    )


@pytest.mark.parametrize("kind", ["canary", "blue-green"])
def test_the_first_write_points_at_the_only_version(kind: str) -> None:
    sim = Sim(traffic_deployment(STRATEGIES[kind]))
    sim.round()
    assert weights(sim) == {"httpd:1": 100}
    assert sim.deployment.status.stable_pod_template_hash == hash_of_image(sim, "httpd:1")


def test_pause_start_is_recorded_as_a_timestamp() -> None:
    sim = _at_pause()
    status: workloads_pb2.CanaryStatus = sim.deployment.status.canary
    assert status.HasField("pause_start_time")
    sim.advance(60)
    round_and_ready(sim)
    assert not sim.deployment.status.canary.HasField("pause_start_time")
    assert sim.now - START == timedelta(seconds=60)
