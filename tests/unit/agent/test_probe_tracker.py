"""Probe thresholds and timing: agent/probes/tracker.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.probes.result import ProbeResult
from agent.probes.tracker import (
    Outcome,
    ProbeKind,
    ProbeSettings,
    ProbeState,
    ProbeTracker,
    TrackerState,
    advance,
    is_passing,
    settings_from_proto,
)
from protos.corral.v1 import pod_pb2

U, S, F = ProbeState.UNKNOWN, ProbeState.SUCCESS, ProbeState.FAILURE
OK = ProbeResult.ok("HTTP probe succeeded with statuscode: 200")
BAD = ProbeResult.failed("HTTP probe failed with statuscode: 500")


def states_after(settings: ProbeSettings, results: str) -> list[ProbeState]:
    """The tracker's state after each of `results` ("+" success, "-" failure)."""
    tracker = ProbeTracker(settings)
    now = 0.0
    states = []
    for mark in results:
        tracker.record(OK if mark == "+" else BAD, now)
        states.append(tracker.state)
        now += settings.period
    return states


@pytest.mark.parametrize(
    ("success", "failure", "results", "states"),
    [
        pytest.param(1, 3, "", [], id="nothing-yet"),
        pytest.param(1, 3, "+", [S], id="one-success-decides"),
        pytest.param(1, 3, "--", [U, U], id="two-failures-undecided"),
        pytest.param(1, 3, "---", [U, U, F], id="third-failure-decides"),
        pytest.param(1, 3, "+--", [S, S, S], id="short-failure-run-keeps-success"),
        pytest.param(1, 3, "+---", [S, S, S, F], id="failure-run-flips"),
        pytest.param(1, 3, "+--+--", [S, S, S, S, S, S], id="interrupted-failures-reset-the-count"),
        pytest.param(1, 3, "----+", [U, U, F, F, S], id="one-success-recovers"),
        pytest.param(2, 3, "+", [U], id="success-threshold-two-undecided"),
        pytest.param(2, 3, "++", [U, S], id="success-threshold-two-decides"),
        pytest.param(2, 1, "-+-++", [F, F, F, F, S], id="flapping-readiness"),
        pytest.param(1, 1, "-+-", [F, S, F], id="thresholds-one-follow-each-result"),
    ],
)
def test_thresholds(success: int, failure: int, results: str, states: list[ProbeState]) -> None:
    settings = ProbeSettings(period=1, success_threshold=success, failure_threshold=failure)
    assert states_after(settings, results) == states


@pytest.mark.parametrize(
    ("kind", "state", "passing"),
    [
        pytest.param(ProbeKind.READINESS, U, False, id="readiness-not-ready-until-first-success"),
        pytest.param(ProbeKind.LIVENESS, U, True, id="liveness-alive-until-proven-dead"),
        pytest.param(ProbeKind.STARTUP, U, False, id="startup-not-started-until-success"),
        pytest.param(ProbeKind.READINESS, S, True, id="readiness-ready"),
        pytest.param(ProbeKind.LIVENESS, F, False, id="liveness-dead"),
        pytest.param(ProbeKind.STARTUP, S, True, id="startup-started"),
    ],
)
def test_is_passing(kind: ProbeKind, state: ProbeState, passing: bool) -> None:
    assert is_passing(kind, state) is passing


def test_record_reports_the_change_and_message() -> None:
    tracker = ProbeTracker(ProbeSettings(failure_threshold=2))
    first = tracker.record(BAD, 0.0)
    second = tracker.record(BAD, 10.0)
    assert first == Outcome(state=U, previous=U, message=BAD.message) and not first.changed
    assert second == Outcome(state=F, previous=U, message=BAD.message) and second.changed
    assert tracker.last_message == BAD.message


def test_reset_forgets_everything() -> None:
    tracker = ProbeTracker(ProbeSettings(failure_threshold=1))
    tracker.record(BAD, 0.0)
    tracker.reset()
    assert tracker.snapshot == TrackerState()
    assert tracker.due(0.0, container_started_at=0.0)


@pytest.mark.parametrize(
    ("initial_delay", "last_probe_at", "now", "due"),
    [
        pytest.param(0, None, 100.0, True, id="no-delay-first-probe-at-start"),
        pytest.param(5, None, 104.9, False, id="inside-initial-delay"),
        pytest.param(5, None, 105.0, True, id="initial-delay-over"),
        pytest.param(0, 110.0, 119.9, False, id="inside-period"),
        pytest.param(0, 110.0, 120.0, True, id="period-over"),
        pytest.param(0, 110.0, 500.0, True, id="long-overdue"),
    ],
)
def test_due(initial_delay: float, last_probe_at: float | None, now: float, due: bool) -> None:
    tracker = ProbeTracker(ProbeSettings(initial_delay=initial_delay, period=10))
    if last_probe_at is not None:
        tracker.record(OK, last_probe_at)
    assert tracker.due(now, container_started_at=100.0) is due


def test_next_due_at_counts_the_period_from_the_probe_start() -> None:
    tracker = ProbeTracker(ProbeSettings(initial_delay=30, period=10))
    assert tracker.next_due_at(container_started_at=100.0) == 130.0
    tracker.record(OK, 130.0)
    assert tracker.next_due_at(container_started_at=100.0) == 140.0


def test_new_container_waits_out_its_initial_delay_again() -> None:
    tracker = ProbeTracker(ProbeSettings(initial_delay=30, period=10))
    tracker.record(OK, 130.0)
    assert not tracker.due(150.0, container_started_at=145.0)
    assert tracker.due(175.0, container_started_at=145.0)


@pytest.mark.parametrize(
    ("probe", "settings"),
    [
        pytest.param(pod_pb2.Probe(), ProbeSettings(0, 10, 1, 1, 3), id="all-defaults"),
        pytest.param(
            pod_pb2.Probe(
                initial_delay_seconds=5,
                period_seconds=2,
                timeout_seconds=3,
                success_threshold=2,
                failure_threshold=6,
            ),
            ProbeSettings(5, 2, 3, 2, 6),
            id="all-set",
        ),
        pytest.param(
            pod_pb2.Probe(initial_delay_seconds=-1, period_seconds=-5, failure_threshold=-2),
            ProbeSettings(0, 10, 1, 1, 3),
            id="negatives-defaulted",
        ),
    ],
)
def test_settings_from_proto(probe: pod_pb2.Probe, settings: ProbeSettings) -> None:
    assert settings_from_proto(probe) == settings


@given(
    success=st.integers(min_value=1, max_value=5),
    failure=st.integers(min_value=1, max_value=5),
    results=st.lists(st.booleans(), max_size=60),
)
def test_state_follows_the_latest_full_run(success: int, failure: int, results: list[bool]) -> None:
    """The state is the result of the latest run that reached its threshold (UNKNOWN if none)."""
    settings = ProbeSettings(success_threshold=success, failure_threshold=failure)
    state = TrackerState()
    expected = U
    run = 0
    for index, passed in enumerate(results):
        run = run + 1 if index and results[index - 1] is passed else 1
        if run >= (success if passed else failure):
            expected = S if passed else F
        state = advance(settings, state, ProbeResult(passed, ""), float(index))
        assert state.state is expected
