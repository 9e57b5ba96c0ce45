"""The ReplicaSet controller's shell: watch caches in, `reconcile`, writes out.

Keys are ReplicaSet keys ("ns/name"); a pod maps to its controller owner's key
(an orphan to every ReplicaSet of its namespace whose selector matches it, for
adoption). A sync reads the ReplicaSet and its namespace's pods from the
informers, reconciles, and applies the actions: adoption and release with CAS
pod updates, deletions with a uid precondition, creations through
`ObjectApi.create` in slow-start batches (1, 2, 4, … as Kubernetes does: a
failing batch stops the rest), and the status with a CAS write. A conflict is
raised so the work queue retries on fresh state.

Expectations (see `expectations`) keep it from acting on a cache that has not
yet caught up with its own creations and deletions.

A ReplicaSet with only counting to do (nothing to create or delete, or its
expectations not yet met: its status follows its pods) is paced: changes after
a sync wait `PACE` times that sync's counting (its pure part), at most
`MAX_WINDOW` s, so each key's counting takes at most about 1/`PACE` of the
loop however many pods it has (10,000 pods turning Ready, or 500 deletions
being observed, are otherwise an O(pods) count every 100 ms window). The pod
event that meets its expectations, and a new spec, give the key back the
common window: creating and deleting are not slowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver import labels
from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.index import NamespaceIndex, PodFactsIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.replicaset.expectations import Expectations
from controlplane.controllers.replicaset.reconcile import BURST, ReplicaSetActions, reconcile_facts
from controlplane.controllers.written import LatestWrites
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos import owners
from protos import pods as podutil
from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.kinds import meta

log = structlog.get_logger(__name__)

# The coalescing window of a key with only counting to do: this many times its last count, at most MAX_WINDOW s.
PACE = 50.0
MAX_WINDOW = 1.0


def is_temporary(error: BaseException) -> bool:
    """Whether the write may have happened anyway (its outcome is unknown)."""
    return bool(getattr(error, "temporary", False)) or isinstance(error, TimeoutError)


def failures(results: Sequence[object]) -> list[BaseException]:
    """The exceptions among `gather(..., return_exceptions=True)` results; cancellation re-raised."""
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if isinstance(error, asyncio.CancelledError):
            raise error
    return errors


def owner_key(obj: Message, kind: str) -> str | None:
    """The key of the object's controller owner if it is of `kind`."""
    ref = owners.controller_ref(obj)
    if ref is None or ref.kind != kind:
        return None
    return f"{meta(obj).namespace}/{ref.name}"


