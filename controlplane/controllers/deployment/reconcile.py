"""Deployment reconciliation, pure: a Deployment, the ReplicaSets and pods of its
namespace, and `now` in; `DeploymentActions` out.

One sync, as Kubernetes' `syncDeployment`:

1. claim the ReplicaSets (adopting orphans the selector matches); find the new
   one (template equal, ignoring the hash label) and sync its revision;
2. a Deployment being deleted only gets its status;
3. Progressing shows DeploymentPaused / DeploymentResumed around a pause;
4. BlueGreen and Canary Deployments take their own path from here
   (`bluegreen`, `canary`): they size every version from spec.replicas on
   each sync, so pausing and scaling need no special case, and they decide
   the traffic weights;
5. paused or scaled (a desired-replicas annotation differs): scale, with
   proportional scaling mid-rollout (`scaling`); no rollout progress while
   paused, and no progress deadline either;
6. an automatic rollback if one is due (`rollback`);
7. otherwise one step of the strategy (`rolling`), the revision history
   cleanup once the rollout is complete, and the status with its progress
   conditions (`status`).

The actions: ReplicaSets to create, to scale down (apply first), to update
otherwise and to delete; the Deployment with new annotations and status (one
CAS write); a template to roll back to (written after it: an automatic
rollback, or an aborted canary); events; and when to look again (the
progress deadline, a pod becoming available after minReadySeconds, the end of
a canary pause or of a blue-green scale-down delay).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from controlplane.controllers.deployment import bluegreen, canary, newrs, rolling, scaling, strategy
from controlplane.controllers.deployment.conditions import deployment_complete
from controlplane.controllers.deployment.plan import Event, Plan, new_plan, scale
from controlplane.controllers.deployment.rollback import roll_back
from controlplane.controllers.deployment.status import check_paused_conditions, sync_rollout_status, sync_status
from controlplane.controllers.replicaset.reconcile import AVAILABILITY_SKEW
from protos import pods as podutil
from protos.corral.v1 import pod_pb2, workloads_pb2


@dataclass(frozen=True)
class DeploymentActions:
    create: tuple[workloads_pb2.ReplicaSet, ...] = ()
    # Updates that lower spec.replicas: apply these before anything that adds pods.
    scale_down: tuple[workloads_pb2.ReplicaSet, ...] = ()
    # Other ReplicaSet updates: scale-ups, annotations, adoption.
    update: tuple[workloads_pb2.ReplicaSet, ...] = ()
    delete: tuple[workloads_pb2.ReplicaSet, ...] = ()
    # The Deployment with new annotations and status, or None when unchanged.
    deployment: workloads_pb2.Deployment | None = None
    # A template to write into spec.template (an automatic rollback, an aborted canary).
    rollback: pod_pb2.PodTemplateSpec | None = None
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


def reconcile(
    deployment: workloads_pb2.Deployment,
    replica_sets: Iterable[workloads_pb2.ReplicaSet],
    pods: Iterable[pod_pb2.Pod],
    *,
    now: datetime,
) -> DeploymentActions:
    return reconcile_facts(deployment, replica_sets, [podutil.facts_of(p) for p in pods], now=now)


def reconcile_facts(
    deployment: workloads_pb2.Deployment,
    replica_sets: Iterable[workloads_pb2.ReplicaSet],
    pods: Iterable[podutil.PodFacts],
    *,
    now: datetime,
) -> DeploymentActions:
    """`reconcile` over the pods' facts (any superset of the Deployment's ReplicaSets' pods)."""
    plan = new_plan(deployment, replica_sets, pods, now=now)
    run(plan)
    return actions_of(plan)


def run(plan: Plan) -> None:
    d = plan.deployment
    if podutil.is_terminating(d):
        newrs.sync_revision(plan, create=False)
        sync_status(plan)
        return
    check_paused_conditions(plan)
    newrs.sync_revision(plan, create=False)
    if strategy.is_blue_green(d):
        bluegreen.rollout(plan)
    elif strategy.routes_traffic(d):
        canary.rollout(plan)
    elif d.spec.paused or scaling.is_scaling_event(plan):
        scaling.scale_deployment(plan)
        if d.spec.paused:
            newrs.cleanup(plan)
        sync_status(plan)
    elif roll_back(plan):
        sync_status(plan)
    elif strategy.is_recreate(d):
        rollout_recreate(plan)
    else:
        rollout_rolling(plan)


def rollout_rolling(plan: Plan) -> None:
    newrs.sync_revision(plan, create=True, sizer=rolling.new_rs_new_replicas)
    if plan.collision:
        sync_status(plan)
        return
    if not rolling.reconcile_new(plan) and not rolling.reconcile_old(plan) and _was_complete(plan):
        newrs.cleanup(plan)
    sync_rollout_status(plan)


def rollout_recreate(plan: Plan) -> None:
    if rolling.scale_down_old_for_recreate(plan) or rolling.old_pods_running(plan):
        sync_rollout_status(plan)
        return
    if plan.new is None:
        newrs.sync_revision(plan, create=True)
        if plan.collision:
            sync_status(plan)
            return
    else:
        scale(plan, plan.new, plan.replicas)
    if _was_complete(plan):
        newrs.cleanup(plan)
    sync_rollout_status(plan)


def _was_complete(plan: Plan) -> bool:
    """Whether the rollout was complete as last recorded (Kubernetes cleans up only then)."""
    return deployment_complete(plan.original, plan.original.status)


def actions_of(plan: Plan) -> DeploymentActions:
    deleted = {rs.metadata.name for rs in plan.deleted}
    changed = [s for s in plan.sets if s.original is not None and s.rs != s.original and s.name not in deleted]
    d, original = plan.deployment, plan.original
    write = dict(d.metadata.annotations) != dict(original.metadata.annotations) or d.status != original.status
    return DeploymentActions(
        create=tuple(s.rs for s in plan.sets if s.original is None),
        scale_down=tuple(s.rs for s in changed if s.original and s.rs.spec.replicas < s.original.spec.replicas),
        update=tuple(s.rs for s in changed if s.original and s.rs.spec.replicas >= s.original.spec.replicas),
        delete=tuple(plan.deleted),
        deployment=d if write else None,
        rollback=plan.rollback,
        events=tuple(plan.events),
        requeue_after=_requeue_after(plan),
    )


def _requeue_after(plan: Plan) -> float | None:
    pods = [p for s in plan.sets for p in s.pods if p.active]
    delays = list(plan.requeue)
    wait = podutil.next_available_of(pods, plan.deployment.spec.min_ready_seconds, plan.now)
    if wait is not None:
        delays.append(wait + AVAILABILITY_SKEW)
    return min(delays) if delays else None
