"""The canary's walk through its steps. Pure: a `StepInput` in, a `StepOutcome` out.

Steps run in order, as many in one sync as can finish:

- `setWeight: w` needs the canary's size for w available (`canary_size`:
  `canaryReplicas` if set, else max(1, ceil(replicas * w / 100))); then the
  canary's weight becomes w and the walk moves on;
- `pause: {duration: d}` starts a clock (the pause start is recorded) and moves
  on once d seconds have passed, asking to be looked at again then;
- `pause: {}` waits for `corral rollout promote` (annotation
  `corral.io/promote: "<step index>"`).

`corral.io/promote: full` skips the remaining steps. After the last step the
canary is scaled to full size and, once all of it is available, is promoted:
it takes all traffic and becomes the stable version. A paused Deployment
(`spec.paused`) takes no step and keeps a promotion request for later.

The canary's size is that of the largest of its weight as last written, the
weight this sync writes and the weight of the step it waits at: a canary
never shrinks below what the traffic it may still get needs (ReplicaSets
are scaled before the status is written).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from protos import durations, times
from protos.corral.v1 import workloads_pb2
from protos.wellknown import PROMOTE_FULL


@dataclass(frozen=True)
class StepInput:
    steps: Sequence[workloads_pb2.CanaryStep]
    index: int
    pause_start: datetime | None
    # The canary's weight as last written.
    weight: int
    # The canary's available pods.
    available: int
    replicas: int
    canary_replicas: int | None
    # The value of the corral.io/promote annotation, if any.
    promote: str | None
    paused: bool
    now: datetime


@dataclass(frozen=True)
class Note:
    """Something to record as an event."""

    reason: str
    message: str
    type: str = "Normal"


@dataclass
class StepOutcome:
    index: int
    pause_start: datetime | None
    weight: int
    # The canary ReplicaSet's size.
    size: int
    # Every step is done and the whole canary is available: promote it.
    promoted: bool = False
    # Remove the promote annotation (it was acted on or refused).
    consume_promote: bool = False
    # Why the canary waits ("" if it does not).
    waiting: str = ""
    requeue: float | None = None
    notes: list[Note] = field(default_factory=list)


def canary_size(weight: int, replicas: int, canary_replicas: int | None) -> int:
    if replicas <= 0:
        return 0
    if canary_replicas is not None:
        return canary_replicas
    return max(1, -(-replicas * weight // 100))


def pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


def step_label(index: int, steps: Sequence[workloads_pb2.CanaryStep]) -> str:
    """`step 2/4`, counting from 1 as people do."""
    return f"step {index + 1}/{len(steps)}"


def describe_step(step: workloads_pb2.CanaryStep) -> str:
    if step.HasField("set_weight"):
        return f"setWeight {step.set_weight}%"
    return f"pause {durations.describe(step.pause)}"


def walk(inp: StepInput) -> StepOutcome:
    steps = inp.steps
    out = StepOutcome(index=min(max(inp.index, 0), len(steps)), pause_start=inp.pause_start, weight=inp.weight, size=0)
    if inp.promote is not None and not inp.paused:
        _promote(inp, out)
    while not inp.paused and out.index < len(steps):
        if not _take_step(inp, out, steps[out.index]):
            break
    if out.index >= len(steps):
        out.size = canary_size(100, inp.replicas, None)
        out.promoted = not inp.paused and inp.available >= inp.replicas
        out.pause_start = None
    else:
        step = steps[out.index]
        target = step.set_weight if step.HasField("set_weight") else out.weight
        out.size = max(canary_size(w, inp.replicas, inp.canary_replicas) for w in (inp.weight, out.weight, target))
    return out


def _promote(inp: StepInput, out: StepOutcome) -> None:
    """Act on corral.io/promote: `full`, or the index of the pause being waited at."""
    steps, value = inp.steps, inp.promote
    out.consume_promote = True
    if value == PROMOTE_FULL:
        if out.index < len(steps):
            out.notes.append(
                Note(
                    "Promoted",
                    f"Full promotion requested at {step_label(out.index, steps)}: skipping the remaining steps",
                )
            )
            out.index, out.pause_start = len(steps), None
        return
    at_pause = out.index < len(steps) and not steps[out.index].HasField("set_weight")
    if at_pause and value == str(out.index):
        out.notes.append(
            Note(
                "Promoted",
                f"Promotion requested: {step_label(out.index, steps)} ({describe_step(steps[out.index])}) is done",
            )
        )
        out.index, out.pause_start = out.index + 1, None
        return
    where = (
        f"the canary is at {step_label(out.index, steps)} ({describe_step(steps[out.index])})"
        if out.index < len(steps)
        else "the canary is already being promoted"
    )
    out.notes.append(Note("PromotionIgnored", f'corral.io/promote "{value}" ignored: {where}', "Warning"))


def _take_step(inp: StepInput, out: StepOutcome, step: workloads_pb2.CanaryStep) -> bool:
    """Carry out the current step; whether it finished."""
    label = step_label(out.index, inp.steps)
    if step.HasField("set_weight"):
        weight = step.set_weight
        need = canary_size(weight, inp.replicas, inp.canary_replicas)
        if inp.available < need:
            return False
        if weight != out.weight:
            out.notes.append(
                Note(
                    "TrafficWeightSet",
                    f"Canary weight set to {weight}% ({label}): {pods(inp.available)} of the canary available",
                )
            )
        out.weight = weight
        out.index += 1
        return True
    length = durations.pause_seconds(step.pause)
    if out.pause_start is None:
        out.pause_start = inp.now
        if length != 0:
            out.notes.append(Note("CanaryPaused", f"Canary paused at {label} {durations.describe(step.pause)}"))
    if length is None:
        out.waiting = f"canary paused at {label} until promoted"
        return False
    end = out.pause_start + timedelta(seconds=length)
    if inp.now < end:
        out.waiting = f"canary paused at {label} until {times.format_deadline(end)}"
        out.requeue = (end - inp.now).total_seconds()
        return False
    out.index += 1
    out.pause_start = None
    return True