class ReplicaSetController:
    name: str = "replicaset"
    kinds: tuple[str, ...] = ("ReplicaSet", "Pod")

    def __init__(
        self,
        api: ObjectApi,
        recorder: EventRecorder,
        *,
        workers: int = 4,
        now: Callable[[], datetime] = utcnow,
        expectations: Expectations | None = None,
        burst: int = BURST,
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.workers = workers
        self.now = now
        self.expectations = expectations or Expectations()
        self.burst = burst
        self._sets: Informer | None = None
        # Our last status write per key, until the cache shows it (read-your-writes).
        self._written = LatestWrites(workloads_pb2.ReplicaSet)
        self._pods: PodFactsIndex | None = None
        self._sets_by_ns: NamespaceIndex[workloads_pb2.ReplicaSet] | None = None
        self._queue: WorkQueue | None = None
        # The monotonic clock the counting is timed with (a parameter for tests).
        self.timer: Callable[[], float] = time.perf_counter

    # -- wiring -----------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        self._queue = queue
        self._sets = informers["ReplicaSet"]
        self._sets_by_ns = NamespaceIndex(informers["ReplicaSet"], workloads_pb2.ReplicaSet)
        self._pods = PodFactsIndex.shared(informers["Pod"])
        # Registered before the manager's enqueueing listener: expectations are
        # lowered before the key is queued.
        informers["Pod"].add_listener(self._observe)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "ReplicaSet":
            set_key = object_key(event.obj)
            if event.prev is None or meta(event.prev).generation != meta(event.obj).generation:
                self._pace(set_key, 0.0)  # a new spec (a scale) is acted on without the paced window
            return [set_key]
        keys: set[str] = set()
        for obj in (event.obj, event.prev):
            if obj is None:
                continue
            key = owner_key(obj, "ReplicaSet")
            if key is not None:
                keys.add(key)
            elif owners.controller_ref(obj) is None and event.change is not Change.DELETED:
                keys.update(self._selecting(obj))
        return keys

    def all_keys(self) -> Iterable[str]:
        return list(self._informer().items)

    def _informer(self) -> Informer:
        if self._sets is None:
            raise RuntimeError("ReplicaSetController used before bind()")
        return self._sets

    def _selecting(self, pod: Message) -> list[str]:
        """ReplicaSets whose selector matches an orphan pod (they may adopt it)."""
        assert self._sets_by_ns is not None
        m = meta(pod)
        return [
            object_key(rs)
            for rs in self._sets_by_ns.in_namespace(m.namespace)
            if rs.spec.selector.match_labels or rs.spec.selector.match_expressions
            if labels.from_label_selector(rs.spec.selector).matches(m.labels)
        ]

    def _observe(self, event: CacheEvent) -> None:
        key = owner_key(event.obj, "ReplicaSet")
        if key is None:
            return
        pod_key = object_key(event.obj)
        met = False
        if event.change is Change.ADDED and not podutil.is_terminating(event.obj):
            met = self.expectations.creation_observed(key)
        elif event.change is not Change.MODIFIED or podutil.is_terminating(event.obj):
            met = self.expectations.deletion_observed(key, pod_key)
        if met:
            self._pace(key, 0.0)  # free to create or delete again: the next sync comes without the paced window

    # -- sync -------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        rs = self._latest(key)
        if rs is None:
            self.expectations.forget(key)
            self._pace(key, 0.0)
            return None
        assert self._pods is not None
        manage = self.expectations.satisfied(key)
        started = self.timer()
        candidates = [*self._pods.owned_by(rs.metadata.uid), *self._pods.orphans(rs.metadata.namespace)]
        actions = reconcile_facts(rs, candidates, now=self.now(), manage=manage, burst=self.burst)
        # Only counting to do until a pod changes what there is to manage (or expectations are met).
        counting = not manage or (not actions.create and not actions.delete)
        self._pace(key, min(MAX_WINDOW, PACE * (self.timer() - started)) if counting else 0.0)
        await self._claim(actions)
        await self._delete(key, rs, actions.delete)
        await self._create(key, rs, actions.create)
        if actions.status is not None:
            await self._write_status(rs, actions.status)
        return self._again(key, manage, actions)

    def _pace(self, key: str, window: float) -> None:
        if self._queue is not None:
            self._queue.pace(key, window)

    def _latest(self, key: str) -> workloads_pb2.ReplicaSet | None:
        return self._written.latest(key, self._informer().items.get(key))

    def _again(self, key: str, manage: bool, actions: ReplicaSetActions) -> float | None:
        delays = [
            d for d in (actions.requeue_after, None if manage else self.expectations.remaining(key)) if d is not None
        ]
        return min(delays) if delays else None

    async def _claim(self, actions: ReplicaSetActions) -> None:
        for pod in (*actions.adopt, *actions.release):
            await self.api.write(pod)
        if actions.adopt or actions.release:
            log.info(
                "replica_set_claimed_pods",
                adopted=[p.metadata.name for p in actions.adopt],
                released=[p.metadata.name for p in actions.release],
            )

    async def _write_status(self, rs: workloads_pb2.ReplicaSet, status: workloads_pb2.ReplicaSetStatus) -> None:
        updated = workloads_pb2.ReplicaSet()
        updated.CopyFrom(rs)
        updated.status.CopyFrom(status)
        written = await self.api.update_status(updated)
        self._written.remember(object_key(rs), written)
        log.debug(
            "replica_set_status",
            replica_set=object_key(rs),
            replicas=status.replicas,
            ready=status.ready_replicas,
            available=status.available_replicas,
        )

    # -- deleting ---------------------------------------------------------------

    async def _delete(self, key: str, rs: workloads_pb2.ReplicaSet, pods: Sequence[pod_pb2.Pod]) -> None:
        if not pods:
            return
        self.expectations.expect(key, deletes=[object_key(p) for p in pods])
        results = await asyncio.gather(*(self._delete_one(p) for p in pods), return_exceptions=True)
        errors = failures(results)
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException) and not is_temporary(result):
                self.expectations.deletion_failed(key, object_key(pod))
        deleted = [p for p, r in zip(pods, results, strict=True) if not isinstance(r, BaseException)]
        log.info("replica_set_scaled", replica_set=key, deleted=len(deleted), failed=len(errors))
        await self.recorder.record_all(
            rs, "Normal", "SuccessfulDelete", [f"Deleted pod: {p.metadata.name}" for p in deleted]
        )
        if errors:
            await self.recorder.record(rs, "Warning", "FailedDelete", f"Error deleting: {errors[0]}")
            raise errors[0]

    async def _delete_one(self, pod: pod_pb2.Pod) -> None:
        """Delete the cached version (no store read per pod); re-read only if it changed since."""
        m = pod.metadata
        try:
            await self.api.delete_version(pod)
        except ConflictError:
            with contextlib.suppress(NotFoundError):
                await self.api.delete("Pod", m.namespace, m.name, uid=m.uid)
        except NotFoundError:
            return

    # -- creating ---------------------------------------------------------------

    async def _create(self, key: str, rs: workloads_pb2.ReplicaSet, pods: Sequence[pod_pb2.Pod]) -> None:
        if not pods:
            return
        self.expectations.expect(key, creates=len(pods))
        created: list[str] = []
        start, batch = 0, 1
        while start < len(pods):
            chunk = pods[start : start + batch]
            start += len(chunk)
            results = await asyncio.gather(*(self.api.create(p) for p in chunk), return_exceptions=True)
            errors = failures(results)
            created.extend(meta(r).name for r in results if isinstance(r, Message))
            if errors:
                definite = sum(not is_temporary(e) for e in errors)
                self.expectations.creations_failed(key, definite + len(pods) - start)
                await self._created(key, rs, created, asked=len(pods))
                await self.recorder.record(rs, "Warning", "FailedCreate", f"Error creating: {errors[0]}")
                raise errors[0]
            batch = min(2 * batch, len(pods) - start)
        await self._created(key, rs, created, asked=len(pods))

    async def _created(self, key: str, rs: workloads_pb2.ReplicaSet, names: list[str], *, asked: int) -> None:
        log.info("replica_set_scaled", replica_set=key, created=len(names), asked=asked)
        await self.recorder.record_all(rs, "Normal", "SuccessfulCreate", [f"Created pod: {name}" for name in names])
