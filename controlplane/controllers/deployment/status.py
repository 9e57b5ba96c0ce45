"""A Deployment's status (Kubernetes' calculateStatus and syncRolloutStatus). Pure.

Counts come from the pods of the Deployment's ReplicaSets: replicas (active
pods), updatedReplicas (those of the new ReplicaSet), readyReplicas,
availableReplicas, and unavailableReplicas (the ReplicaSets' desired total
minus the available). `sync_rollout_status` also judges the rollout's progress
against progressDeadlineSeconds and says when to look again.

BlueGreen and Canary (`sync_traffic_status`) add the traffic their sync
decided (`traffic.Outcome`) and judge progress by it: done (the new version
is stable and fully available) is NewReplicaSetAvailable even while old pods
wait for their scale-down; waiting at a pause or for a promotion is
RolloutPaused, an aborted canary RolloutAborted; a step taken or a switch is
progress. Syncs that decide nothing about traffic keep it as it was.
"""

from __future__ import annotations

from datetime import datetime

from controlplane.controllers.deployment import conditions as cond
from controlplane.controllers.deployment import strategy, traffic
from controlplane.controllers.deployment.plan import Plan
from protos import deployments
from protos.corral.v1 import meta_pb2, workloads_pb2

# Added to a deadline so that the requeue lands after it (Kubernetes adds 1 s).
REQUEUE_SKEW = 1.0


def calculate_status(plan: Plan) -> workloads_pb2.DeploymentStatus:
    d = plan.deployment
    available = sum(s.available for s in plan.sets)
    status = workloads_pb2.DeploymentStatus(
        observed_generation=d.metadata.generation,
        replicas=sum(s.active for s in plan.sets),
        updated_replicas=plan.new.active if plan.new is not None else 0,
        ready_replicas=sum(s.ready for s in plan.sets),
        available_replicas=available,
        unavailable_replicas=max(0, sum(s.replicas for s in plan.sets) - available),
        collision_count=d.status.collision_count,
    )
    status.conditions.extend(d.status.conditions)
    if available >= plan.replicas - strategy.max_unavailable(d):
        condition = cond.new_condition(
            deployments.AVAILABLE, "True", deployments.MIN_AVAILABLE, "Deployment has minimum availability.", plan.now
        )
    else:
        condition = cond.new_condition(
            deployments.AVAILABLE,
            "False",
            deployments.MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            plan.now,
        )
    cond.set_condition(status, condition)
    return status


def sync_status(plan: Plan) -> None:
    """Counts and the Available condition only (scaling, paused, deleting)."""
    status = calculate_status(plan)
    if strategy.routes_traffic(plan.deployment):
        _put_traffic(plan, status, traffic.unchanged(plan))
    plan.deployment.status.CopyFrom(status)


def _put_traffic(plan: Plan, status: workloads_pb2.DeploymentStatus, outcome: traffic.Outcome) -> None:
    status.stable_pod_template_hash = outcome.stable
    status.traffic.extend(traffic.listed(plan, outcome.weights))
    if outcome.canary.pod_template_hash:
        status.canary.CopyFrom(outcome.canary)


def sync_traffic_status(plan: Plan, outcome: traffic.Outcome) -> None:
    """The status of a BlueGreen or Canary Deployment after `outcome`."""
    d = plan.deployment
    status = calculate_status(plan)
    _put_traffic(plan, status, outcome)
    if not d.spec.paused:
        if not cond.has_progress_deadline(d):
            cond.remove_condition(status, deployments.PROGRESSING)
        else:
            _judge_traffic_progress(plan, status, outcome)
    d.status.CopyFrom(status)
    delay = stuck_delay(d, plan.now)
    if delay is not None and not d.spec.paused:
        plan.requeue.append(delay)


