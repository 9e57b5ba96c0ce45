"""The Job, CronJob and garbage collection controllers together, through the controller manager,
over the memory store, on a fake loop clock (tests/fakeclock.py) that also drives the controllers'
wall clock: an hour of CronJob schedule passes in a moment.

A tiny in-test "kubelet" runs every pod: Running at once, then Succeeded (or Failed, for a pod whose
first container's command is ["false"]) a few simulated seconds later, and deletes pods being deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.cronjob.controller import CronJobController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.job.controller import JobController
from controlplane.controllers.runner import ControllerManager
from controlplane.informer import CacheEvent, Informer
from controlplane.store import errors as store_errors
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import jobs
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.kinds import by_kind
from tests.fakeclock import on_fake_clock

POD, JOB, CRON_JOB = (by_kind(k) for k in ("Pod", "Job", "CronJob"))
T0 = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
RUN_SECONDS = 3.0


def wall_clock() -> Callable[[], datetime]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    return lambda: T0 + timedelta(seconds=loop.time() - start)


def job_spec(spec: batch_pb2.JobSpec, command: str = "true") -> None:
    pod = spec.template.spec
    pod.restart_policy = "Never"
    pod.containers.add(name="work", image="busybox:1", command=[command])


class RunningPeak:
    """The most pods running at once, at every store revision (no poll can miss one)."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.peak = 0
        informer.add_listener(self._on_event)

    def _on_event(self, event: CacheEvent) -> None:
        running = [
            p
            for p in self.informer.items.values()
            if isinstance(p, pod_pb2.Pod) and p.status.phase not in ("Succeeded", "Failed")
        ]
        self.peak = max(self.peak, len(running))


async def kubelet(objects: ObjectStore, now: Callable[[], datetime]) -> None:
    started: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    while True:
        pods, _ = await objects.list_all(POD, "default")
        for pod in pods:
            assert isinstance(pod, pod_pb2.Pod)
            with contextlib.suppress(store_errors.ConflictError, store_errors.NotFoundError):
                if pod.metadata.HasField("deletion_timestamp"):
                    await objects.delete(pod)
                elif pod.status.phase == "Pending":
                    pod.spec.node_name, pod.status.phase = "node-1", "Running"
                    started[pod.metadata.uid] = loop.time()
                    await objects.update(pod)
                elif pod.status.phase == "Running" and loop.time() - started[pod.metadata.uid] >= RUN_SECONDS:
                    code = 1 if list(pod.spec.containers[0].command) == ["false"] else 0
                    pod.status.phase = "Succeeded" if code == 0 else "Failed"
                    status = pod.status.container_statuses.add(name="work")
                    status.state.terminated.exit_code = code
                    status.state.terminated.finished_at.FromDatetime(now())
                    await objects.update(pod)
        await asyncio.sleep(0.5)


@dataclass
class Cluster:
    api: ObjectApi
    objects: ObjectStore
    peak: RunningPeak
    now: Callable[[], datetime]

    async def job(self, name: str) -> batch_pb2.Job:
        found = await self.objects.get(JOB, "default", name)
        assert isinstance(found, batch_pb2.Job)
        return found

    async def jobs(self) -> list[batch_pb2.Job]:
        found, _ = await self.objects.list_all(JOB, "default")
        return [j for j in found if isinstance(j, batch_pb2.Job)]

    async def pods(self) -> list[pod_pb2.Pod]:
        found, _ = await self.objects.list_all(POD, "default")
        return [p for p in found if isinstance(p, pod_pb2.Pod)]

    async def until(self, what: str, done: Callable[[], object], *, seconds: float = 600) -> None:
        async with asyncio.timeout(seconds):
            while not await done():  # type: ignore[misc]
                await asyncio.sleep(0.5)
        del what


@contextlib.asynccontextmanager
async def controllers(objects: ObjectStore, now: Callable[[], datetime]) -> AsyncIterator[None]:
    api = ObjectApi(objects, now=now)
    recorder = EventRecorder(api, "controller-manager", now=now)
    manager = ControllerManager(
        objects,
        [
            JobController(api, recorder, now=now),
            CronJobController(api, recorder, now=now),
            GarbageCollector(api, now=now),
        ],
    )
    task = asyncio.create_task(manager.run(), name="controllers")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for queue in manager.queues.values():
            queue.close()


@contextlib.asynccontextmanager
async def running_cluster(
    objects: ObjectStore | None = None, now: Callable[[], datetime] | None = None
) -> AsyncIterator[Cluster]:
    objects = objects or ObjectStore(MemoryStore())
    now = now or wall_clock()
    peak = RunningPeak(Informer(objects, POD))
    tasks = [asyncio.create_task(peak.informer.run()), asyncio.create_task(kubelet(objects, now))]
    try:
        async with controllers(objects, now):
            yield Cluster(ObjectApi(objects, now=now), objects, peak, now)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def complete(job: batch_pb2.Job) -> bool:
    return jobs.condition(job, jobs.COMPLETE) is not None


