"""Retiring versions that no longer get traffic (BlueGreen and Canary). Pure.

A ReplicaSet that is neither the stable version nor the one being rolled out
is scaled to 0, but never before the traffic as last written gives it weight
0 (see `traffic.serving`), and for BlueGreen only `scaleDownDelaySeconds`
after that: the deadline is recorded on the ReplicaSet as the annotation
`corral.io/scale-down-at` (RFC 3339, as Argo Rollouts does), so that
`corral rollout undo` within the delay finds the old version still running
and switches back at once. A version that becomes current again loses the
annotation.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import timedelta

from controlplane.controllers.deployment import traffic
from controlplane.controllers.deployment.plan import Plan, SetState, scale
from controlplane.controllers.deployment.revisions import take
from controlplane.controllers.deployment.status import REQUEUE_SKEW
from protos import pods as podutil
from protos.times import format_deadline, parse_time
from protos.wellknown import SCALE_DOWN_AT


def clear_deadline(state: SetState) -> None:
    take(state.rs.metadata.annotations, SCALE_DOWN_AT)


def retire(plan: Plan, keep: Collection[SetState], *, delay: int) -> None:
    """Scale every ReplicaSet not in `keep` to 0 once off traffic (and after `delay` seconds)."""
    for state in plan.sets:
        if any(state is k for k in keep) or podutil.is_terminating(state.rs):
            continue
        if state.replicas == 0:
            clear_deadline(state)
        elif not traffic.serving(plan, state):
            _retire(plan, state, delay)


def _retire(plan: Plan, state: SetState, delay: int) -> None:
    if delay <= 0:
        scale(plan, state, 0)
        return
    annotations = state.rs.metadata.annotations
    at = parse_time(annotations.get(SCALE_DOWN_AT, ""))
    if at is None:
        at = plan.now + timedelta(seconds=delay)
        annotations[SCALE_DOWN_AT] = format_deadline(at)
        plan.event(
            "ScaleDownDelayed",
            f"Replica set {state.name} no longer gets traffic; it keeps running until "
            f"{annotations[SCALE_DOWN_AT]} (scaleDownDelaySeconds {delay}) so that "
            "`corral rollout undo` can switch back at once",
            replica_set=state.name,
        )
    if plan.now >= at:
        clear_deadline(state)
        scale(plan, state, 0)
    else:
        plan.requeue.append(math.ceil((at - plan.now).total_seconds()) + REQUEUE_SKEW)
