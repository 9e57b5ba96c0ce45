"""CronJob reconciliation, pure: a CronJob, its Jobs and `now` in; the Job to start, the Jobs to
delete and the status out. Kubernetes' CronJob controller (v2), step by step:

1. status.active: Jobs of the CronJob that finished leave it (a Complete one
   moves lastSuccessfulTime to its completionTime; event SawCompletedJob),
   running ones missing from it are added, gone ones dropped.
2. history: finished Jobs beyond successfulJobsHistoryLimit (Complete) and
   failedJobsHistoryLimit (Failed) are deleted, oldest first.
3. suspend: nothing is started.
4. the due time: the most recent schedule time in (lastScheduleTime, or the
   CronJob's creation; not before now minus startingDeadlineSeconds, now]. Only
   that one is started, never the earlier missed ones; more than 100 missed
   times is a TooManyMissedTimes warning. A due time older than
   startingDeadlineSeconds is a MissSchedule warning and is not started.
5. a due time that already has its Job (same name) or equals
   lastScheduleTime is done: run once, whichever leader looks.
6. concurrencyPolicy: Forbid starts nothing while a Job is active (the due
   time stays due, within the deadline, until it ends); Replace deletes the
   active Jobs first; Allow runs them side by side.
7. the Job: `<cronjob>-<scheduled time in minutes since the epoch>`, from
   jobTemplate, owned by the CronJob, annotated with the scheduled time; it is
   added to status.active and lastScheduleTime becomes the due time.

`requeue_after` is the time to the next schedule time (plus a little).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from protos import cron, jobs, owners
from protos.corral.v1 import batch_pb2, meta_pb2
from protos.pods import is_terminating
from protos.times import as_datetime, format_time

# Kubernetes looks at no more than this many missed times before it warns.
MANY_MISSED = 100
# Added to the wait for the next schedule time so the sync lands after it.
NEXT_SKEW = 0.1


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class CronJobActions:
    create: batch_pb2.Job | None = None
    delete: tuple[batch_pb2.Job, ...] = ()
    # The new status, or None when it is unchanged.
    status: batch_pb2.CronJobStatus | None = None
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


def job_name(cron_job: batch_pb2.CronJob, scheduled: datetime) -> str:
    """Kubernetes' name for the Job of a schedule time: minutes since the epoch."""
    return f"{cron_job.metadata.name}-{int(scheduled.timestamp()) // 60}"


def reconcile(cron_job: batch_pb2.CronJob, owned: Iterable[batch_pb2.Job], *, now: datetime) -> CronJobActions:
    if is_terminating(cron_job):
        return CronJobActions()
    mine = [j for j in owned if owners.is_controlled_by(j, cron_job.metadata.uid)]
    status = batch_pb2.CronJobStatus()
    status.CopyFrom(cron_job.status)
    events = _track_active(status, mine)
    delete = _history(cron_job.spec, mine)
    spec = cron_job.spec
    create: batch_pb2.Job | None = None
    requeue: float | None = None
    schedule = _schedule(spec, events)
    if schedule is not None and not spec.suspend:
        create, replaced, more = _due(cron_job, schedule, status, mine, now)
        delete += tuple(j for j in replaced if j not in delete)
        events += more
        following = schedule.next_after(now)
        requeue = None if following is None else (following - now).total_seconds() + NEXT_SKEW
    return CronJobActions(
        create=create,
        delete=delete,
        status=None if status == cron_job.status else status,
        events=tuple(events),
        requeue_after=requeue,
    )


def _schedule(spec: batch_pb2.CronJobSpec, events: list[Event]) -> cron.Schedule | None:
    """The parsed schedule in its zone; None with a warning (Kubernetes' reasons) when either is bad."""
    try:
        zone = cron.zone(spec.time_zone if spec.HasField("time_zone") else None)
    except cron.ScheduleError as e:
        events.append(Event("Warning", "UnknownTimeZone", f"invalid timeZone: {spec.time_zone!r}: {e}"))
        return None
    try:
        return cron.parse(spec.schedule, zone)
    except cron.ScheduleError as e:
        events.append(Event("Warning", "UnparseableSchedule", f"unparseable schedule: {spec.schedule!r}: {e}"))
        return None


def _track_active(status: batch_pb2.CronJobStatus, mine: list[batch_pb2.Job]) -> list[Event]:
    events: list[Event] = []
    by_uid = {j.metadata.uid: j for j in mine}
    kept: list[meta_pb2.ObjectReference] = []
    for ref in status.active:
        job = by_uid.get(ref.uid)
        if job is None:
            continue
        done = jobs.finished(job)
        if done is None:
            kept.append(ref)
            continue
        events.append(Event("Normal", "SawCompletedJob", f"Saw completed job: {job.metadata.name}, status: {done[0]}"))
        completed = as_datetime(job.status.completion_time)
        last = as_datetime(status.last_successful_time)
        if done[0] == jobs.COMPLETE and completed is not None and (last is None or completed > last):
            status.last_successful_time.FromDatetime(completed)
    listed = {r.uid for r in kept}
    for job in mine:
        if job.metadata.uid not in listed and jobs.finished(job) is None and not is_terminating(job):
            kept.append(_reference(job))
    if list(status.active) != kept:
        del status.active[:]
        status.active.extend(kept)
    return events


