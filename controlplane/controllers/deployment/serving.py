"""The start every BlueGreen and Canary sync shares. Pure.

Sync the new ReplicaSet (created empty: the strategy sizes it), honour a
hash collision or a due rollback, find the version serving traffic and keep
it at full size with no scale-down pending.
"""

from __future__ import annotations

from controlplane.controllers.deployment import newrs, scaledown, traffic
from controlplane.controllers.deployment.plan import Plan, SetState, scale
from controlplane.controllers.deployment.rollback import roll_back
from controlplane.controllers.deployment.status import sync_traffic_status
from controlplane.controllers.deployment.traffic import Outcome


def serving_set(plan: Plan) -> SetState | None:
    """The ReplicaSet serving traffic, at full size; None when this sync is
    already over (its traffic status written)."""
    if not plan.deployment.spec.paused:
        newrs.sync_revision(plan, create=True, sizer=traffic.no_pods)
        if plan.collision or roll_back(plan):
            sync_traffic_status(plan, traffic.unchanged(plan))
            return None
    serving = traffic.find_stable(plan)
    if serving is None:
        sync_traffic_status(plan, Outcome(stable="", weights={}))
        return None
    scale(plan, serving, plan.replicas, annotate=True)
    scaledown.clear_deadline(serving)
    return serving
