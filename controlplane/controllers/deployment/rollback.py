"""Automatic rollback when a rollout exceeds its progress deadline. Pure.

Only for Deployments annotated `corral.io/rollback-on-failure: "true"`, whose
Progressing condition says ProgressDeadlineExceeded: the template goes back to
that of the previous revision (the ReplicaSet with the highest revision below
the current one), with a Warning event `RolledBack`. The next sync finds that
ReplicaSet by its template and reuses it, giving it a new revision, as a
rollback from the CLI does.

`corral.io/rolled-back-to` (on the Deployment) holds the hash of the template
restored, so a rollout that was itself an automatic rollback is never rolled
back again (which could flip-flop between two failing revisions).
"""

from __future__ import annotations

from controlplane.controllers.deployment import conditions as cond
from controlplane.controllers.deployment.plan import Plan, SetState
from controlplane.controllers.deployment.revisions import revision_of
from protos import deployments
from protos.deployments import without_hash
from protos.wellknown import POD_TEMPLATE_HASH, ROLLBACK_ON_FAILURE, ROLLED_BACK_TO


def pod_hash(state: SetState) -> str:
    return state.rs.spec.template.metadata.labels.get(POD_TEMPLATE_HASH, "")


def rollback_target(plan: Plan) -> SetState | None:
    d = plan.deployment
    if d.metadata.annotations.get(ROLLBACK_ON_FAILURE, "").lower() != "true" or plan.new is None:
        return None
    progressing = cond.get_condition(d.status, deployments.PROGRESSING)
    if progressing is None or progressing.reason != deployments.TIMED_OUT:
        return None
    if d.metadata.annotations.get(ROLLED_BACK_TO) == pod_hash(plan.new):
        return None
    current = revision_of(plan.new.rs)
    previous = [s for s in plan.old if 0 < revision_of(s.rs) < current]
    return max(previous, key=lambda s: revision_of(s.rs)) if previous else None


def roll_back(plan: Plan) -> bool:
    """Plan the rollback if one is due; whether it is."""
    target = rollback_target(plan)
    if target is None or plan.new is None:
        return False
    d = plan.deployment
    plan.rollback = without_hash(target.rs.spec.template)
    d.metadata.annotations[ROLLED_BACK_TO] = pod_hash(target)
    plan.event(
        "RolledBack",
        f'Rolled back deployment "{d.metadata.name}" from revision {revision_of(plan.new.rs)} '
        f"to revision {revision_of(target.rs)}: progress deadline exceeded",
        "Warning",
    )
    return True
