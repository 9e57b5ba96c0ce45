"""Job reconciliation, pure: a Job and its pods in, the pods to create and delete and the status out.

`reconcile(job, pods, now=…)` follows Kubernetes' Job controller:

- counting: the Job's pods (controller ownerReference) that Succeeded, that
  Failed (less those its podFailurePolicy ignores, and those that failed
  because they were being deleted: stopped by a suspend or a lower
  parallelism), that are active (neither finished nor being deleted) and
  terminating. Counts never go down (a counted pod that is deleted later
  stays counted).
- failing, in Kubernetes' order: a pod that matches a FailJob rule
  (reason PodFailurePolicy); more failures than backoffLimit, or with
  restartPolicy OnFailure as many container restarts (BackoffLimitExceeded);
  running longer than activeDeadlineSeconds since startTime
  (DeadlineExceeded); Indexed with backoffLimitPerIndex, more failed indexes
  than maxFailedIndexes (MaxFailedIndexesExceeded) or every index done and
  some failed (FailedIndexes).
- succeeding: `completions` pods succeeded (NonIndexed), every index
  0..completions-1 has a succeeded pod (Indexed), or without completions one
  pod succeeded and none is active (a work queue).
- finishing, as Kubernetes 1.31+: first the FailureTarget (or
  SuccessCriteriaMet) condition and the deletion of every active pod; once no
  pod is active or terminating, the Failed (or Complete, with
  completionTime) condition and an event. A finished Job changes no more; its
  ttlSecondsAfterFinished, counted from that condition, deletes it (and the
  garbage collector its pods).
- suspend: active pods are deleted, condition Suspended; resuming sets
  Suspended False and restarts startTime (and with it the deadline).
- managing: pods are created up to parallelism while completions are left
  (NonIndexed: completions minus succeeded; Indexed: the lowest indexes that have
  neither a succeeded nor an active pod), not before the back-off after the
  failures since the last success has passed; surplus active pods (lower
  parallelism, a duplicate index) are deleted. podReplacementPolicy Failed
  counts terminating pods as taking a slot until they are gone.

`manage=False` (the shell's expectations are not yet met) computes status but
creates and deletes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.controllers.job import failures
from controlplane.controllers.job.pods import new_pod, surplus
from protos import jobs, owners
from protos import pods as podutil
from protos.conditions import set_condition
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.times import as_datetime

BURST = 500


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class JobActions:
    create: tuple[pod_pb2.Pod, ...] = ()
    delete: tuple[pod_pb2.Pod, ...] = ()
    # The new status, or None when it is unchanged.
    status: batch_pb2.JobStatus | None = None
    # ttlSecondsAfterFinished has passed: delete the Job.
    delete_job: bool = False
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


@dataclass
class _Pods:
    active: list[pod_pb2.Pod] = field(default_factory=list)
    terminating: list[pod_pb2.Pod] = field(default_factory=list)
    succeeded: list[pod_pb2.Pod] = field(default_factory=list)
    failed: list[pod_pb2.Pod] = field(default_factory=list)  # counted: not ignored by the policy
    # The first pod matching a FailJob rule, and its message.
    fail_job: str | None = None
    # Indexed with backoffLimitPerIndex: failures per index, and indexes failed by a FailIndex rule.
    index_failures: dict[int, int] = field(default_factory=dict)
    fail_index: set[int] = field(default_factory=set)


def reconcile(
    job: batch_pb2.Job, pods: Iterable[pod_pb2.Pod], *, now: datetime, manage: bool = True, burst: int = BURST
) -> JobActions:
    if podutil.is_terminating(job):
        return JobActions()
    done = jobs.finished(job)
    if done is not None:
        return _after_finish(job, done[1], now)
    mine = _classify(job, [p for p in pods if owners.is_controlled_by(p, job.metadata.uid)])
    status = batch_pb2.JobStatus()
    status.CopyFrom(job.status)
    spec = job.spec
    events: list[Event] = []
    create: list[pod_pb2.Pod] = []
    delete: list[pod_pb2.Pod] = []
    waits: list[float] = []

    if not status.HasField("start_time") and not spec.suspend:
        status.start_time.FromDatetime(now)
    if not spec.suspend and _resumed(status, now):
        events.append(Event("Normal", "Resumed", "Job resumed"))
    completed = _completed_indexes(job, mine)
    failed_indexes = _failed_indexes(job, mine)
    target = _target(job, status, mine, completed, failed_indexes, now, waits)
    if target is not None:
        kind, reason, message = target
        set_condition(status.conditions, kind, "True", reason=reason, message=message, now=now)
        delete = mine.active
        if not mine.active and not mine.terminating:
            events.append(_finish(status, kind, reason, message, now))
    elif spec.suspend:
        delete = mine.active
        if _suspended(status, now):
            events.append(Event("Normal", "Suspended", "Job suspended"))
    else:
        create, delete, wait = _manage(job, mine, completed, failed_indexes, now, burst)
        waits += [wait] if wait is not None else []

    failing = target is not None and target[0] == jobs.FAILURE_TARGET
    _counts(status, job, mine, completed, failed_indexes, failing=failing)
    if not manage:
        create, delete = [], []
    return JobActions(
        create=tuple(create),
        delete=tuple(delete),
        status=None if status == job.status else status,
        events=tuple(events),
        requeue_after=min(waits) if waits else None,
    )


def _classify(job: batch_pb2.Job, pods: Sequence[pod_pb2.Pod]) -> _Pods:
    found = _Pods()
    policy = job.spec.pod_failure_policy
    per_index = job.spec.HasField("backoff_limit_per_index")
    for pod in sorted(pods, key=lambda p: (p.metadata.creation_timestamp.seconds, p.metadata.name)):
        if pod.status.phase == "Succeeded":
            found.succeeded.append(pod)
        elif pod.status.phase == "Failed" and podutil.is_terminating(pod):
            continue  # stopped by its deletion (suspend, a lower parallelism): not a failure of its own
        elif pod.status.phase == "Failed":
            matched = failures.policy_action(policy, pod) if job.spec.HasField("pod_failure_policy") else None
            action = matched[0] if matched else jobs.COUNT
            if action == jobs.IGNORE:
                continue
            if action == jobs.FAIL_JOB and found.fail_job is None and matched is not None:
                found.fail_job = _fail_job_message(pod, matched[1])
            found.failed.append(pod)
            index = failures.completion_index(pod)
            if per_index and index is not None:
                found.index_failures[index] = found.index_failures.get(index, 0) + 1
                if action == jobs.FAIL_INDEX:
                    found.fail_index.add(index)
        elif podutil.is_terminating(pod):
            found.terminating.append(pod)
        else:
            found.active.append(pod)
    return found


def _fail_job_message(pod: pod_pb2.Pod, rule: int) -> str:
    exit_ = failures.failing_exit(pod)
    where = f"{pod.metadata.namespace}/{pod.metadata.name}"
    if exit_ is None:
        return f"Pod {where} has condition matching FailJob rule at index {rule}"
    container, code = exit_
    return f"Container {container} for pod {where} failed with exit code {code} matching FailJob rule at index {rule}"


def _completed_indexes(job: batch_pb2.Job, mine: _Pods) -> set[int]:
    if job.spec.completion_mode != jobs.INDEXED:
        return set()
    found = {i for p in mine.succeeded if (i := failures.completion_index(p)) is not None and i < job.spec.completions}
    return found | {i for i in jobs.parse_indexes(job.status.completed_indexes) if i < job.spec.completions}


def _failed_indexes(job: batch_pb2.Job, mine: _Pods) -> set[int]:
    if not job.spec.HasField("backoff_limit_per_index"):
        return set()
    limit = job.spec.backoff_limit_per_index
    found = {i for i, n in mine.index_failures.items() if n > limit} | mine.fail_index
    return found | jobs.parse_indexes(job.status.failed_indexes)


def _target(
    job: batch_pb2.Job,
    status: batch_pb2.JobStatus,
    mine: _Pods,
    completed: set[int],
    failed_indexes: set[int],
    now: datetime,
    waits: list[float],
) -> tuple[str, str, str] | None:
    """(FailureTarget or SuccessCriteriaMet, reason, message) once the Job's outcome is decided."""
    for c in status.conditions:
        if c.type in (jobs.FAILURE_TARGET, jobs.SUCCESS_CRITERIA_MET) and c.status == "True":
            return c.type, c.reason, c.message
    spec = job.spec
    if mine.fail_job is not None:
        return jobs.FAILURE_TARGET, jobs.REASON_POD_FAILURE_POLICY, mine.fail_job
    if not spec.HasField("backoff_limit_per_index") and _past_backoff_limit(job, mine):
        return jobs.FAILURE_TARGET, jobs.REASON_BACKOFF_LIMIT, "Job has reached the specified backoff limit"
    started = as_datetime(status.start_time)
    if spec.HasField("active_deadline_seconds") and not spec.suspend and started is not None:
        left = spec.active_deadline_seconds - (now - started).total_seconds()
        if left <= 0:
            return jobs.FAILURE_TARGET, jobs.REASON_DEADLINE, "Job was active longer than specified deadline"
        waits.append(left)
    if spec.HasField("max_failed_indexes") and len(failed_indexes) > spec.max_failed_indexes:
        message = "Job has exceeded the specified maximum number of failed indexes"
        return jobs.FAILURE_TARGET, jobs.REASON_MAX_FAILED_INDEXES, message
    if failed_indexes and len(failed_indexes | completed) >= spec.completions:
        return jobs.FAILURE_TARGET, jobs.REASON_FAILED_INDEXES, "Job has failed indexes"
    if _succeeded(job, mine, completed):
        return jobs.SUCCESS_CRITERIA_MET, jobs.REASON_COMPLETIONS_REACHED, "Reached expected number of succeeded pods"
    return None


