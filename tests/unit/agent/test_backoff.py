"""Crash-loop and reconnect backoff: corral/common/backoff.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.common.backoff import BackoffState, CrashLoopBackoff, ExponentialBackoff, format_duration

POLICY = CrashLoopBackoff()


def crash_times(policy: CrashLoopBackoff, runs: list[float], *, start: float = 1000.0) -> list[float]:
    """The delays after containers that ran for `runs` seconds, each restarted as soon as allowed."""
    state = policy.initial_state()
    now = start
    delays = []
    for ran_for in runs:
        state = policy.on_exit(state, started_at=now, exited_at=now + ran_for)
        delays.append(state.delay)
        assert state.next_start_at is not None
        now = state.next_start_at
    return delays


@pytest.mark.parametrize(
    ("runs", "delays"),
    [
        pytest.param([1], [10], id="first-crash-waits-initial"),
        pytest.param([1, 1], [10, 20], id="second-crash-doubles"),
        pytest.param([1] * 7, [10, 20, 40, 80, 160, 300, 300], id="doubles-up-to-cap"),
        pytest.param([1, 1, 1, 600], [10, 20, 40, 10], id="long-run-resets"),
        pytest.param([1, 1, 1, 599.9], [10, 20, 40, 80], id="just-short-of-reset"),
        pytest.param([1, 1, 700, 1, 1], [10, 20, 10, 20, 40], id="doubles-again-after-reset"),
        pytest.param([700], [10], id="long-first-run-still-waits-initial"),
        pytest.param([0], [10], id="instant-exit"),
    ],
)
def test_crash_loop_delays(runs: list[float], delays: list[float]) -> None:
    assert crash_times(POLICY, runs) == delays


@pytest.mark.parametrize(
    ("state", "now", "remaining"),
    [
        pytest.param(BackoffState(), 5.0, 0.0, id="never-exited"),
        pytest.param(BackoffState(delay=40, next_start_at=140.0), 100.0, 40.0, id="just-exited"),
        pytest.param(BackoffState(delay=40, next_start_at=140.0), 130.5, 9.5, id="part-way"),
        pytest.param(BackoffState(delay=40, next_start_at=140.0), 140.0, 0.0, id="exactly-due"),
        pytest.param(BackoffState(delay=40, next_start_at=140.0), 200.0, 0.0, id="long-past"),
    ],
)
def test_remaining(state: BackoffState, now: float, remaining: float) -> None:
    assert POLICY.remaining(state, now) == remaining
    assert POLICY.may_start(state, now) == (remaining == 0.0)


def test_on_exit_sets_next_start_from_exit_time() -> None:
    state = POLICY.on_exit(POLICY.initial_state(), started_at=50.0, exited_at=52.5)
    assert state == BackoffState(delay=10.0, next_start_at=62.5)


def test_clock_going_backwards_counts_as_a_quick_crash() -> None:
    state = POLICY.on_exit(BackoffState(delay=20, next_start_at=0.0), started_at=100.0, exited_at=90.0)
    assert state.delay == 40


@pytest.mark.parametrize(
    ("delay", "message"),
    [
        pytest.param(10, "back-off 10s restarting failed container", id="seconds"),
        pytest.param(40, "back-off 40s restarting failed container", id="forty"),
        pytest.param(80, "back-off 1m20s restarting failed container", id="minutes"),
        pytest.param(300, "back-off 5m0s restarting failed container", id="cap"),
    ],
)
def test_message(delay: float, message: str) -> None:
    assert POLICY.message(BackoffState(delay=delay, next_start_at=0.0)) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(1.5, "1.5s", id="fraction"),
        pytest.param(59, "59s", id="under-a-minute"),
        pytest.param(60, "1m0s", id="one-minute"),
        pytest.param(3600, "1h0m0s", id="one-hour"),
        pytest.param(3725, "1h2m5s", id="hours-minutes-seconds"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"initial": 0}, id="zero-initial"),
        pytest.param({"initial": 10, "cap": 5}, id="cap-below-initial"),
        pytest.param({"reset_after": -1}, id="negative-reset"),
    ],
)
def test_crash_loop_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CrashLoopBackoff(**kwargs)


@given(
    initial=st.floats(min_value=0.001, max_value=100),
    extra_cap=st.floats(min_value=0, max_value=1000),
    runs=st.lists(st.floats(min_value=0, max_value=10_000), max_size=40),
)
def test_delays_stay_between_zero_and_cap(initial: float, extra_cap: float, runs: list[float]) -> None:
    policy = CrashLoopBackoff(initial=initial, cap=initial + extra_cap, reset_after=600)
    for delay in crash_times(policy, runs):
        assert 0 <= delay <= policy.cap
        assert delay >= policy.initial


@given(
    initial=st.floats(min_value=0.001, max_value=100),
    extra_cap=st.floats(min_value=0, max_value=1000),
    runs=st.lists(st.floats(min_value=0, max_value=599.999), max_size=40),
)
def test_quick_crashes_never_shorten_the_delay(initial: float, extra_cap: float, runs: list[float]) -> None:
    policy = CrashLoopBackoff(initial=initial, cap=initial + extra_cap, reset_after=600)
    delays = crash_times(policy, runs)
    assert delays == sorted(delays)


@given(
    delay=st.floats(min_value=0, max_value=300),
    exited_at=st.floats(min_value=0, max_value=1e6),
    since_exit=st.floats(min_value=0, max_value=1e6),
)
def test_remaining_is_between_zero_and_delay(delay: float, exited_at: float, since_exit: float) -> None:
    state = BackoffState(delay=delay, next_start_at=exited_at + delay)
    assert 0 <= POLICY.remaining(state, exited_at + since_exit) <= delay + 1e-6


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        pytest.param(0, 0.5, id="first"),
        pytest.param(1, 1.0, id="second"),
        pytest.param(4, 8.0, id="fifth"),
        pytest.param(5, 10.0, id="capped"),
        pytest.param(10_000, 10.0, id="huge-attempt-does-not-overflow"),
    ],
)
def test_exponential_ceiling(attempt: int, ceiling: float) -> None:
    assert ExponentialBackoff().ceiling(attempt) == ceiling


def test_exponential_delay_is_seeded_and_deterministic() -> None:
    backoff = ExponentialBackoff(initial=1.0, cap=10.0)
    first = [backoff.next_delay(n, random.Random(7)) for n in range(6)]
    second = [backoff.next_delay(n, random.Random(7)) for n in range(6)]
    assert first == second


def test_exponential_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError):
        ExponentialBackoff().ceiling(-1)


@given(
    initial=st.floats(min_value=0.001, max_value=5),
    cap=st.floats(min_value=5, max_value=60),
    factor=st.floats(min_value=1, max_value=4),
    attempt=st.integers(min_value=0, max_value=5000),
    seed=st.integers(),
)
def test_exponential_delay_within_zero_and_cap(
    initial: float, cap: float, factor: float, attempt: int, seed: int
) -> None:
    backoff = ExponentialBackoff(initial=initial, cap=cap, factor=factor)
    delay = backoff.next_delay(attempt, random.Random(seed))
    assert 0 <= delay <= backoff.ceiling(attempt) <= cap
