"""Scaling a Deployment (Kubernetes' `scale`), also in the middle of a rollout. Pure.

A scaling event is an active ReplicaSet whose desired-replicas annotation is
not the Deployment's replicas. Then:

- a single active (or, with none, the newest) ReplicaSet takes the new size
  (growing only as far as replicas + maxSurge allows beside pods that other
  sets still have);
- a saturated new ReplicaSet (all replicas available) leaves the old ones 0;
- otherwise, for RollingUpdate, the difference between replicas + maxSurge and
  the sets' total (see `replicas_to_add`) is split across the active
  ReplicaSets in proportion to their size (each set's share from its
  max-replicas annotation, the largest set taking the rounding leftover). When shares go both ways, only the
  shrinking ones are applied this time.

One guard beyond Kubernetes: a proportional shrink that would cut available
pods below replicas - maxUnavailable (or below what there was) keeps those
pods and takes the same number from the sets' unavailable pods instead, so the
availability bound also holds through a scale-down mid-rollout (the total is
unchanged, so the surge bound too).
"""

from __future__ import annotations

import math

from controlplane.controllers.deployment import strategy
from controlplane.controllers.deployment.plan import Plan, SetState, creation_key, scale
from controlplane.controllers.deployment.revisions import int_annotation
from protos.wellknown import DESIRED_REPLICAS, MAX_REPLICAS


def is_scaling_event(plan: Plan) -> bool:
    for state in plan.sets:
        desired = int_annotation(state.rs, DESIRED_REPLICAS)
        if state.replicas > 0 and desired is not None and desired != plan.replicas:
            return True
    return False


def find_active_or_latest(plan: Plan) -> SetState | None:
    active = [s for s in plan.sets if s.replicas > 0]
    if len(active) == 1:
        return active[0]
    if active:
        return None
    if plan.new is not None:
        return plan.new
    return plan.sets[-1] if plan.sets else None


def is_saturated(plan: Plan, state: SetState) -> bool:
    replicas = plan.replicas
    return (
        state.replicas == replicas
        and int_annotation(state.rs, DESIRED_REPLICAS) == replicas
        and state.safe_available == replicas
    )


def scale_deployment(plan: Plan) -> None:
    target = find_active_or_latest(plan)
    if target is not None:
        scale_sole(plan, target)
        return
    if plan.new is not None and is_saturated(plan, plan.new):
        for state in plan.old:
            if state.replicas > 0:
                scale(plan, state, 0)
        return
    if strategy.is_rolling(plan.deployment):
        scale_proportionally(plan)


def scale_sole(plan: Plan, target: SetState) -> None:
    replicas = plan.replicas
    size = replicas
    if replicas > target.replicas:
        others = sum(s.size for s in plan.sets if s is not target)
        room = replicas + strategy.max_surge(plan.deployment) - others
        size = max(target.replicas, min(replicas, room))
    scale(plan, target, size, annotate=True)


def scale_proportionally(plan: Plan) -> None:
    active = [s for s in plan.sets if s.replicas > 0]
    to_add = replicas_to_add(plan)
    newer_first = to_add > 0
    active.sort(key=lambda s: creation_key(s.rs), reverse=newer_first)
    active.sort(key=lambda s: s.replicas, reverse=True)
    sizes = keep_available(plan, active, _proportional_sizes(plan, active, to_add))
    shrinking = any(size < s.replicas for s, size in zip(active, sizes, strict=True))
    for state, size in zip(active, sizes, strict=True):
        if shrinking and size > state.replicas:
            continue
        scale(plan, state, size, annotate=True)


def replicas_to_add(plan: Plan) -> int:
    """How far to move the sets' total: down to replicas + maxSurge by their
    specs (pods a pending scale-down removes anyway need no further cut), or up
    only into the room that the pods that may exist leave."""
    allowed = plan.replicas + strategy.max_surge(plan.deployment) if plan.replicas > 0 else 0
    specs = sum(s.replicas for s in plan.sets)
    if specs > allowed:
        return allowed - specs
    return max(0, allowed - sum(s.size for s in plan.sets))


def _proportional_sizes(plan: Plan, active: list[SetState], to_add: int) -> list[int]:
    sizes: list[int] = []
    added = 0
    for state in active:
        share = proportion(plan, state, to_add, added)
        sizes.append(state.replicas + share)
        added += share
    if sizes and to_add:
        sizes[0] = max(0, sizes[0] + to_add - added)
    return sizes


def keep_available(plan: Plan, active: list[SetState], sizes: list[int]) -> list[int]:
    """Move cuts from available pods to unavailable ones while availability would
    drop below min(replicas - maxUnavailable, available now); the total stays."""
    target = min(plan.replicas - strategy.max_unavailable(plan.deployment), sum(s.safe_available for s in plan.sets))
    kept = sum(min(s.safe_available, size) for s, size in zip(active, sizes, strict=True))
    # Sets that cut available pods have no unavailable ones left, and the other way round.
    spare = sum(max(0, size - s.safe_available) for s, size in zip(active, sizes, strict=True))
    budget = min(target - kept, spare)
    if budget <= 0:
        return sizes
    sizes = list(sizes)
    for pool in ("give", "take"):
        left = budget
        for i, state in enumerate(active):
            room = state.safe_available - sizes[i] if pool == "give" else sizes[i] - state.safe_available
            step = min(max(0, room), left)
            sizes[i] += step if pool == "give" else -step
            left -= step
    return sizes


def proportion(plan: Plan, state: SetState, to_add: int, added: int) -> int:
    """Kubernetes' GetReplicaSetProportion: this set's share of `to_add`."""
    if state.replicas == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _fraction(plan, state)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def _fraction(plan: Plan, state: SetState) -> int:
    d = plan.deployment
    if plan.replicas == 0:
        return -state.replicas
    max_now = plan.replicas + strategy.max_surge(d)
    before = int_annotation(state.rs, MAX_REPLICAS) or d.status.replicas
    if before <= 0:
        return 0
    return _round_half_up(state.replicas * max_now / before) - state.replicas


def _round_half_up(value: float) -> int:
    """Go's math.Round for non-negative values (Python's round() rounds half to even)."""
    return math.floor(value + 0.5)
