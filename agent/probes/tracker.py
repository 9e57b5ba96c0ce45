"""Probe thresholds and timing for one probe of one container: pure, `now` passed in.

The rules are the kubelet's prober worker's:

* No probe runs before `initial_delay` seconds have passed since the container
  started; after that one runs every `period` seconds (counted from the start
  of the previous probe, so periods do not drift by the probe's duration).
* The state starts UNKNOWN. It becomes FAILURE after `failure_threshold`
  consecutive failed probes and SUCCESS after `success_threshold` consecutive
  successful ones; a shorter run leaves it where it was.
* What UNKNOWN means depends on the probe's kind (`is_passing`): a readiness
  probe is "not ready" until its first decision, a liveness probe "alive", a
  startup probe "not started".

`advance(settings, state, result, now)` is the transition as a pure function
over the frozen `TrackerState`. `ProbeTracker` is a small, deliberately
*mutable* holder around it for the agent's probe loop: `due`, `record`,
`state`, `last_message`. A restarted container is a new container: give it a
new tracker (or call `reset`), as the kubelet does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from agent.probes.result import ProbeResult
from protos.corral.v1 import pod_pb2

# Kubernetes defaults for fields left at 0.
DEFAULT_PERIOD = 10.0
DEFAULT_TIMEOUT = 1.0
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3


class ProbeState(Enum):
    UNKNOWN = "unknown"
    SUCCESS = "success"
    FAILURE = "failure"


class ProbeKind(Enum):
    LIVENESS = "liveness"
    READINESS = "readiness"
    STARTUP = "startup"


def is_passing(kind: ProbeKind, state: ProbeState) -> bool:
    """Whether the container counts as alive / ready / started in `state`."""
    if state is ProbeState.UNKNOWN:
        return kind is ProbeKind.LIVENESS
    return state is ProbeState.SUCCESS


@dataclass(frozen=True)
class ProbeSettings:
    initial_delay: float = 0.0
    period: float = DEFAULT_PERIOD
    timeout: float = DEFAULT_TIMEOUT
    success_threshold: int = DEFAULT_SUCCESS_THRESHOLD
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD


def settings_from_proto(probe: pod_pb2.Probe) -> ProbeSettings:
    """The probe's timing, with Kubernetes defaults for zero (or negative) fields."""
    return ProbeSettings(
        initial_delay=float(max(probe.initial_delay_seconds, 0)),
        period=float(_positive_or(probe.period_seconds, int(DEFAULT_PERIOD))),
        timeout=float(_positive_or(probe.timeout_seconds, int(DEFAULT_TIMEOUT))),
        success_threshold=_positive_or(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
        failure_threshold=_positive_or(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
    )


def _positive_or(value: int, default: int) -> int:
    return value if value > 0 else default


@dataclass(frozen=True)
class TrackerState:
    """Everything a tracker knows; a value."""

    state: ProbeState = ProbeState.UNKNOWN
    # The raw result of the latest probe (None before the first) and how many
    # probes in a row have had that result.
    last_success: bool | None = None
    run: int = 0
    last_probe_at: float | None = None
    last_message: str = ""


@dataclass(frozen=True)
class Outcome:
    """What one probe result did to the tracker."""

    state: ProbeState
    previous: ProbeState
    message: str

    @property
    def changed(self) -> bool:
        return self.state is not self.previous


def next_due_at(settings: ProbeSettings, state: TrackerState, *, container_started_at: float) -> float:
    """The earliest time the next probe may run."""
    earliest = container_started_at + settings.initial_delay
    if state.last_probe_at is None:
        return earliest
    return max(earliest, state.last_probe_at + settings.period)


def advance(settings: ProbeSettings, state: TrackerState, result: ProbeResult, now: float) -> TrackerState:
    """The tracker state after a probe that started at `now` returned `result`."""
    run = state.run + 1 if state.last_success is result.success else 1
    threshold = settings.success_threshold if result.success else settings.failure_threshold
    decided = ProbeState.SUCCESS if result.success else ProbeState.FAILURE
    return replace(
        state,
        state=decided if run >= threshold else state.state,
        last_success=result.success,
        run=run,
        last_probe_at=now,
        last_message=result.message,
    )


class ProbeTracker:
    """Mutable holder of one probe's `TrackerState`; every decision is `advance`'s."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.snapshot = TrackerState()

    @property
    def state(self) -> ProbeState:
        return self.snapshot.state

    @property
    def last_message(self) -> str:
        return self.snapshot.last_message

    def next_due_at(self, *, container_started_at: float) -> float:
        return next_due_at(self.settings, self.snapshot, container_started_at=container_started_at)

    def due(self, now: float, *, container_started_at: float) -> bool:
        """Whether a probe should run at `now` for a container started at `container_started_at`."""
        return now >= self.next_due_at(container_started_at=container_started_at)

    def record(self, result: ProbeResult, now: float) -> Outcome:
        """Take in the result of the probe started at `now` (the time `due` was asked)."""
        previous = self.snapshot.state
        self.snapshot = advance(self.settings, self.snapshot, result, now)
        return Outcome(state=self.snapshot.state, previous=previous, message=result.message)

    def reset(self) -> None:
        """Forget everything: the container was replaced by a new one."""
        self.snapshot = TrackerState()
