"""RollingUpdate and Recreate steps (Kubernetes' rolloutRolling and
rolloutRecreate). Pure; steps on a `Plan`, each returning whether it changed a
ReplicaSet's size.

RollingUpdate, one step per sync: scale the new ReplicaSet up as far as
replicas + maxSurge allows (counting every pod that may exist, see
`SetState.size`); if it did not change, scale old ReplicaSets down — first
their unavailable pods (`cleanup_unhealthy`, which costs no availability),
then as far as replicas - maxUnavailable allows (counting only available pods
that survive pending scale-downs, see `SetState.safe_available`).

Recreate: scale every old ReplicaSet to 0, wait until none of their pods
remain, then create or scale up the new one.
"""

from __future__ import annotations

from controlplane.controllers.deployment import strategy
from controlplane.controllers.deployment.plan import Plan, SetState, scale


def new_rs_new_replicas(plan: Plan, new: SetState) -> int:
    """Kubernetes' NewRSNewReplicas: the new ReplicaSet's next size."""
    replicas = plan.replicas
    if strategy.is_recreate(plan.deployment):
        return replicas
    max_total = replicas + strategy.max_surge(plan.deployment)
    current = sum(s.size for s in plan.sets)
    if current >= max_total:
        return new.replicas
    return new.replicas + max(0, min(max_total - current, replicas - new.replicas))


def reconcile_new(plan: Plan) -> bool:
    new = plan.new
    if new is None or new.replicas == plan.replicas:
        return False
    if new.replicas > plan.replicas:
        return scale(plan, new, plan.replicas)
    return scale(plan, new, new_rs_new_replicas(plan, new))


def reconcile_old(plan: Plan) -> bool:
    new = plan.new
    olds = [s for s in plan.old if s.replicas > 0]
    if new is None or not olds:
        return False
    min_available = plan.replicas - strategy.max_unavailable(plan.deployment)
    all_pods = sum(s.replicas for s in plan.sets)
    new_unavailable = new.replicas - new.safe_available
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    cleaned = cleanup_unhealthy(plan, olds, max_scaled_down)
    scaled = scale_down_old(plan, olds, min_available)
    return cleaned + scaled > 0


def cleanup_unhealthy(plan: Plan, olds: list[SetState], limit: int) -> int:
    """Scale old sets down by their unavailable pods, oldest first, at most `limit`."""
    total = 0
    for state in olds:
        if total >= limit:
            break
        unhealthy = state.replicas - state.safe_available
        if state.replicas == 0 or unhealthy <= 0:
            continue
        count = min(limit - total, unhealthy)
        scale(plan, state, state.replicas - count)
        total += count
    return total


def scale_down_old(plan: Plan, olds: list[SetState], min_available: int) -> int:
    """Scale old sets down, oldest first, while availability stays >= min_available."""
    available = sum(s.safe_available for s in plan.sets)
    budget = available - min_available
    total = 0
    for state in olds:
        if total >= budget:
            break
        if state.replicas == 0:
            continue
        count = min(state.replicas, budget - total)
        scale(plan, state, state.replicas - count)
        total += count
    return total


def scale_down_old_for_recreate(plan: Plan) -> bool:
    scaled = False
    for state in plan.old:
        if state.replicas > 0:
            scaled = scale(plan, state, 0) or scaled
    return scaled


def old_pods_running(plan: Plan) -> bool:
    return any(s.rs.status.replicas > 0 or s.pods for s in plan.old)
