"""Facts about Jobs and CronJobs (batch/v1) that several rooms share. Pure code: no I/O.

Kubernetes' names (labels, annotations, condition types and reasons, policy
values), the defaults, whether a Job has finished, the compact index lists
of an Indexed Job's status (`"1,3-5"`), and a Job from a CronJob's template.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from protos import owners
from protos.corral.v1 import batch_pb2, meta_pb2
from protos.times import as_datetime

# Labels and annotations the API server and the Job controller put on a Job's pods.
CONTROLLER_UID: Final = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID: Final = "controller-uid"
JOB_NAME: Final = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME: Final = "job-name"
COMPLETION_INDEX: Final = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV: Final = "JOB_COMPLETION_INDEX"
# On a Job made by a CronJob: the time it was scheduled for (RFC 3339).
SCHEDULED_AT: Final = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# On a Job made by `corral create job --from=cronjob/NAME`.
INSTANTIATE: Final = "cronjob.kubernetes.io/instantiate"

NON_INDEXED: Final = "NonIndexed"
INDEXED: Final = "Indexed"
COMPLETION_MODES: Final = (NON_INDEXED, INDEXED)

TERMINATING_OR_FAILED: Final = "TerminatingOrFailed"
FAILED_ONLY: Final = "Failed"
POD_REPLACEMENT_POLICIES: Final = (TERMINATING_OR_FAILED, FAILED_ONLY)

FAIL_JOB: Final = "FailJob"
FAIL_INDEX: Final = "FailIndex"
IGNORE: Final = "Ignore"
COUNT: Final = "Count"
POD_FAILURE_ACTIONS: Final = (FAIL_JOB, FAIL_INDEX, IGNORE, COUNT)

ALLOW: Final = "Allow"
FORBID: Final = "Forbid"
REPLACE: Final = "Replace"
CONCURRENCY_POLICIES: Final = (ALLOW, FORBID, REPLACE)

# Job condition types and reasons (Kubernetes').
COMPLETE: Final = "Complete"
FAILED: Final = "Failed"
SUSPENDED: Final = "Suspended"
FAILURE_TARGET: Final = "FailureTarget"
SUCCESS_CRITERIA_MET: Final = "SuccessCriteriaMet"
REASON_BACKOFF_LIMIT: Final = "BackoffLimitExceeded"
REASON_DEADLINE: Final = "DeadlineExceeded"
REASON_POD_FAILURE_POLICY: Final = "PodFailurePolicy"
REASON_FAILED_INDEXES: Final = "FailedIndexes"
REASON_MAX_FAILED_INDEXES: Final = "MaxFailedIndexesExceeded"
REASON_COMPLETIONS_REACHED: Final = "CompletionsReached"

DEFAULT_BACKOFF_LIMIT: Final = 6
MAX_INT32: Final = 2**31 - 1
DEFAULT_SUCCESSFUL_HISTORY: Final = 3
DEFAULT_FAILED_HISTORY: Final = 1
# Indexed Jobs: at most this many completions (and parallelism), as Kubernetes.
MAX_INDEXED_COMPLETIONS: Final = 100_000
# A CronJob's name leaves room for the 11 characters of its Jobs' suffix ("-" and the minutes).
MAX_CRON_JOB_NAME: Final = 52


def default_job_spec(spec: batch_pb2.JobSpec) -> None:
    """Kubernetes' SetDefaults_Job (the pod template is defaulted by the caller)."""
    if not spec.HasField("completions") and not spec.HasField("parallelism"):
        spec.completions = 1
    if not spec.HasField("parallelism"):
        spec.parallelism = 1
    if not spec.HasField("backoff_limit"):
        spec.backoff_limit = MAX_INT32 if spec.HasField("backoff_limit_per_index") else DEFAULT_BACKOFF_LIMIT
    if not spec.completion_mode:
        spec.completion_mode = NON_INDEXED
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.pod_replacement_policy:
        spec.pod_replacement_policy = FAILED_ONLY if spec.HasField("pod_failure_policy") else TERMINATING_OR_FAILED
    for rule in spec.pod_failure_policy.rules:
        for pattern in rule.on_pod_conditions:
            if not pattern.status:
                pattern.status = "True"


def default_cron_job_spec(spec: batch_pb2.CronJobSpec) -> None:
    if not spec.concurrency_policy:
        spec.concurrency_policy = ALLOW
    if not spec.HasField("suspend"):
        spec.suspend = False
    if not spec.HasField("successful_jobs_history_limit"):
        spec.successful_jobs_history_limit = DEFAULT_SUCCESSFUL_HISTORY
    if not spec.HasField("failed_jobs_history_limit"):
        spec.failed_jobs_history_limit = DEFAULT_FAILED_HISTORY


def condition(job: batch_pb2.Job, type_: str) -> meta_pb2.Condition | None:
    """The Job's condition of `type_` when it is True."""
    for c in job.status.conditions:
        if c.type == type_ and c.status == "True":
            return c
    return None


def finished(job: batch_pb2.Job) -> tuple[str, datetime | None] | None:
    """("Complete" or "Failed", when) once the Job has finished, else None."""
    for type_ in (COMPLETE, FAILED):
        c = condition(job, type_)
        if c is not None:
            return type_, as_datetime(c.last_transition_time)
    return None


def format_indexes(indexes: Iterable[int]) -> str:
    """Sorted indexes as Kubernetes writes them: `1,3-5,7`."""
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_indexes(text: str) -> set[int]:
    """The indexes in `1,3-5,7` (what does not parse is left out)."""
    found: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            found.update(range(int(low), int(high or low) + 1))
    return found


def job_from_cron_job(cron_job: batch_pb2.CronJob, name: str) -> batch_pb2.Job:
    """A Job from a CronJob's jobTemplate (its labels, annotations and spec), owned by the CronJob:
    what the CronJob controller starts and what `kubectl create job --from=cronjob/…` makes."""
    template = cron_job.spec.job_template
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    m = job.metadata
    m.name, m.namespace = name, cron_job.metadata.namespace
    m.labels.update(template.metadata.labels)
    m.annotations.update(template.metadata.annotations)
    m.owner_references.append(owners.owner_reference(cron_job))
    job.spec.CopyFrom(template.spec)
    return job
