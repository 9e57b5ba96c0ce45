"""CronJob reconcile over a driven clock: one Job per due time, missed runs, concurrency policies,
history limits, suspend, and a leader change across a due time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.cronjob.reconcile import CronJobActions, job_name, reconcile
from protos import jobs
from protos.conditions import set_condition
from protos.corral.v1 import batch_pb2
from protos.kinds import by_kind

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def cron_job(schedule: str = "*/5 * * * *", **spec: Any) -> batch_pb2.CronJob:
    cj = batch_pb2.CronJob()
    cj.metadata.name, cj.metadata.namespace, cj.metadata.uid = "backup", "default", "cj-uid"
    cj.metadata.creation_timestamp.FromDatetime(T0)
    cj.spec.schedule = schedule
    for key, value in spec.items():
        setattr(cj.spec, key, value)
    cj.spec.job_template.metadata.labels["app"] = "backup"
    pod = cj.spec.job_template.spec.template.spec
    pod.restart_policy = "Never"
    pod.containers.add(name="dump", image="busybox:1")
    apply_defaults(by_kind("CronJob"), cj)
    return cj


class Cluster:
    """A CronJob and its Jobs as the controller's writes leave them (a Job's name is unique, as in a store)."""

    def __init__(self, cj: batch_pb2.CronJob) -> None:
        self.cron_job = cj
        self.jobs: dict[str, batch_pb2.Job] = {}
        self.created: list[str] = []
        self.events: list[str] = []

    def sync(self, now: datetime, *, write_status: bool = True) -> CronJobActions:
        actions = reconcile(self.cron_job, list(self.jobs.values()), now=now)
        for job in actions.delete:
            del self.jobs[job.metadata.name]
        if actions.create is not None:
            job = actions.create
            if job.metadata.name not in self.jobs:  # a second create would meet AlreadyExists
                job.metadata.uid = f"uid-{job.metadata.name}"
                job.metadata.creation_timestamp.FromDatetime(now)
                job.status.start_time.FromDatetime(now)
                self.jobs[job.metadata.name] = job
                self.created.append(job.metadata.name)
        if actions.status is not None and write_status:
            self.cron_job.status.CopyFrom(actions.status)
            for ref in self.cron_job.status.active:
                ref.uid = ref.uid or f"uid-{ref.name}"
        self.events += [e.reason for e in actions.events]
        return actions

    def finish(self, name: str, type_: str, at: datetime) -> None:
        job = self.jobs[name]
        set_condition(job.status.conditions, type_, "True", reason="x", message="x", now=at)
        if type_ == jobs.COMPLETE:
            job.status.completion_time.FromDatetime(at)

    def run(self, start: datetime, minutes: int, *, step: int = 20, finish_after: int | None = 0) -> None:
        """Sync every `step` seconds; each Job finishes (Complete) `finish_after` seconds after it started."""
        now = start
        while now <= start + timedelta(minutes=minutes):
            if finish_after is not None:
                for job in list(self.jobs.values()):
                    started = job.status.start_time.ToDatetime(tzinfo=UTC)
                    if jobs.finished(job) is None and now >= started + timedelta(seconds=finish_after):
                        self.finish(job.metadata.name, jobs.COMPLETE, now)
            self.sync(now)
            now += timedelta(seconds=step)


def test_every_5_minutes_over_60_simulated_minutes_makes_exactly_12_jobs() -> None:
    c = Cluster(cron_job(successful_jobs_history_limit=100))
    c.run(T0 + timedelta(seconds=1), 60)
    assert len(c.created) == 12
    first = int((T0 + timedelta(minutes=5)).timestamp()) // 60
    assert c.created[0] == f"backup-{first}" and c.created[1] == f"backup-{first + 5}"


def test_a_job_is_made_from_the_template_and_owned_by_the_cron_job() -> None:
    c = Cluster(cron_job())
    actions = c.sync(T0 + timedelta(minutes=5))
    job = actions.create
    assert job is not None and job.metadata.name == job_name(c.cron_job, T0 + timedelta(minutes=5))
    assert job.metadata.labels["app"] == "backup" and job.metadata.owner_references[0].kind == "CronJob"
    assert job.metadata.annotations[jobs.SCHEDULED_AT] == "2026-03-01T12:05:00Z"
    assert job.spec.template.spec.containers[0].name == "dump"
    assert c.cron_job.status.last_schedule_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=5)
    assert [r.name for r in c.cron_job.status.active] == [job.metadata.name]
    assert actions.requeue_after == pytest.approx(300.1)


def test_completed_jobs_leave_active_and_set_last_successful_time() -> None:
    c = Cluster(cron_job())
    c.sync(T0 + timedelta(minutes=5))
    c.finish(c.created[0], jobs.COMPLETE, T0 + timedelta(minutes=6))
    c.sync(T0 + timedelta(minutes=6))
    assert list(c.cron_job.status.active) == []
    assert c.cron_job.status.last_successful_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=6)
    assert "SawCompletedJob" in c.events


def test_forbid_skips_while_one_runs_and_starts_the_due_run_when_it_ends() -> None:
    c = Cluster(cron_job(concurrency_policy="Forbid"))
    c.sync(T0 + timedelta(minutes=5))
    actions = c.sync(T0 + timedelta(minutes=10))
    assert actions.create is None and "JobAlreadyActive" in c.events
    c.run(T0 + timedelta(minutes=10, seconds=20), 14, finish_after=None)
    assert len(c.created) == 1  # still running: every due time skipped
    c.finish(c.created[0], jobs.COMPLETE, T0 + timedelta(minutes=25))
    c.sync(T0 + timedelta(minutes=25, seconds=30))
    assert len(c.created) == 2 and c.created[1] == job_name(c.cron_job, T0 + timedelta(minutes=25))


def test_replace_deletes_the_running_job_and_starts_the_new_one() -> None:
    c = Cluster(cron_job(concurrency_policy="Replace"))
    c.sync(T0 + timedelta(minutes=5))
    actions = c.sync(T0 + timedelta(minutes=10))
    assert [j.metadata.name for j in actions.delete] == [c.created[0]]
    assert actions.create is not None
    assert list(c.jobs) == [c.created[1]] and [r.name for r in c.cron_job.status.active] == [c.created[1]]


def test_allow_runs_jobs_side_by_side() -> None:
    c = Cluster(cron_job())
    c.run(T0 + timedelta(seconds=1), 30, finish_after=None)
    assert len(c.created) == 6 and len(c.cron_job.status.active) == 6


@pytest.mark.parametrize(
    ("successful", "failed"),
    [pytest.param(3, 1, id="defaults"), pytest.param(0, 0, id="none-kept"), pytest.param(1, 2, id="custom")],
)
def test_history_limits_keep_the_newest_finished_jobs(successful: int, failed: int) -> None:
    c = Cluster(cron_job(successful_jobs_history_limit=successful, failed_jobs_history_limit=failed))
    now = T0
    for i in range(8):
        now += timedelta(minutes=5)
        c.sync(now)
        c.finish(c.created[-1], jobs.FAILED if i % 2 else jobs.COMPLETE, now + timedelta(seconds=30))
    c.sync(now + timedelta(minutes=1))
    kept = [(n, jobs.finished(j)[0]) for n, j in c.jobs.items()]  # type: ignore[index]
    assert [n for n, t in kept if t == jobs.COMPLETE] == [c.created[i] for i in (0, 2, 4, 6)][4 - successful :]
    assert [n for n, t in kept if t == jobs.FAILED] == [c.created[i] for i in (1, 3, 5, 7)][4 - failed :]


def test_suspend_starts_nothing() -> None:
    c = Cluster(cron_job(suspend=True))
    c.run(T0, 30)
    assert c.created == []


def test_a_control_plane_down_across_due_times_starts_only_the_most_recent_one_once() -> None:
    c = Cluster(cron_job())
    c.sync(T0 + timedelta(minutes=5))
    # Down from 12:06 to 12:33: the runs of 12:10 … 12:30 were missed.
    c.sync(T0 + timedelta(minutes=33))
    assert c.created[1:] == [job_name(c.cron_job, T0 + timedelta(minutes=30))]
    c.sync(T0 + timedelta(minutes=34))
    assert len(c.created) == 2


@pytest.mark.parametrize(
    ("deadline", "late", "started"),
    [
        pytest.param(None, 12, True, id="no-deadline"),
        pytest.param(900, 12, True, id="within-deadline"),
        pytest.param(600, 5, True, id="five-minutes-late-of-ten"),
        pytest.param(600, 15, False, id="past-deadline"),
        pytest.param(60, 12, False, id="short-deadline"),
    ],
)
def test_a_missed_run_starts_only_within_starting_deadline_seconds(
    deadline: int | None, late: int, started: bool
) -> None:
    spec = {} if deadline is None else {"starting_deadline_seconds": deadline}
    c = Cluster(cron_job("0 * * * *", **spec))
    c.sync(T0 + timedelta(hours=1, minutes=late))
    assert c.created == ([job_name(c.cron_job, T0 + timedelta(hours=1))] if started else [])


def test_more_than_100_missed_times_warns_and_starts_the_most_recent() -> None:
    c = Cluster(cron_job("* * * * *"))
    c.sync(T0 + timedelta(hours=5, seconds=30))
    assert "TooManyMissedTimes" in c.events
    assert c.created == [job_name(c.cron_job, T0 + timedelta(hours=5))]


def test_a_leader_change_across_a_due_time_starts_the_run_once() -> None:
    c = Cluster(cron_job())
    # The old leader created the Job of 12:05 and lost its lease before writing the status.
    c.sync(T0 + timedelta(minutes=5), write_status=False)
    assert len(c.created) == 1 and not c.cron_job.status.HasField("last_schedule_time")
    # The new leader looks after the due time: the Job exists under its name.
    actions = c.sync(T0 + timedelta(minutes=5, seconds=40))
    assert actions.create is None and len(c.created) == 1
    assert c.cron_job.status.last_schedule_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(minutes=5)
    assert [r.name for r in c.cron_job.status.active] == c.created


def test_a_second_leader_with_a_stale_cache_makes_the_same_name() -> None:
    """Without the first Job in its cache a second leader asks for the same name: the store refuses it."""
    cj = cron_job()
    first = reconcile(cj, [], now=T0 + timedelta(minutes=5))
    second = reconcile(cj, [], now=T0 + timedelta(minutes=5, seconds=30))
    assert first.create is not None and second.create is not None
    assert first.create.metadata.name == second.create.metadata.name


def test_a_time_zone_schedules_in_local_time() -> None:
    c = Cluster(cron_job("0 2 * * *", time_zone="Europe/Berlin"))
    c.sync(datetime(2026, 3, 2, 1, 0, 30, tzinfo=UTC))
    assert c.created == [job_name(c.cron_job, datetime(2026, 3, 2, 1, 0, tzinfo=UTC))]
    assert c.jobs[c.created[0]].metadata.annotations[jobs.SCHEDULED_AT] == "2026-03-02T02:00:00+01:00"


def test_a_time_zone_this_machine_does_not_know_is_a_warning_not_a_crash() -> None:
    c = Cluster(cron_job(time_zone="Mars/Olympus"))
    actions = c.sync(T0 + timedelta(minutes=5))
    assert actions.create is None and c.events == ["UnknownTimeZone"]
