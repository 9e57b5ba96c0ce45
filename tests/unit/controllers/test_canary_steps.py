"""The canary's pure pieces: the step walk, canary sizes and the failure rules, as
named table cases (pause durations: tests/unit/protos/test_durations.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.controllers.deployment import health
from controlplane.controllers.deployment.steps import StepInput, StepOutcome, canary_size, walk
from protos import codec
from protos.corral.v1 import pod_pb2, workloads_pb2

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FOUR: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"duration": 60}}, {"setWeight": 50}, {"pause": {}}]


def parsed_steps(steps: list[dict[str, Any]]) -> list[workloads_pb2.CanaryStep]:
    strategy, errors = codec.from_dict({"steps": steps}, workloads_pb2.CanaryStrategy)
    assert not errors
    return list(strategy.steps)


def step_input(steps: list[dict[str, Any]] = FOUR, **fields: Any) -> StepInput:
    base = StepInput(
        steps=parsed_steps(steps),
        index=0,
        pause_start=None,
        weight=0,
        available=0,
        replicas=10,
        canary_replicas=None,
        promote=None,
        paused=False,
        now=NOW,
    )
    return replace(base, **fields)


def summary(out: StepOutcome) -> tuple[int, int, int, bool]:
    return out.index, out.weight, out.size, out.promoted


@pytest.mark.parametrize(
    ("inp", "expected"),
    [
        pytest.param(step_input(), (0, 0, 1, False), id="first-weight-waits-for-its-pod"),
        pytest.param(step_input(available=1), (1, 10, 1, False), id="weight-set-then-pause-starts"),
        pytest.param(
            step_input(index=1, weight=10, available=1, pause_start=NOW - timedelta(seconds=59)),
            (1, 10, 1, False),
            id="timed-pause-not-over",
        ),
        pytest.param(
            step_input(index=1, weight=10, available=1, pause_start=NOW - timedelta(seconds=60)),
            (2, 10, 5, False),
            id="timed-pause-over-next-weight-scales-up",
        ),
        pytest.param(
            step_input(index=2, weight=10, available=5), (3, 50, 5, False), id="second-weight-then-pause-until-promoted"
        ),
        pytest.param(step_input(index=3, weight=50, available=5), (3, 50, 5, False), id="waits-for-promotion"),
        pytest.param(
            step_input(index=3, weight=50, available=5, promote="3"),
            (4, 50, 10, False),
            id="promoted-pause-then-full-size",
        ),
        pytest.param(step_input(index=4, weight=50, available=9), (4, 50, 10, False), id="full-size-not-available"),
        pytest.param(step_input(index=4, weight=50, available=10), (4, 50, 10, True), id="full-size-available"),
        pytest.param(step_input(steps=[], available=0), (0, 0, 10, False), id="no-steps-is-promotion"),
        pytest.param(step_input(steps=[], replicas=3, available=3), (0, 0, 3, True), id="no-steps-promoted"),
        pytest.param(step_input(promote="full", available=2), (4, 0, 10, False), id="full-promotion-skips-steps"),
        pytest.param(step_input(canary_replicas=2, available=1), (0, 0, 2, False), id="canary-replicas-fixed"),
        pytest.param(step_input(canary_replicas=2, available=2), (1, 10, 2, False), id="canary-replicas-reached"),
        pytest.param(
            step_input(steps=[{"setWeight": 80}, {"setWeight": 20}, {"pause": {}}], index=1, weight=80, available=8),
            (2, 20, 8, False),
            id="a-lower-weight-keeps-the-pods-of-the-weight-written",
        ),
        pytest.param(step_input(available=1, paused=True), (0, 0, 1, False), id="paused-takes-no-step"),
        pytest.param(
            step_input(steps=[{"pause": {"duration": 0}}, {"setWeight": 30}], available=3),
            (2, 30, 10, False),
            id="zero-pause-passes-at-once",
        ),
    ],
)
def test_walk(inp: StepInput, expected: tuple[int, int, int, bool]) -> None:
    assert summary(walk(inp)) == expected


def test_a_timed_pause_records_its_start_and_asks_to_be_woken() -> None:
    out = walk(step_input(available=1))
    assert out.pause_start == NOW
    assert out.requeue == 60
    assert out.waiting == "canary paused at step 2/4 until 2026-03-01T12:01:00Z"
    assert [n.reason for n in out.notes] == ["TrafficWeightSet", "CanaryPaused"]
    later = walk(step_input(index=1, weight=10, available=1, pause_start=NOW - timedelta(seconds=45)))
    assert later.requeue == 15 and not later.notes


def test_a_pause_until_promoted_waits_without_a_requeue() -> None:
    out = walk(step_input(index=3, weight=50, available=5))
    assert out.waiting == "canary paused at step 4/4 until promoted"
    assert out.requeue is None
    assert out.pause_start == NOW


@pytest.mark.parametrize(
    ("inp", "consumed", "reason"),
    [
        pytest.param(step_input(index=3, weight=50, available=5, promote="3"), True, "Promoted", id="matching"),
        pytest.param(
            step_input(index=3, weight=50, available=5, promote="1"), True, "PromotionIgnored", id="stale-index"
        ),
        pytest.param(step_input(promote="0"), True, "PromotionIgnored", id="not-a-pause"),
        pytest.param(step_input(index=4, promote="4"), True, "PromotionIgnored", id="already-promoting"),
        pytest.param(step_input(index=3, weight=50, promote="3", paused=True), False, None, id="kept-while-paused"),
    ],
)
def test_promotion_requests(inp: StepInput, consumed: bool, reason: str | None) -> None:
    out = walk(inp)
    assert out.consume_promote == consumed
    assert [n.reason for n in out.notes][:1] == ([reason] if reason else [])


@pytest.mark.parametrize(
    ("weight", "replicas", "fixed", "expected"),
    [
        pytest.param(10, 10, None, 1, id="ten-percent-of-ten"),
        pytest.param(10, 3, None, 1, id="rounds-up"),
        pytest.param(50, 3, None, 2, id="half-of-three"),
        pytest.param(0, 5, None, 1, id="never-fewer-than-one"),
        pytest.param(100, 4, None, 4, id="all"),
        pytest.param(10, 0, None, 0, id="no-replicas"),
        pytest.param(10, 10, 3, 3, id="canary-replicas"),
    ],
)
def test_canary_size(weight: int, replicas: int, fixed: int | None, expected: int) -> None:
    assert canary_size(weight, replicas, fixed) == expected


def _pod(
    name: str = "web-abc12",
    *,
    phase: str = "Running",
    ready: str | None = "True",
    ready_at: int = 10,
    started_at: int = 0,
    reason: str = "",
    restarts: int = 0,
    waiting: str = "",
) -> pod_pb2.Pod:
    pod = pod_pb2.Pod()
    pod.metadata.name = name
    pod.status.phase = phase
    pod.status.start_time.FromDatetime(NOW + timedelta(seconds=started_at))
    if ready is not None:
        condition = pod.status.conditions.add(type="Ready", status=ready, reason=reason)
        condition.last_transition_time.FromDatetime(NOW + timedelta(seconds=ready_at))
    status = pod.status.container_statuses.add(name="web", restart_count=restarts)
    if waiting:
        status.state.waiting.reason = waiting
    return pod


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        pytest.param(_pod(), None, id="healthy"),
        pytest.param(_pod(ready="False", ready_at=0), None, id="never-ready-yet"),
        pytest.param(_pod(phase="Pending", ready="False"), None, id="pending"),
        pytest.param(_pod(ready=None), None, id="no-condition-yet"),
        pytest.param(
            _pod(ready="False", waiting="CrashLoopBackOff", restarts=1),
            "canary pod web-abc12 crash-looping (container web)",
            id="crash-loop",
        ),
        pytest.param(_pod(restarts=3), "canary pod web-abc12 restarted 3 times (container web)", id="restarts"),
        pytest.param(_pod(restarts=2), None, id="two-restarts-tolerated"),
        pytest.param(
            _pod(ready="False", ready_at=30),
            "canary pod web-abc12 failed readiness after being ready",
            id="lost-readiness",
        ),
        pytest.param(_pod(ready="False", ready_at=30, reason="NodeNotReady"), None, id="node-problem"),
    ],
)
def test_canary_failures(pod: pod_pb2.Pod, expected: str | None) -> None:
    assert health.failure([pod]) == expected


def test_a_pod_being_deleted_does_not_fail_the_canary() -> None:
    pod = _pod(restarts=5)
    pod.metadata.deletion_timestamp.FromDatetime(NOW)
    assert health.failure([pod]) is None


def test_a_crash_looping_init_container_fails_the_canary() -> None:
    pod = _pod(phase="Pending", ready="False", waiting="PodInitializing")
    init = pod.status.init_container_statuses.add(name="migrate", restart_count=1)
    init.state.waiting.reason = "CrashLoopBackOff"
    assert health.failure([pod]) == "canary pod web-abc12 crash-looping (container migrate)"
