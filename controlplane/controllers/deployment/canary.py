"""The Canary strategy: one sync on a `Plan`. Pure.

The stable version (`status.stablePodTemplateHash`) keeps its full size
throughout. A template change makes the new ReplicaSet the canary
(`status.canary`: its hash, the current step, when a pause started); it walks
the steps (`steps.walk`) and gets the weight of the last `setWeight` it
reached, the stable version the rest. After the last step it is scaled to
full size and, once all of it is available, takes all traffic and becomes the
stable version; the old stable version is then scaled to 0 (`scaledown`). A
newer template in the middle of a canary becomes the canary instead, starting
from step 1.

Abort (`corral.io/abort: <canary hash>`, or by itself with `abortOnFailure`
when `health.failure` finds a failing canary pod): all traffic goes back to
the stable version in this sync's status write, `status.canary.aborted`
records why, the template is rolled back to the stable one (written after the
status, as an automatic rollback is) and the canary is scaled to 0 in the
next sync. The record stays until a new template is rolled out; re-applying
the aborted template starts a new canary (the Deployment's generation tells a
user's change from a rollback not yet written).
"""

from __future__ import annotations

from datetime import datetime

from controlplane.controllers.deployment import newrs, scaledown, steps, traffic
from controlplane.controllers.deployment.health import failure
from controlplane.controllers.deployment.plan import Plan, SetState, scale
from controlplane.controllers.deployment.revisions import revision_of, take
from controlplane.controllers.deployment.serving import serving_set
from controlplane.controllers.deployment.status import REQUEUE_SKEW, sync_traffic_status
from controlplane.controllers.deployment.traffic import Outcome, hash_of
from protos import times
from protos.corral.v1 import workloads_pb2
from protos.deployments import without_hash
from protos.wellknown import ABORT, PROMOTE

ABORT_REQUESTED = "abort requested with `corral rollout abort`"


def rollout(plan: Plan) -> None:
    stable = serving_set(plan)
    if stable is None:
        return
    canary = plan.new if plan.new is not None and plan.new is not stable else None
    outcome = _steady(plan, stable) if canary is None else _canary(plan, stable, canary)
    scaledown.retire(plan, [s for s in (stable, canary) if s is not None], delay=0)
    if outcome.done:
        newrs.cleanup(plan)
    sync_traffic_status(plan, outcome)


def _steady(plan: Plan, stable: SetState) -> Outcome:
    """No canary: the template is the stable version's."""
    d, before = plan.deployment, plan.original.status.canary
    record = workloads_pb2.CanaryStatus()
    if before.aborted and before.pod_template_hash != hash_of(stable):
        record.CopyFrom(before)
    elif before.pod_template_hash and before.pod_template_hash != hash_of(stable):
        plan.event(
            "CanaryStopped",
            f"Canary {before.pod_template_hash} stopped: the template is the stable version's ({stable.name}) again",
        )
    for name in (PROMOTE, ABORT):
        value = take(d.metadata.annotations, name)
        if value is not None:
            plan.event(
                "PromotionIgnored" if name == PROMOTE else "AbortIgnored",
                f'{name} "{value}" ignored: no canary is running',
                "Warning",
            )
    done = not record.aborted and stable.replicas == plan.replicas and stable.available >= plan.replicas
    return Outcome(stable=hash_of(stable), weights={hash_of(stable): 100}, canary=record, done=done)


