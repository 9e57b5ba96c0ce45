"""Deployment conditions and the progress-deadline rules (Kubernetes'). Pure.

`Available` is True (MinimumReplicasAvailable) while at least
replicas - maxUnavailable pods are available. `Progressing` says how the
current rollout goes: NewReplicaSetCreated / FoundNewReplicaSet when it
starts, ReplicaSetUpdated whenever it makes progress (which bumps
lastUpdateTime), NewReplicaSetAvailable when it is complete,
ProgressDeadlineExceeded (status False) when lastUpdateTime is more than
progressDeadlineSeconds ago, DeploymentPaused / DeploymentResumed around a
pause (Unknown). BlueGreen and Canary add RolloutPaused (Unknown: a pause
step, or a preview waiting for promotion) and RolloutAborted (False: the
canary was aborted); neither has a deadline.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from protos.corral.v1 import meta_pb2, workloads_pb2
from protos.deployments import NEW_RS_AVAILABLE, PROGRESSING, ROLLOUT_ABORTED, ROLLOUT_PAUSED, TIMED_OUT
from protos.times import as_datetime

# Reasons of a Progressing condition that cannot time out.
WITHOUT_DEADLINE = frozenset({NEW_RS_AVAILABLE, TIMED_OUT, ROLLOUT_PAUSED, ROLLOUT_ABORTED})
# Kubernetes' "no deadline" value of progressDeadlineSeconds (MaxInt32).
NO_DEADLINE = 2**31 - 1


def new_condition(type_: str, status: str, reason: str, message: str, now: datetime) -> meta_pb2.Condition:
    condition = meta_pb2.Condition(type=type_, status=status, reason=reason, message=message)
    condition.last_update_time.FromDatetime(now)
    condition.last_transition_time.FromDatetime(now)
    return condition


def get_condition(status: workloads_pb2.DeploymentStatus, type_: str) -> meta_pb2.Condition | None:
    for condition in status.conditions:
        if condition.type == type_:
            copy = meta_pb2.Condition()
            copy.CopyFrom(condition)
            return copy
    return None


def remove_condition(status: workloads_pb2.DeploymentStatus, type_: str) -> None:
    kept: list[meta_pb2.Condition] = []
    for condition in status.conditions:
        if condition.type != type_:
            kept.append(meta_pb2.Condition())
            kept[-1].CopyFrom(condition)
    del status.conditions[:]
    status.conditions.extend(kept)


def set_condition(status: workloads_pb2.DeploymentStatus, condition: meta_pb2.Condition) -> None:
    """Kubernetes' SetDeploymentCondition: same status and reason change nothing;
    same status keeps the lastTransitionTime."""
    current = get_condition(status, condition.type)
    if current is not None and current.status == condition.status and current.reason == condition.reason:
        return
    replace_condition(status, condition)


def replace_condition(status: workloads_pb2.DeploymentStatus, condition: meta_pb2.Condition) -> None:
    """Put `condition` in place (keeping lastTransitionTime if the status is unchanged)."""
    current = get_condition(status, condition.type)
    new = meta_pb2.Condition()
    new.CopyFrom(condition)
    if current is not None and current.status == condition.status:
        new.last_transition_time.CopyFrom(current.last_transition_time)
    remove_condition(status, condition.type)
    status.conditions.append(new)


def has_progress_deadline(d: workloads_pb2.Deployment) -> bool:
    spec = d.spec
    return spec.HasField("progress_deadline_seconds") and spec.progress_deadline_seconds != NO_DEADLINE


def deployment_complete(d: workloads_pb2.Deployment, status: workloads_pb2.DeploymentStatus) -> bool:
    replicas = d.spec.replicas
    return (
        status.updated_replicas == replicas
        and status.replicas == replicas
        and status.available_replicas == replicas
        and status.observed_generation >= d.metadata.generation
    )


def deployment_progressing(old: workloads_pb2.DeploymentStatus, new: workloads_pb2.DeploymentStatus) -> bool:
    """Whether `new` shows progress over `old`: more updated, ready or available
    pods, or fewer old ones."""
    return (
        new.updated_replicas > old.updated_replicas
        or new.replicas - new.updated_replicas < old.replicas - old.updated_replicas
        or new.ready_replicas > old.ready_replicas
        or new.available_replicas > old.available_replicas
    )


def deadline(d: workloads_pb2.Deployment, status: workloads_pb2.DeploymentStatus) -> datetime | None:
    """When the current rollout times out without further progress (None: it cannot)."""
    if not has_progress_deadline(d):
        return None
    condition = get_condition(status, PROGRESSING)
    if condition is None or condition.reason in WITHOUT_DEADLINE:
        return None
    since = as_datetime(condition.last_update_time)
    if since is None:
        return None
    return since + timedelta(seconds=d.spec.progress_deadline_seconds)


def deployment_timed_out(d: workloads_pb2.Deployment, status: workloads_pb2.DeploymentStatus, now: datetime) -> bool:
    condition = get_condition(status, PROGRESSING)
    if not has_progress_deadline(d) or condition is None:
        return False
    if condition.reason == TIMED_OUT:
        return True
    at = deadline(d, status)
    return at is not None and at < now