def _past_backoff_limit(job: batch_pb2.Job, mine: _Pods) -> bool:
    """More failed pods than backoffLimit; with restartPolicy OnFailure also as many container
    restarts in the running pods (any, with a limit of 0), as Kubernetes counts them."""
    limit = job.spec.backoff_limit
    if job.spec.template.spec.restart_policy == "OnFailure":
        restarts = sum(
            s.restart_count
            for p in mine.active
            for s in (*p.status.init_container_statuses, *p.status.container_statuses)
        )
        if restarts > 0 if limit == 0 else restarts >= limit:
            return True
    return len(mine.failed) > limit


def _succeeded(job: batch_pb2.Job, mine: _Pods, completed: set[int]) -> bool:
    spec = job.spec
    if spec.completion_mode == jobs.INDEXED:
        return len(completed) >= spec.completions
    if spec.HasField("completions"):
        return len(mine.succeeded) >= spec.completions
    return bool(mine.succeeded) and not mine.active


def _finish(status: batch_pb2.JobStatus, kind: str, reason: str, message: str, now: datetime) -> Event:
    """The final condition, once no pod of the Job runs any more."""
    if kind == jobs.SUCCESS_CRITERIA_MET:
        set_condition(status.conditions, jobs.COMPLETE, "True", reason=reason, message=message, now=now)
        status.completion_time.FromDatetime(now)
        return Event("Normal", "Completed", "Job completed")
    set_condition(status.conditions, jobs.FAILED, "True", reason=reason, message=message, now=now)
    return Event("Warning", reason, message)