def _reference(job: batch_pb2.Job) -> meta_pb2.ObjectReference:
    m = job.metadata
    return meta_pb2.ObjectReference(
        api_version="batch/v1",
        kind="Job",
        namespace=m.namespace,
        name=m.name,
        uid=m.uid,
        resource_version=m.resource_version,
    )


def _history(spec: batch_pb2.CronJobSpec, mine: list[batch_pb2.Job]) -> tuple[batch_pb2.Job, ...]:
    """The oldest finished Jobs beyond the history limits."""
    delete: list[batch_pb2.Job] = []
    for kind, limit in (
        (jobs.COMPLETE, spec.successful_jobs_history_limit),
        (jobs.FAILED, spec.failed_jobs_history_limit),
    ):
        done = [j for j in mine if (f := jobs.finished(j)) is not None and f[0] == kind and not is_terminating(j)]
        done.sort(key=_started)
        delete += done[: max(0, len(done) - limit)]
    return tuple(delete)


def _started(job: batch_pb2.Job) -> tuple[float, str]:
    at = as_datetime(job.status.start_time) or as_datetime(job.metadata.creation_timestamp)
    return (at.timestamp() if at is not None else 0.0), job.metadata.name


def _due(
    cron_job: batch_pb2.CronJob,
    schedule: cron.Schedule,
    status: batch_pb2.CronJobStatus,
    mine: list[batch_pb2.Job],
    now: datetime,
) -> tuple[batch_pb2.Job | None, list[batch_pb2.Job], list[Event]]:
    """The Job to start for the due time, the Jobs Replace deletes, and events."""
    spec = cron_job.spec
    events: list[Event] = []
    earliest = as_datetime(status.last_schedule_time) or as_datetime(cron_job.metadata.creation_timestamp) or now
    if spec.HasField("starting_deadline_seconds"):
        earliest = max(earliest, now - timedelta(seconds=spec.starting_deadline_seconds))
    scheduled, missed = _most_recent(schedule, earliest, now)
    if missed > MANY_MISSED:
        events.append(
            Event(
                "Warning",
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            )
        )
    if scheduled is None:
        return None, [], events
    if (
        spec.HasField("starting_deadline_seconds")
        and scheduled + timedelta(seconds=spec.starting_deadline_seconds) < now
    ):
        events.append(
            Event("Warning", "MissSchedule", f"Missed scheduled time to start a job: {format_time(scheduled)}")
        )
        return None, [], events
    name = job_name(cron_job, scheduled)
    if any(j.metadata.name == name for j in mine) or as_datetime(status.last_schedule_time) == scheduled:
        _scheduled(status, scheduled)
        return None, [], events
    active = [j for j in mine if any(r.uid == j.metadata.uid for r in status.active)]
    replaced: list[batch_pb2.Job] = []
    if active and spec.concurrency_policy == jobs.FORBID:
        message = "Not starting job because prior execution is running and concurrency policy is Forbid"
        events.append(Event("Normal", "JobAlreadyActive", message))
        return None, [], events
    if active and spec.concurrency_policy == jobs.REPLACE:
        replaced = active
        del status.active[:]
    job = new_job(cron_job, name, scheduled, schedule)
    status.active.append(
        meta_pb2.ObjectReference(api_version="batch/v1", kind="Job", namespace=job.metadata.namespace, name=name)
    )
    _scheduled(status, scheduled)
    return job, replaced, events


def _scheduled(status: batch_pb2.CronJobStatus, scheduled: datetime) -> None:
    last = as_datetime(status.last_schedule_time)
    if last is None or scheduled > last:
        status.last_schedule_time.FromDatetime(scheduled)


def _most_recent(schedule: cron.Schedule, earliest: datetime, now: datetime) -> tuple[datetime | None, int]:
    """The latest schedule time in (earliest, now] and how many there are (counting stops past 100)."""
    latest: datetime | None = None
    count = 0
    for at in schedule.times_between(earliest, now):
        latest, count = at, count + 1
        if count > MANY_MISSED:
            # Jump to the end: only the most recent time is ever started.
            return _last_before(schedule, now, latest), count
    return latest, count


def _last_before(schedule: cron.Schedule, now: datetime, after: datetime) -> datetime:
    """The latest schedule time in (after, now], searching back from now a widening window."""
    window = timedelta(minutes=1)
    while True:
        start = max(after, now - window)
        found = None
        for found in schedule.times_between(start, now):  # noqa: B007 - the last one is wanted
            pass
        if found is not None or start == after:
            return found or after
        window *= 4


def new_job(cron_job: batch_pb2.CronJob, name: str, scheduled: datetime, schedule: cron.Schedule) -> batch_pb2.Job:
    """The Job for a schedule time, annotated with it (in the schedule's zone, RFC 3339)."""
    job = jobs.job_from_cron_job(cron_job, name)
    job.metadata.annotations[jobs.SCHEDULED_AT] = scheduled.astimezone(schedule.zone).isoformat().replace("+00:00", "Z")
    return job