def _judge_traffic_progress(plan: Plan, status: workloads_pb2.DeploymentStatus, outcome: traffic.Outcome) -> None:
    d = plan.deployment
    what = f'ReplicaSet "{plan.new.name}"' if plan.new is not None else f'Deployment "{d.metadata.name}"'
    current = cond.get_condition(status, deployments.PROGRESSING)
    if outcome.canary.aborted:
        _show(
            status,
            cond.new_condition(
                deployments.PROGRESSING,
                "False",
                deployments.ROLLOUT_ABORTED,
                f"Canary {outcome.canary.pod_template_hash} was aborted: {outcome.canary.aborted}",
                plan.now,
            ),
        )
    elif outcome.done:
        cond.set_condition(
            status,
            cond.new_condition(
                deployments.PROGRESSING,
                "True",
                deployments.NEW_RS_AVAILABLE,
                f"{what} has successfully progressed.",
                plan.now,
            ),
        )
    elif outcome.waiting:
        _show(
            status,
            cond.new_condition(
                deployments.PROGRESSING, "Unknown", deployments.ROLLOUT_PAUSED, outcome.waiting, plan.now
            ),
        )
    elif (
        outcome.advanced
        or cond.deployment_progressing(plan.original.status, status)
        or (current is not None and current.reason in (deployments.ROLLOUT_PAUSED, deployments.ROLLOUT_ABORTED))
    ):
        cond.replace_condition(
            status,
            cond.new_condition(
                deployments.PROGRESSING, "True", deployments.RS_UPDATED, f"{what} is progressing.", plan.now
            ),
        )
    elif cond.deployment_timed_out(d, status, plan.now):
        cond.set_condition(
            status,
            cond.new_condition(
                deployments.PROGRESSING, "False", deployments.TIMED_OUT, f"{what} has timed out progressing.", plan.now
            ),
        )


def _show(status: workloads_pb2.DeploymentStatus, condition: meta_pb2.Condition) -> None:
    """Put `condition` in place unless it already shows the same (status, reason, message)."""
    current = cond.get_condition(status, condition.type)
    if current is None or (current.status, current.reason, current.message) != (
        condition.status,
        condition.reason,
        condition.message,
    ):
        cond.replace_condition(status, condition)


def sync_rollout_status(plan: Plan) -> None:
    d = plan.deployment
    status = calculate_status(plan)
    if not cond.has_progress_deadline(d):
        cond.remove_condition(status, deployments.PROGRESSING)
    else:
        _judge_progress(plan, status)
    d.status.CopyFrom(status)
    delay = stuck_delay(d, plan.now)
    if delay is not None:
        plan.requeue.append(delay)


def _judge_progress(plan: Plan, status: workloads_pb2.DeploymentStatus) -> None:
    d = plan.deployment
    current = cond.get_condition(d.status, deployments.PROGRESSING)
    if (
        status.replicas == status.updated_replicas
        and current is not None
        and current.reason == deployments.NEW_RS_AVAILABLE
    ):
        return
    what = f'ReplicaSet "{plan.new.name}"' if plan.new is not None else f'Deployment "{d.metadata.name}"'
    if cond.deployment_complete(d, status):
        cond.set_condition(
            status,
            cond.new_condition(
                deployments.PROGRESSING,
                "True",
                deployments.NEW_RS_AVAILABLE,
                f"{what} has successfully progressed.",
                plan.now,
            ),
        )
    elif cond.deployment_progressing(plan.original.status, status):
        cond.replace_condition(
            status,
            cond.new_condition(
                deployments.PROGRESSING, "True", deployments.RS_UPDATED, f"{what} is progressing.", plan.now
            ),
        )
    elif cond.deployment_timed_out(d, status, plan.now):
        cond.set_condition(
            status,
            cond.new_condition(
                deployments.PROGRESSING, "False", deployments.TIMED_OUT, f"{what} has timed out progressing.", plan.now
            ),
        )


def stuck_delay(d: workloads_pb2.Deployment, now: datetime) -> float | None:
    """Seconds until the rollout times out if nothing moves (None: no deadline runs)."""
    at = cond.deadline(d, d.status)
    if at is None or cond.deployment_complete(d, d.status):
        return None
    return max(0.0, (at - now).total_seconds()) + REQUEUE_SKEW


def check_paused_conditions(plan: Plan) -> None:
    """Progressing Unknown DeploymentPaused while paused, DeploymentResumed after."""
    d = plan.deployment
    if not cond.has_progress_deadline(d):
        return
    current = cond.get_condition(d.status, deployments.PROGRESSING)
    if current is not None and current.reason == deployments.TIMED_OUT:
        return
    paused_shown = current is not None and current.reason == deployments.PAUSED
    if d.spec.paused and not paused_shown:
        cond.set_condition(
            d.status,
            cond.new_condition(
                deployments.PROGRESSING, "Unknown", deployments.PAUSED, "Deployment is paused", plan.now
            ),
        )
    elif not d.spec.paused and paused_shown:
        cond.set_condition(
            d.status,
            cond.new_condition(
                deployments.PROGRESSING, "Unknown", deployments.RESUMED, "Deployment is resumed", plan.now
            ),
        )