def _suspended(status: batch_pb2.JobStatus, now: datetime) -> bool:
    """Set Suspended True; whether it changed."""
    before = next((c.status for c in status.conditions if c.type == jobs.SUSPENDED), None)
    set_condition(status.conditions, jobs.SUSPENDED, "True", reason="JobSuspended", message="Job suspended", now=now)
    return before != "True"


def _resumed(status: batch_pb2.JobStatus, now: datetime) -> bool:
    """A Suspended True condition turns False and startTime restarts; whether it did."""
    if not any(c.type == jobs.SUSPENDED and c.status == "True" for c in status.conditions):
        return False
    set_condition(status.conditions, jobs.SUSPENDED, "False", reason="JobResumed", message="Job resumed", now=now)
    status.start_time.FromDatetime(now)
    return True


def _manage(
    job: batch_pb2.Job, mine: _Pods, completed: set[int], failed_indexes: set[int], now: datetime, burst: int
) -> tuple[list[pod_pb2.Pod], list[pod_pb2.Pod], float | None]:
    """The pods to create and delete, and when to look again for the back-off."""
    spec = job.spec
    busy = len(mine.active) + (len(mine.terminating) if spec.pod_replacement_policy == jobs.FAILED_ONLY else 0)
    if spec.HasField("completions"):
        want = min(spec.parallelism, max(0, spec.completions - len(mine.succeeded)))
    else:  # a work queue: once a pod succeeded, no new ones; the running ones finish
        want = spec.parallelism
    delete = surplus(job, mine.active, completed, want, now)
    kept = [p for p in mine.active if p not in delete]
    wanted: list[int | None]
    if spec.completion_mode == jobs.INDEXED:
        taken = {failures.completion_index(p) for p in (*kept, *_replacing(job, mine))}
        todo = [i for i in range(spec.completions) if i not in completed | failed_indexes | taken]
        wanted = list(todo[: max(0, spec.parallelism - busy + len(delete))])
    elif spec.HasField("completions") or not mine.succeeded:
        wanted = [None] * max(0, want - busy + len(delete))
    else:
        wanted = []
    if not wanted:
        return [], delete, None
    ready_at = failures.next_pod_at(mine.succeeded, mine.failed, as_datetime(job.metadata.creation_timestamp) or now)
    if ready_at is not None and ready_at > now:
        return [], delete, (ready_at - now).total_seconds()
    return [new_pod(job, index) for index in wanted[:burst]], delete, None