@on_fake_clock
async def test_a_job_of_3_completions_2_at_a_time_completes_with_3_succeeded_never_more_than_2_running() -> None:
    async with running_cluster() as c:
        job = batch_pb2.Job()
        job.metadata.name = "pi"
        job.spec.completions, job.spec.parallelism = 3, 2
        job_spec(job.spec)
        await c.api.create(job)

        async def done() -> bool:
            return complete(await c.job("pi"))

        await c.until("the Job completes", done)
        finished = await c.job("pi")
        assert (finished.status.succeeded, finished.status.failed, finished.status.active) == (3, 0, 0)
        assert c.peak.peak == 2 and len(await c.pods()) == 3


@on_fake_clock
async def test_a_failing_job_with_backoff_limit_2_fails_after_3_pods() -> None:
    async with running_cluster() as c:
        job = batch_pb2.Job()
        job.metadata.name = "fails"
        job.spec.backoff_limit = 2
        job_spec(job.spec, "false")
        await c.api.create(job)

        async def done() -> bool:
            return jobs.condition(await c.job("fails"), jobs.FAILED) is not None

        await c.until("the Job fails", done)
        failed = await c.job("fails")
        assert jobs.condition(failed, jobs.FAILED).reason == "BackoffLimitExceeded"  # type: ignore[union-attr]
        assert failed.status.failed == 3 and len(await c.pods()) == 3


@on_fake_clock
async def test_ttl_after_finished_deletes_the_job_and_the_collector_its_pods() -> None:
    async with running_cluster() as c:
        job = batch_pb2.Job()
        job.metadata.name = "short"
        job.spec.ttl_seconds_after_finished = 30
        job_spec(job.spec)
        await c.api.create(job)

        async def gone() -> bool:
            return not await c.jobs() and not await c.pods()

        await c.until("the Job and its pod are gone", gone)


def cron_job(schedule: str, **spec: object) -> batch_pb2.CronJob:
    cj = batch_pb2.CronJob()
    cj.metadata.name = "backup"
    cj.spec.schedule = schedule
    for key, value in spec.items():
        setattr(cj.spec, key, value)
    job_spec(cj.spec.job_template.spec)
    return cj


@on_fake_clock
async def test_every_5_minutes_for_an_hour_makes_12_jobs_and_keeps_the_history_limit() -> None:
    async with running_cluster() as c:
        await c.api.create(cron_job("*/5 * * * *", successful_jobs_history_limit=2))
        made: set[str] = set()

        async def hour_passed() -> bool:
            made.update(j.metadata.name for j in await c.jobs())
            return c.now() >= T0 + timedelta(minutes=60, seconds=10)

        await c.until("an hour passes", hour_passed, seconds=4000)
        assert len(made) == 12
        kept = await c.jobs()
        assert len(kept) <= 3 and sum(complete(j) for j in kept) <= 2
        stored = await c.objects.get(CRON_JOB, "default", "backup")
        assert isinstance(stored, batch_pb2.CronJob) and stored.status.HasField("last_successful_time")


@on_fake_clock
async def test_a_control_plane_down_across_a_due_time_starts_the_missed_run_once() -> None:
    objects = ObjectStore(MemoryStore())
    now = wall_clock()
    api = ObjectApi(objects, now=now)
    await api.create(cron_job("*/10 * * * *"))
    # Down until 12:25: the 12:10 and 12:20 runs were missed; only 12:20 starts, once.
    await asyncio.sleep(25 * 60)
    async with running_cluster(objects, now) as c:

        async def started() -> bool:
            return bool(await c.jobs())

        await c.until("the missed run starts", started)
        await asyncio.sleep(60)
        names = [j.metadata.name for j in await c.jobs()]
        assert names == [f"backup-{int(datetime(2026, 3, 1, 12, 20, tzinfo=UTC).timestamp()) // 60}"]
    # Another leader takes over before the next due time: nothing starts twice.
    async with running_cluster(objects, now) as c:
        await asyncio.sleep(60)
        assert len(await c.jobs()) == 1


async def test_a_second_attempt_at_a_run_meets_already_exists_and_starts_nothing() -> None:
    """A leader whose cache has not yet seen the Job of a due time asks for the same name again."""
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    created = await api.create(cron_job("*/5 * * * *"))
    assert isinstance(created, batch_pb2.CronJob)
    controller = CronJobController(api, EventRecorder(api, "cronjob-controller"))
    run = jobs.job_from_cron_job(created, "backup-29539445")
    first = await controller._create(created, run)
    again = await controller._create(created, run)
    assert first is not None and again is not None and again.metadata.uid == first.metadata.uid
    assert [j.metadata.name for j in (await objects.list_all(JOB, "default"))[0]] == ["backup-29539445"]
    stranger = batch_pb2.Job()
    stranger.CopyFrom(run)
    stranger.metadata.name = "backup-29539450"
    del stranger.metadata.owner_references[:]
    await api.create(stranger)
    assert await controller._create(created, jobs.job_from_cron_job(created, "backup-29539450")) is None
