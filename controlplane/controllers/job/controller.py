"""The Job controller's shell: watch caches in, `reconcile`, writes out.

Keys are Job keys ("ns/name"); a pod maps to its controller owner's key. A
sync reads the Job and its pods from the informers, reconciles, and applies
the actions: deletions with a uid precondition, creations through
`ObjectApi.create`, the status with a CAS write, events, and the Job's own
deletion once ttlSecondsAfterFinished has passed (the garbage collector then
deletes its pods). Expectations (the ReplicaSet controller's) keep it from
creating again before its cache shows its last creations: never more pods
than parallelism.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.index import ControllerIndex
from controlplane.controllers.job.reconcile import JobActions, reconcile
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.replicaset.controller import failures, is_temporary, owner_key
from controlplane.controllers.replicaset.expectations import Expectations
from controlplane.controllers.written import LatestWrites
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos import pods as podutil
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.kinds import meta

log = structlog.get_logger(__name__)


class JobController:
    name: str = "job"
    kinds: tuple[str, ...] = ("Job", "Pod")

    def __init__(
        self,
        api: ObjectApi,
        recorder: EventRecorder,
        *,
        workers: int = 2,
        now: Callable[[], datetime] = utcnow,
        expectations: Expectations | None = None,
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.workers = workers
        self.now = now
        self.expectations = expectations or Expectations()
        self._jobs: Informer | None = None
        self._pods: ControllerIndex[pod_pb2.Pod] | None = None
        # Our last status write per key, until the cache shows it (read-your-writes).
        self._written = LatestWrites(batch_pb2.Job)

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._jobs = informers["Job"]
        self._pods = ControllerIndex.shared(informers["Pod"], pod_pb2.Pod)
        informers["Pod"].add_listener(self._observe)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "Job":
            return [object_key(event.obj)]
        keys = {key for obj in (event.obj, event.prev) if obj is not None and (key := owner_key(obj, "Job"))}
        return keys

    def all_keys(self) -> Iterable[str]:
        return list(self._informer().items)

    def _informer(self) -> Informer:
        if self._jobs is None:
            raise RuntimeError("JobController used before bind()")
        return self._jobs

    def _observe(self, event: CacheEvent) -> None:
        key = owner_key(event.obj, "Job")
        if key is None:
            return
        if event.change is Change.ADDED and not podutil.is_terminating(event.obj):
            self.expectations.creation_observed(key)
        elif event.change is not Change.MODIFIED or podutil.is_terminating(event.obj):
            self.expectations.deletion_observed(key, object_key(event.obj))

    async def sync(self, key: str) -> float | None:
        job = self._latest(key)
        if job is None:
            self.expectations.forget(key)
            return None
        assert self._pods is not None
        manage = self.expectations.satisfied(key)
        actions = reconcile(job, self._pods.owned_by(job.metadata.uid), now=self.now(), manage=manage)
        if actions.delete_job:
            await self._delete_job(job)
            return None
        await self._delete_pods(key, job, actions.delete)
        await self._create_pods(key, job, actions.create)
        if actions.status is not None:
            await self._write_status(job, actions.status)
        for event in actions.events:
            await self.recorder.record(job, event.type, event.reason, event.message)
        return self._again(key, manage, actions)

    def _latest(self, key: str) -> batch_pb2.Job | None:
        return self._written.latest(key, self._informer().items.get(key))

    def _again(self, key: str, manage: bool, actions: JobActions) -> float | None:
        delays = [
            d for d in (actions.requeue_after, None if manage else self.expectations.remaining(key)) if d is not None
        ]
        return min(delays) if delays else None

    async def _write_status(self, job: batch_pb2.Job, status: batch_pb2.JobStatus) -> None:
        updated = batch_pb2.Job()
        updated.CopyFrom(job)
        updated.status.CopyFrom(status)
        self._written.remember(object_key(job), await self.api.update_status(updated))
        log.debug(
            "job_status", job=object_key(job), active=status.active, succeeded=status.succeeded, failed=status.failed
        )

    async def _delete_job(self, job: batch_pb2.Job) -> None:
        m = job.metadata
        try:
            await self.api.delete("Job", m.namespace, m.name, uid=m.uid)
        except NotFoundError:
            return
        log.info("job_expired", job=object_key(job), ttl=job.spec.ttl_seconds_after_finished)

    async def _delete_pods(self, key: str, job: batch_pb2.Job, pods: Sequence[pod_pb2.Pod]) -> None:
        if not pods:
            return
        self.expectations.expect(key, deletes=[object_key(p) for p in pods])
        results = await asyncio.gather(*(self._delete_pod(p) for p in pods), return_exceptions=True)
        errors = failures(results)
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException) and not is_temporary(result):
                self.expectations.deletion_failed(key, object_key(pod))
        deleted = [p.metadata.name for p, r in zip(pods, results, strict=True) if not isinstance(r, BaseException)]
        log.info("job_pods_deleted", job=key, deleted=len(deleted), failed=len(errors))
        for name in deleted:
            await self.recorder.record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")
        if errors:
            await self.recorder.record(job, "Warning", "FailedDelete", f"Error deleting: {errors[0]}")
            raise errors[0]

    async def _delete_pod(self, pod: pod_pb2.Pod) -> None:
        m = pod.metadata
        try:
            await self.api.delete("Pod", m.namespace, m.name, uid=m.uid)
        except NotFoundError:
            return

    async def _create_pods(self, key: str, job: batch_pb2.Job, pods: Sequence[pod_pb2.Pod]) -> None:
        if not pods:
            return
        self.expectations.expect(key, creates=len(pods))
        results = await asyncio.gather(*(self.api.create(p) for p in pods), return_exceptions=True)
        errors = failures(results)
        names = [meta(r).name for r in results if isinstance(r, Message)]
        log.info("job_pods_created", job=key, created=len(names), asked=len(pods))
        for name in names:
            await self.recorder.record(job, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        if errors:
            self.expectations.creations_failed(key, sum(not is_temporary(e) for e in errors))
            await self.recorder.record(job, "Warning", "FailedCreate", f"Error creating: {errors[0]}")
            raise errors[0]