def _replacing(job: batch_pb2.Job, mine: _Pods) -> list[pod_pb2.Pod]:
    """Terminating pods whose index waits for them to be gone (podReplacementPolicy Failed)."""
    return mine.terminating if job.spec.pod_replacement_policy == jobs.FAILED_ONLY else []


def _counts(
    status: batch_pb2.JobStatus,
    job: batch_pb2.Job,
    mine: _Pods,
    completed: set[int],
    failed_indexes: set[int],
    *,
    failing: bool,
) -> None:
    status.active = len(mine.active)
    status.ready = sum(podutil.is_ready(p) for p in mine.active)
    status.terminating = len(mine.terminating)
    status.succeeded = max(status.succeeded, len(mine.succeeded))
    # Pods deleted because the Job fails count as failed, as in Kubernetes.
    stopped = len(mine.active) + len(mine.terminating) if failing else 0
    status.failed = max(status.failed, len(mine.failed) + stopped)
    if job.spec.completion_mode == jobs.INDEXED:
        status.completed_indexes = jobs.format_indexes(completed)
    if job.spec.HasField("backoff_limit_per_index"):
        status.failed_indexes = jobs.format_indexes(failed_indexes)


def _after_finish(job: batch_pb2.Job, finished: datetime | None, now: datetime) -> JobActions:
    """A finished Job: deleted once ttlSecondsAfterFinished has passed."""
    if not job.spec.HasField("ttl_seconds_after_finished") or finished is None:
        return JobActions()
    left = job.spec.ttl_seconds_after_finished - (now - finished).total_seconds()
    if left <= 0:
        return JobActions(delete_job=True)
    return JobActions(requeue_after=left)