def _canary(plan: Plan, stable: SetState, canary: SetState) -> Outcome:
    d = plan.deployment
    before = plan.original.status.canary
    if (
        before.aborted
        and before.pod_template_hash == hash_of(canary)
        and d.metadata.generation == plan.original.status.observed_generation
    ):
        # Aborted, but the rollback of the template has not been written yet: write it again.
        plan.rollback = without_hash(stable.rs.spec.template)
        return Outcome(stable=hash_of(stable), weights={hash_of(stable): 100, hash_of(canary): 0}, canary=_copy(before))
    record, fresh = _record(plan, stable, canary)
    reason = _abort_reason(plan, canary)
    if reason is not None:
        return _abort(plan, stable, canary, record, reason)
    config = d.spec.strategy.canary
    start = times.as_datetime(record.pause_start_time) if record.HasField("pause_start_time") else None
    result = steps.walk(
        steps.StepInput(
            steps=list(config.steps),
            index=record.current_step_index,
            pause_start=start,
            weight=0 if fresh else traffic.written_weights(plan.original.status).get(hash_of(canary), 0),
            available=canary.available,
            replicas=plan.replicas,
            canary_replicas=config.canary_replicas if config.HasField("canary_replicas") else None,
            promote=d.metadata.annotations.get(PROMOTE),
            paused=d.spec.paused,
            now=plan.now,
        )
    )
    if result.consume_promote:
        take(d.metadata.annotations, PROMOTE)
    for note in result.notes:
        plan.event(note.reason, note.message, note.type)
    scale(plan, canary, result.size, annotate=True)
    scaledown.clear_deadline(canary)
    if result.requeue is not None:
        plan.requeue.append(result.requeue + REQUEUE_SKEW)
    if result.promoted:
        plan.event(
            "CanaryPromoted",
            f"Canary {canary.name} promoted: all {plan.replicas} pods available; it takes "
            f"all traffic and is the stable version now (was {stable.name})",
        )
        return Outcome(
            stable=hash_of(canary), weights={hash_of(canary): 100, hash_of(stable): 0}, done=True, advanced=True
        )
    advanced = fresh or result.index != record.current_step_index
    record.current_step_index = result.index
    _set_pause_start(record, result.pause_start)
    weights = {hash_of(stable): 100 - result.weight, hash_of(canary): result.weight}
    return Outcome(stable=hash_of(stable), weights=weights, canary=record, waiting=result.waiting, advanced=advanced)


def _record(plan: Plan, stable: SetState, canary: SetState) -> tuple[workloads_pb2.CanaryStatus, bool]:
    """The canary's status, carried on or new for a new canary; whether it is new."""
    before = plan.original.status.canary
    if before.pod_template_hash == hash_of(canary) and not before.aborted:
        return _copy(before), False
    replaced = (
        f", replacing canary {before.pod_template_hash}" if before.pod_template_hash and not before.aborted else ""
    )
    count = len(plan.deployment.spec.strategy.canary.steps)
    plan.event(
        "CanaryStarted",
        f"Started canary {canary.name} (revision {revision_of(canary.rs)}) beside stable "
        f"{stable.name}: {count} steps{replaced}",
    )
    return workloads_pb2.CanaryStatus(pod_template_hash=hash_of(canary)), True


def _abort_reason(plan: Plan, canary: SetState) -> str | None:
    d = plan.deployment
    requested = take(d.metadata.annotations, ABORT)
    if requested == hash_of(canary):
        return ABORT_REQUESTED
    if requested is not None:
        plan.event("AbortIgnored", f'{ABORT} "{requested}" ignored: the canary running is {hash_of(canary)}', "Warning")
    config = d.spec.strategy.canary
    if config.HasField("abort_on_failure") and not config.abort_on_failure:
        return None
    return failure(p.pod for p in canary.pods)


def _abort(plan: Plan, stable: SetState, canary: SetState, record: workloads_pb2.CanaryStatus, reason: str) -> Outcome:
    d = plan.deployment
    record.aborted = reason
    plan.rollback = without_hash(stable.rs.spec.template)
    if take(d.metadata.annotations, PROMOTE) is not None:
        plan.event("PromotionIgnored", f"{PROMOTE} ignored: the canary was aborted", "Warning")
    at = (
        steps.step_label(record.current_step_index, d.spec.strategy.canary.steps)
        if record.current_step_index < len(d.spec.strategy.canary.steps)
        else "promotion"
    )
    plan.event(
        "RolloutAborted",
        f"Aborted canary {canary.name} at {at}: {reason}; all traffic is back on "
        f"{stable.name} and the template is rolled back to revision "
        f"{revision_of(stable.rs)}",
        "Warning",
    )
    return Outcome(stable=hash_of(stable), weights={hash_of(stable): 100, hash_of(canary): 0}, canary=record)


def _copy(record: workloads_pb2.CanaryStatus) -> workloads_pb2.CanaryStatus:
    copy = workloads_pb2.CanaryStatus()
    copy.CopyFrom(record)
    return copy


def _set_pause_start(record: workloads_pb2.CanaryStatus, start: datetime | None) -> None:
    if start is None:
        record.ClearField("pause_start_time")
    else:
        record.pause_start_time.FromDatetime(start)
