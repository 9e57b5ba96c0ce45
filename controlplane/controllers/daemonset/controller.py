"""The DaemonSet controller's shell: watch caches in, `reconcile`, writes out.

Keys are DaemonSet keys ("ns/name"). A pod maps to its controller owner's key
(an orphan to every DaemonSet of its namespace whose selector matches it, for
adoption); a node's change, arrival or departure queues every DaemonSet. A
sync reads the set, its candidate pods and every node from the informers,
reconciles, and writes: adoption and release, pod deletions (graceful, with a
uid precondition), new pods, then the status with a CAS write. A failed write
raises, so the work queue retries on fresh state.

Expectations (the ReplicaSet controller's) keep a sync from acting on a pod
cache that has not yet shown its own creations and deletions, which would
make a second pod for a node. A Failed pod is replaced with a back-off per set
and node (Kubernetes' failedPodsBackoff: 1 s doubling to 15 min, forgotten
after 30 min without a failure), so a node that rejects the pod at once is
not flooded with new ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

import structlog
from google.protobuf.message import Message

from controlplane.apiserver import labels
from controlplane.apiserver.errors import NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.daemonset.reconcile import reconcile
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.history import write_history
from controlplane.controllers.index import ControllerIndex, NamespaceIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.replicaset.controller import failures, is_temporary, owner_key
from controlplane.controllers.replicaset.expectations import Expectations
from controlplane.informer import CacheEvent, Change, Informer, object_key
from corral.common.backoff import CrashLoopBackoff
from protos import daemonsets, owners, revisions
from protos import pods as podutil
from protos.corral.v1 import node_pb2, pod_pb2, workloads_pb2
from protos.kinds import meta
from protos.wellknown import CONTROLLER_REVISION_HASH

log = structlog.get_logger(__name__)

KIND = "DaemonSet"
FAILED_POD_BACKOFF = CrashLoopBackoff(initial=1.0, cap=900.0, reset_after=1800.0)


class DaemonSetController:
    name: str = "daemonset"
    kinds: tuple[str, ...] = (KIND, "Pod", "Node", "ControllerRevision")

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
        self._sets: Informer | None = None
        self._nodes: Informer | None = None
        self._sets_by_ns: NamespaceIndex[workloads_pb2.DaemonSet] | None = None
        self._pods: ControllerIndex[pod_pb2.Pod] | None = None
        self._revisions: ControllerIndex[workloads_pb2.ControllerRevision] | None = None
        # (set key, node) -> (the back-off set at the last Failed pod's deletion, when).
        self._failed: dict[tuple[str, str], tuple[float, datetime]] = {}

    # -- wiring -----------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._sets = informers[KIND]
        self._nodes = informers["Node"]
        self._sets_by_ns = NamespaceIndex(informers[KIND], workloads_pb2.DaemonSet)
        self._pods = ControllerIndex.shared(informers["Pod"], pod_pb2.Pod)
        self._revisions = ControllerIndex.shared(informers["ControllerRevision"], workloads_pb2.ControllerRevision)
        # Registered before the manager's enqueueing listener: expectations are
        # lowered before the key is queued.
        informers["Pod"].add_listener(self._observe)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == KIND:
            return [object_key(event.obj)]
        if kind == "Node":
            return self.all_keys() if _node_changed(event) else []
        if kind == "ControllerRevision":
            return {k for o in (event.obj, event.prev) if o is not None if (k := owner_key(o, KIND)) is not None}
        keys: set[str] = set()
        for obj in (event.obj, event.prev):
            if obj is None:
                continue
            key = owner_key(obj, KIND)
            if key is not None:
                keys.add(key)
            elif owners.controller_ref(obj) is None and event.change is not Change.DELETED:
                keys.update(self._selecting(obj))
        return keys

    def all_keys(self) -> list[str]:
        return list(self._informer().items)

    def _informer(self) -> Informer:
        if self._sets is None:
            raise RuntimeError("DaemonSetController used before bind()")
        return self._sets

    def _selecting(self, pod: Message) -> list[str]:
        assert self._sets_by_ns is not None
        m = meta(pod)
        return [
            object_key(ds)
            for ds in self._sets_by_ns.in_namespace(m.namespace)
            if ds.spec.selector.match_labels or ds.spec.selector.match_expressions
            if labels.from_label_selector(ds.spec.selector).matches(m.labels)
        ]

    def _observe(self, event: CacheEvent) -> None:
        key = owner_key(event.obj, KIND)
        if key is None:
            return
        if event.change is Change.ADDED and not podutil.is_terminating(event.obj):
            self.expectations.creation_observed(key)
        elif event.change is not Change.MODIFIED or podutil.is_terminating(event.obj):
            self.expectations.deletion_observed(key, object_key(event.obj))

    # -- sync -------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        ds = self._informer().items.get(key)
        if not isinstance(ds, workloads_pb2.DaemonSet):
            self.expectations.forget(key)
            return None
        assert self._pods is not None
        assert self._nodes is not None
        manage = self.expectations.satisfied(key)
        pods = [*self._pods.owned_by(ds.metadata.uid), *self._pods.orphans(ds.metadata.namespace)]
        nodes = [n for n in self._nodes.items.values() if isinstance(n, node_pb2.Node)]
        now = self.now()
        not_before = {
            node: at + timedelta(seconds=delay) for (k, node), (delay, at) in self._failed.items() if k == key
        }
        actions = reconcile(ds, pods, nodes, now=now, manage=manage, failed_not_before=not_before)
        await self._history(ds, pods)
        self._back_off(key, actions.failed_on, now)
        for pod in (*actions.adopt, *actions.release):
            await self.api.write(pod)
        await self._delete(key, ds, actions.delete)
        await self._create(key, ds, actions.create)
        if actions.status is not None:
            updated = workloads_pb2.DaemonSet()
            updated.CopyFrom(ds)
            updated.status.CopyFrom(actions.status)
            await self.api.update_status(updated)
        delays = [d for d in (actions.requeue_after, None if manage else self.expectations.remaining(key)) if d]
        return min(delays) if delays else None

    async def _history(self, ds: workloads_pb2.DaemonSet, pods: Sequence[pod_pb2.Pod]) -> None:
        """Record the template as a revision; keep those live pods still run."""
        assert self._revisions is not None
        if podutil.is_terminating(ds):
            return
        name = ds.metadata.name
        running = {
            revisions.revision_name(name, h) for p in pods if (h := p.metadata.labels.get(CONTROLLER_REVISION_HASH))
        }
        plan = revisions.plan(ds, daemonsets.revision(ds), self._revisions.owned_by(ds.metadata.uid), keep=running)
        await write_history(self.api, ds, plan)

    def _back_off(self, key: str, nodes: Iterable[str], now: datetime) -> None:
        for node in nodes:
            delay, at = self._failed.get((key, node), (0.0, now))
            ran_for = (now - at).total_seconds()
            self._failed[(key, node)] = (FAILED_POD_BACKOFF.next_delay(delay, ran_for=ran_for), now)
            log.info("daemon_set_failed_pod_replaced", daemon_set=key, node=node)
        stale = FAILED_POD_BACKOFF.reset_after
        for entry in [e for e, (_, at) in self._failed.items() if (now - at).total_seconds() > stale]:
            del self._failed[entry]

    async def _delete(self, key: str, ds: workloads_pb2.DaemonSet, pods: Sequence[pod_pb2.Pod]) -> None:
        if not pods:
            return
        self.expectations.expect(key, deletes=[object_key(p) for p in pods])
        results = await asyncio.gather(*(self._delete_one(p) for p in pods), return_exceptions=True)
        errors = failures(results)
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException):
                if not is_temporary(result):
                    self.expectations.deletion_failed(key, object_key(pod))
                continue
            log.info("daemon_set_pod_deleted", daemon_set=key, pod=pod.metadata.name, node=daemonsets.node_of(pod))
            await self.recorder.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")
        if errors:
            await self.recorder.record(ds, "Warning", "FailedDelete", f"Error deleting: {errors[0]}")
            raise errors[0]

    async def _delete_one(self, pod: pod_pb2.Pod) -> None:
        m = pod.metadata
        try:
            await self.api.delete("Pod", m.namespace, m.name, uid=m.uid)
        except NotFoundError:
            return

    async def _create(self, key: str, ds: workloads_pb2.DaemonSet, pods: Sequence[pod_pb2.Pod]) -> None:
        if not pods:
            return
        self.expectations.expect(key, creates=len(pods))
        results = await asyncio.gather(*(self.api.create(p) for p in pods), return_exceptions=True)
        errors = failures(results)
        if errors:
            self.expectations.creations_failed(key, sum(not is_temporary(e) for e in errors))
        for pod, result in zip(pods, results, strict=True):
            if not isinstance(result, Message):
                continue
            name, node = meta(result).name, daemonsets.node_of(pod)
            log.info("daemon_set_pod_created", daemon_set=key, pod=name, node=node)
            await self.recorder.record(ds, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        if errors:
            await self.recorder.record(ds, "Warning", "FailedCreate", f"Error creating: {errors[0]}")
            raise errors[0]


def _node_changed(event: CacheEvent) -> bool:
    """A node came, went, or changed what decides where daemon pods run (labels, taints)."""
    if event.change is not Change.MODIFIED or event.prev is None:
        return True
    old, new = event.prev, event.obj
    assert isinstance(old, node_pb2.Node)
    assert isinstance(new, node_pb2.Node)
    return (
        old.metadata.labels != new.metadata.labels
        or list(old.spec.taints) != list(new.spec.taints)
        or old.spec.unschedulable != new.spec.unschedulable
    )
