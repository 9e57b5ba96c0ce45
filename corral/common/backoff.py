"""Backoff, as pure values: crash-loop restarts and reconnects.

`CrashLoopBackoff` is the kubelet's restart backoff for one container. After
each exit the next start waits `initial` seconds (10 s), doubling on every
consecutive crash up to `cap` (300 s). A container that had been running for
at least `reset_after` seconds (600 s) before it exited is not crash-looping:
its next restart waits `initial` again.

    policy = CrashLoopBackoff()
    state = policy.initial_state()
    state = policy.on_exit(state, started_at=100.0, exited_at=101.0)  # delay 10
    policy.remaining(state, now=105.0)   # 6.0 -> CrashLoopBackOff
    policy.message(state)                # "back-off 10s restarting failed container"

Nothing here reads a clock: `now`, `started_at` and `exited_at` are monotonic
seconds passed in by the caller.

`ExponentialBackoff` is the generic "full jitter" backoff for reconnect loops:
attempt *n* waits a uniformly random time in [0, min(cap, initial * factor**n)].
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BackoffState:
    """Where one container stands in its crash loop.

    `delay` is the wait imposed after the most recent exit (0 before the first
    exit); `next_start_at` is when the container may start again (None: now).
    """

    delay: float = 0.0
    next_start_at: float | None = None


@dataclass(frozen=True)
class CrashLoopBackoff:
    """The restart policy's timing: pure functions over `BackoffState`."""

    initial: float = 10.0
    cap: float = 300.0
    reset_after: float = 600.0

    def __post_init__(self) -> None:
        if self.initial <= 0:
            raise ValueError(f"initial must be positive, got {self.initial}")
        if self.cap < self.initial:
            raise ValueError(f"cap ({self.cap}) must be at least initial ({self.initial})")
        if self.reset_after < 0:
            raise ValueError(f"reset_after must not be negative, got {self.reset_after}")

    def initial_state(self) -> BackoffState:
        """A container that has never exited: it may start at once."""
        return BackoffState()

    def on_exit(self, state: BackoffState, *, started_at: float, exited_at: float) -> BackoffState:
        """The state after the container, started at `started_at`, exited at `exited_at`."""
        delay = self.next_delay(state.delay, ran_for=exited_at - started_at)
        return replace(state, delay=delay, next_start_at=exited_at + delay)

    def next_delay(self, previous: float, *, ran_for: float) -> float:
        """The wait after an exit, given the previous wait and how long the run lasted."""
        if previous <= 0 or ran_for >= self.reset_after:
            return self.initial
        return min(previous * 2, self.cap)

    def remaining(self, state: BackoffState, now: float) -> float:
        """Seconds left before the container may start again; 0 when it may start."""
        if state.next_start_at is None:
            return 0.0
        return max(0.0, state.next_start_at - now)

    def may_start(self, state: BackoffState, now: float) -> bool:
        return self.remaining(state, now) == 0.0

    def message(self, state: BackoffState) -> str:
        """The CrashLoopBackOff waiting message, as the kubelet words it."""
        return f"back-off {format_duration(state.delay)} restarting failed container"


def format_duration(seconds: float) -> str:
    """Seconds in Go's duration style, as Kubernetes prints them: 10s, 1m20s, 5m0s, 1.5s."""
    if seconds < 60:
        return f"{_trim(seconds)}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{_trim(rest)}s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes}m{_trim(rest)}s"


def _trim(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


@dataclass(frozen=True)
class ExponentialBackoff:
    """Full-jitter exponential backoff (AWS architecture blog) for reconnects."""

    initial: float = 0.5
    cap: float = 10.0
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.initial <= 0:
            raise ValueError(f"initial must be positive, got {self.initial}")
        if self.cap < self.initial:
            raise ValueError(f"cap ({self.cap}) must be at least initial ({self.initial})")
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1, got {self.factor}")

    def ceiling(self, attempt: int) -> float:
        """The largest wait attempt `attempt` (0-based) may draw."""
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, got {attempt}")
        try:
            grown = self.initial * self.factor**attempt
        except OverflowError:
            return self.cap
        return min(grown, self.cap)

    def next_delay(self, attempt: int, rng: random.Random) -> float:
        """A wait drawn uniformly from [0, ceiling(attempt)]."""
        return rng.uniform(0.0, self.ceiling(attempt))
