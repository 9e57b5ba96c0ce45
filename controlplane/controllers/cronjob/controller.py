"""The CronJob controller's shell: watch caches in, `reconcile`, writes out.

Keys are CronJob keys; a Job maps to its controller owner's key. A sync reads
the CronJob and its Jobs from the informers, reconciles, deletes Jobs (uid
precondition; the garbage collector then deletes their pods), creates the
due Job and writes the status (CAS). The Job's name is fixed by its schedule
time, so a second attempt — a retry, or another leader after a failover that
did not see the first one's write yet — meets AlreadyExists and starts
nothing twice. A sync that comes before the cache shows the last status
write starts from that write (`written.LatestWrites`). The next sync is asked
for at the next schedule time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import structlog

from controlplane.apiserver.errors import AlreadyExistsError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.cronjob.reconcile import CronJobActions, reconcile
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.index import ControllerIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.replicaset.controller import owner_key
from controlplane.controllers.written import LatestWrites
from controlplane.informer import CacheEvent, Informer, object_key
from protos import owners
from protos.corral.v1 import batch_pb2
from protos.kinds import by_kind

log = structlog.get_logger(__name__)


class CronJobController:
    name: str = "cronjob"
    kinds: tuple[str, ...] = ("CronJob", "Job")

    def __init__(
        self, api: ObjectApi, recorder: EventRecorder, *, workers: int = 1, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.workers = workers
        self.now = now
        self._cron_jobs: Informer | None = None
        self._jobs: ControllerIndex[batch_pb2.Job] | None = None
        # Our last status write per key, until the cache shows it (read-your-writes).
        self._written = LatestWrites(batch_pb2.CronJob)

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._cron_jobs = informers["CronJob"]
        self._jobs = ControllerIndex.shared(informers["Job"], batch_pb2.Job)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "CronJob":
            return [object_key(event.obj)]
        return {key for obj in (event.obj, event.prev) if obj is not None and (key := owner_key(obj, "CronJob"))}

    def all_keys(self) -> Iterable[str]:
        return list(self._informer().items)

    def _informer(self) -> Informer:
        if self._cron_jobs is None:
            raise RuntimeError("CronJobController used before bind()")
        return self._cron_jobs

    async def sync(self, key: str) -> float | None:
        cron_job = self._written.latest(key, self._informer().items.get(key))
        if cron_job is None:
            return None
        assert self._jobs is not None
        actions = reconcile(cron_job, self._jobs.owned_by(cron_job.metadata.uid), now=self.now())
        for job in actions.delete:
            await self._delete(cron_job, job)
        status = actions.status
        if actions.create is not None:
            created = await self._create(cron_job, actions.create)
            if status is not None and created is not None:
                for ref in status.active:
                    if ref.name == created.metadata.name and not ref.uid:
                        ref.uid = created.metadata.uid
        if status is not None:
            updated = batch_pb2.CronJob()
            updated.CopyFrom(cron_job)
            updated.status.CopyFrom(status)
            self._written.remember(key, await self.api.update_status(updated))
        for event in actions.events:
            await self.recorder.record(cron_job, event.type, event.reason, event.message)
        return actions.requeue_after

    async def _delete(self, cron_job: batch_pb2.CronJob, job: batch_pb2.Job) -> None:
        m = job.metadata
        try:
            await self.api.delete("Job", m.namespace, m.name, uid=m.uid)
        except NotFoundError:
            return
        log.info("cron_job_deleted_job", cron_job=object_key(cron_job), job=m.name)
        await self.recorder.record(cron_job, "Normal", "SuccessfulDelete", f"Deleted job {m.name}")

    async def _create(self, cron_job: batch_pb2.CronJob, job: batch_pb2.Job) -> batch_pb2.Job | None:
        m = job.metadata
        try:
            created = await self.api.create(job)
        except AlreadyExistsError:
            existing = await self.api.find(by_kind("Job"), m.namespace, m.name)
            if isinstance(existing, batch_pb2.Job) and owners.is_controlled_by(existing, cron_job.metadata.uid):
                log.info("cron_job_run_exists", cron_job=object_key(cron_job), job=m.name)
                return existing
            await self.recorder.record(
                cron_job, "Warning", "FailedCreate", f"Error creating job: {m.name} exists and is not ours"
            )
            return None
        assert isinstance(created, batch_pb2.Job)
        log.info("cron_job_started", cron_job=object_key(cron_job), job=m.name)
        await self.recorder.record(cron_job, "Normal", "SuccessfulCreate", f"Created job {m.name}")
        return created


__all__ = ["CronJobActions", "CronJobController"]
