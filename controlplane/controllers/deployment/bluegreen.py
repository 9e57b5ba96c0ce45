"""The BlueGreen strategy: one sync on a `Plan`. Pure.

The active version (`status.stablePodTemplateHash`) gets all traffic. A
template change brings up the new ReplicaSet, the preview, at full size
beside it (`spec.replicas` applies to both). Once every preview pod is
available (minReadySeconds honoured), and auto-promotion is on
(`blueGreen.autoPromotionEnabled`, the default) or the preview was promoted
(`corral.io/promote: <preview hash>`, or `full`), one status write switches
all traffic: the preview becomes the active version. The version switched
away from keeps running for `scaleDownDelaySeconds` (default 30; see
`scaledown`), so `corral rollout undo` in that time finds it fully available
and switches back at once. A paused Deployment does not switch; a preview
that never becomes available never gets traffic (its rollout times out at
the progress deadline as any other).

Traffic is always exactly one version at 100, the others at 0.
"""

from __future__ import annotations

from controlplane.controllers.deployment import conditions as cond
from controlplane.controllers.deployment import newrs, scaledown
from controlplane.controllers.deployment.plan import Plan, SetState, scale
from controlplane.controllers.deployment.revisions import take
from controlplane.controllers.deployment.serving import serving_set
from controlplane.controllers.deployment.status import sync_traffic_status
from controlplane.controllers.deployment.traffic import Outcome, hash_of
from protos import deployments
from protos.wellknown import ABORT, PROMOTE, PROMOTE_FULL


def scale_down_delay(plan: Plan) -> int:
    config = plan.deployment.spec.strategy.blue_green
    if config.HasField("scale_down_delay_seconds"):
        return config.scale_down_delay_seconds
    return deployments.DEFAULT_SCALE_DOWN_DELAY_SECONDS


def auto_promotion(plan: Plan) -> bool:
    config = plan.deployment.spec.strategy.blue_green
    return config.auto_promotion_enabled if config.HasField("auto_promotion_enabled") else True


def rollout(plan: Plan) -> None:
    active = serving_set(plan)
    if active is None:
        return
    _refuse_abort(plan)
    preview = plan.new if plan.new is not None and plan.new is not active else None
    if preview is None:
        _drop_promotion(plan, "nothing to promote: no preview is running")
        done = active.replicas == plan.replicas and active.available >= plan.replicas
        outcome = Outcome(stable=hash_of(active), weights={hash_of(active): 100}, done=done)
    else:
        outcome = _preview(plan, active, preview)
    scaledown.retire(plan, [s for s in (active, preview) if s is not None], delay=scale_down_delay(plan))
    if outcome.done:
        newrs.cleanup(plan)
    sync_traffic_status(plan, outcome)


def _preview(plan: Plan, active: SetState, preview: SetState) -> Outcome:
    d = plan.deployment
    scale(plan, preview, plan.replicas, annotate=True)
    scaledown.clear_deadline(preview)
    requested = d.metadata.annotations.get(PROMOTE)
    promoted = requested in (hash_of(preview), PROMOTE_FULL)
    if requested is not None and not promoted:
        _drop_promotion(plan, f"the preview is {hash_of(preview)}")
    ready = preview.available >= plan.replicas
    available = f"{min(preview.available, plan.replicas)}/{plan.replicas}"
    if ready and not d.spec.paused and (promoted or auto_promotion(plan)):
        take(d.metadata.annotations, PROMOTE)
        why = "promoted with `corral rollout promote`" if promoted else "auto-promotion"
        plan.event(
            "TrafficSwitched",
            f"Switched all traffic from {active.name} to {preview.name}: {available} pods available ({why})",
        )
        return Outcome(
            stable=hash_of(preview), weights={hash_of(preview): 100, hash_of(active): 0}, done=True, advanced=True
        )
    waiting = ""
    if ready and not d.spec.paused:
        waiting = (
            f"preview {preview.name} has {available} pods available; waiting for "
            f"`corral rollout promote deployment/{d.metadata.name}`"
        )
        shown = cond.get_condition(plan.original.status, deployments.PROGRESSING)
        if shown is None or shown.message != waiting:
            plan.event(
                "WaitingForPromotion",
                f"Preview {preview.name} has {available} pods available; traffic switches when it is promoted",
            )
    return Outcome(stable=hash_of(active), weights={hash_of(active): 100, hash_of(preview): 0}, waiting=waiting)


def _drop_promotion(plan: Plan, why: str) -> None:
    value = take(plan.deployment.metadata.annotations, PROMOTE)
    if value is not None:
        plan.event("PromotionIgnored", f'{PROMOTE} "{value}" ignored: {why}', "Warning")


def _refuse_abort(plan: Plan) -> None:
    value = take(plan.deployment.metadata.annotations, ABORT)
    if value is not None:
        plan.event(
            "AbortIgnored",
            f'{ABORT} "{value}" ignored: a BlueGreen Deployment has no canary; '
            "`corral rollout undo` goes back to the active version",
            "Warning",
        )
