"""The scheduler's shell: feeds the pure pipeline from watch caches and binds.

One key ("pass") drives batch passes: every change to an unbound pod, to a
node, or to a bound pod's existence queues a pass. The nodes and what is bound
to them live in a `SchedulerCache` the informers' events keep current (with the
pods this scheduler bound but no event has shown bound yet counted as assumed),
as do the pending pods, so a pass reads its snapshot without scanning every pod
and node of the cluster. A pass places all pending pods
(`scheduler.pipeline.schedule_batch`, which counts each placement before the
next), and binds each with a compare-and-swap write of `spec.nodeName`; a
conflict means fresh state is needed, so the pass runs again. A pod that fits
nowhere stays Pending with a PodScheduled=False condition and a
`FailedScheduling` event saying why, and is retried with back-off (1 s
doubling to 60 s) — or at once when the cluster changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import BIND_BATCH, ObjectApi
from controlplane.clock import utcnow, utcnow_seconds
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.volumes.caches import VOLUME_KINDS, VolumeCaches, claim_users_by_node
from controlplane.informer import CacheEvent, Change, Informer
from controlplane.scheduler.cache import SchedulerCache
from controlplane.scheduler.framework import Profile
from controlplane.scheduler.pipeline import Placement, Unschedulable, feasible_nodes_to_find, schedule_batch
from controlplane.scheduler.plugins import default_profile
from controlplane.scheduler.snapshot import LEAST_ALLOCATED, PodRequest, pod_request
from controlplane.telemetry.hooks import SchedulingObserver
from protos import nodes as nodeutil
from protos import pods as podutil
from protos import storage as st
from protos.conditions import set_condition
from protos.corral.v1 import node_pb2, pod_pb2

log = structlog.get_logger(__name__)

PASS = "pass"
BIND_CONCURRENCY = 64
RETRY_INITIAL = 1.0
RETRY_MAX = 60.0
CONFLICT_RETRY = 0.05
SCHEDULE_CHUNK = 500
# How many nodes to score per pod, as kube-scheduler's percentageOfNodesToScore
# (at least 100 nodes; 0 means kube-scheduler's adaptive 50% - nodes/125).
# Scoring a node costs more in Python than in Go, so corral looks at 10% of a
# large cluster by default; every node is scored in clusters under 100 nodes.
DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE = 10
ASSUME_TTL = 30.0


@dataclass
class Retry:
    not_before: float
    delay: float


def pending(pod: pod_pb2.Pod) -> bool:
    """Waiting for a node: unbound, not being deleted, not finished."""
    return not pod.spec.node_name and not podutil.is_terminating(pod) and not podutil.is_terminal(pod)


class SchedulerController:
    name: str = "scheduler"
    kinds: tuple[str, ...] = ("Pod", "Node", *VOLUME_KINDS)
    workers: int = 1

    def __init__(
        self,
        api: ObjectApi,
        recorder: EventRecorder,
        *,
        strategy: str = LEAST_ALLOCATED,
        percentage_of_nodes_to_score: int = DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE,
        profile: Profile | None = None,
        now: Callable[[], datetime] = utcnow_seconds,
        metrics: SchedulingObserver | None = None,
    ) -> None:
        self.metrics = metrics
        self.percentage = percentage_of_nodes_to_score
        self.api = api
        self.recorder = recorder
        self.strategy = strategy
        self.profile = profile or default_profile()
        self.now = now
        self.retries: dict[str, Retry] = {}
        # The nodes and the load bound to each, with the pods bound by us not yet seen bound.
        self.cache = SchedulerCache()
        # uid → pod: waiting for a node, as the informer last showed it.
        self.waiting: dict[str, pod_pb2.Pod] = {}
        self.start_index = 0
        self._pods: Informer | None = None
        self._nodes: Informer | None = None
        self._volumes: VolumeCaches | None = None

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        self._pods, self._nodes = informers["Pod"], informers["Node"]
        self._nodes.add_listener(self._on_node)
        self._pods.add_listener(self._on_pod)
        self._volumes = VolumeCaches(*(informers[kind] for kind in VOLUME_KINDS))

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind in VOLUME_KINDS:
            self.retries.clear()  # a claim was bound, a class made: pods waiting on them may go now
            return [PASS]
        if kind == "Node":
            if (
                event.change is Change.MODIFIED
                and isinstance(event.prev, node_pb2.Node)
                and _placement_view(event.prev) == _placement_view(event.obj)
            ):
                return []  # a heartbeat: nothing the scheduler looks at changed
            self.retries.clear()  # the cluster changed: try everything again now
            return [PASS]
        pod = event.obj
        assert isinstance(pod, pod_pb2.Pod)
        if event.change is Change.DELETED and pod.spec.node_name:
            self.retries.clear()  # room was freed
            return [PASS]
        return [PASS] if pending(pod) else []

    def _on_node(self, event: CacheEvent) -> None:
        node = event.obj
        assert isinstance(node, node_pb2.Node)
        if event.change is Change.DELETED:
            self.cache.remove_node(node.metadata.name)
        else:
            self.cache.set_node(node)

    def _on_pod(self, event: CacheEvent) -> None:
        pod = event.obj
        assert isinstance(pod, pod_pb2.Pod)
        uid = pod.metadata.uid
        if event.change is Change.DELETED:
            self.cache.remove_pod(pod)
            self.waiting.pop(uid, None)
            return
        self.cache.set_pod(pod)
        if pending(pod):
            self.waiting[uid] = pod
        else:
            self.waiting.pop(uid, None)

    def all_keys(self) -> Iterable[str]:
        return [PASS]

    async def sync(self, key: str) -> float | None:
        assert self._pods is not None
        assert self._nodes is not None
        loop_now = asyncio.get_running_loop().time()
        started = time.perf_counter()
        self.cache.expire(loop_now)
        todo = sorted(
            (
                p
                for p in self.waiting.values()
                if self.cache.assumed_node(p.metadata.uid) is None and self._due(p, loop_now)
            ),
            key=lambda p: (p.metadata.creation_timestamp.seconds, p.metadata.name),
        )
        if not todo:
            return self._next_retry(loop_now)
        snapshot = self.cache.snapshot()
        todo, requests = self._with_volumes(todo, loop_now)
        if not todo:
            return self._next_retry(loop_now)
        sample = feasible_nodes_to_find(len(snapshot), self.percentage) if len(snapshot) else None
        by_key = {f"{p.metadata.namespace}/{p.metadata.name}": p for p in todo}
        # Place a chunk, start its binds, place the next chunk while they travel.
        async with asyncio.TaskGroup() as group:
            writes = []
            for first in range(0, len(requests), SCHEDULE_CHUNK):
                batch = schedule_batch(
                    requests[first : first + SCHEDULE_CHUNK],
                    snapshot,
                    self.profile,
                    start_index=self.start_index,
                    sample_size=sample,
                )
                snapshot, self.start_index = batch.snapshot, batch.next_start_index
                writes.append(group.create_task(self._apply(batch.results, by_key, loop_now)))
                await asyncio.sleep(0)
            placed = time.perf_counter()
        conflicts = sum(w.result() for w in writes)
        log.info(
            "scheduling_pass",
            pending=len(todo),
            nodes=len(snapshot),
            conflicts=conflicts,
            placed_ms=round((placed - started) * 1000, 1),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return CONFLICT_RETRY if conflicts else self._next_retry(loop_now)

    def _with_volumes(self, todo: list[pod_pb2.Pod], now: float) -> tuple[list[pod_pb2.Pod], list[PodRequest]]:
        """Each pending pod's request with its volume needs. Of the pods that share an unbound
        claim no pod is bound with yet, only the first is placed in this pass (the others
        follow it to its node in the next), so the claim's volume is made on one node."""
        if self._volumes is None or not any(st.claim_names(p.spec) for p in todo):
            return todo, [pod_request(p, default_strategy=self.strategy) for p in todo]
        assert self._pods is not None
        users = claim_users_by_node(
            self._with_assumed([p for p in self._pods.items.values() if isinstance(p, pod_pb2.Pod)])
        )
        kept: list[pod_pb2.Pod] = []
        requests: list[PodRequest] = []
        taken: set[tuple[str, str]] = set()
        for pod in todo:
            request = pod_request(pod, default_strategy=self.strategy)
            if st.claim_names(pod.spec):
                unplaced = {(pod.metadata.namespace, c) for _, c in st.claim_names(pod.spec)} - set(users)
                if unplaced & taken:
                    self.retries[pod.metadata.uid] = Retry(now + RETRY_INITIAL, RETRY_INITIAL)
                    continue
                taken |= unplaced
                request = dataclasses.replace(request, volumes=self._volumes.needs(pod, users))
            kept.append(pod)
            requests.append(request)
        return kept, requests

    def _with_assumed(self, pods: list[pod_pb2.Pod]) -> list[pod_pb2.Pod]:
        """Pods as the scheduler must see them: bindings it wrote but the cache has
        not shown yet count as bound."""
        out = []
        for pod in pods:
            assumed = None if pod.spec.node_name else self.cache.assumed_node(pod.metadata.uid)
            if assumed is not None:
                copy = pod_pb2.Pod()
                copy.CopyFrom(pod)
                copy.spec.node_name = assumed
                pod = copy
            out.append(pod)
        return out

    def _due(self, pod: pod_pb2.Pod, now: float) -> bool:
        retry = self.retries.get(pod.metadata.uid)
        return retry is None or retry.not_before <= now

    def _next_retry(self, now: float) -> float | None:
        if not self.retries:
            return None
        return max(0.05, min(r.not_before for r in self.retries.values()) - now)

    async def _apply(
        self, results: Iterable[Placement | Unschedulable], pods: dict[str, pod_pb2.Pod], now: float
    ) -> int:
        """Bind placements in transactions of up to BIND_BATCH pods; explain the rest."""
        placements = [r for r in results if isinstance(r, Placement)]
        failures = [r for r in results if isinstance(r, Unschedulable)]
        limit = asyncio.Semaphore(BIND_CONCURRENCY // 8)

        async def chunk(part: list[Placement]) -> int:
            async with limit:
                return await self._bind_chunk([(pods[p.pod], p.node) for p in part])

        chunks = [placements[i : i + BIND_BATCH] for i in range(0, len(placements), BIND_BATCH)]
        conflicts = sum(await asyncio.gather(*(chunk(c) for c in chunks)))
        for failure in failures:
            await self._unschedulable(pods[failure.pod], failure, now)
        return conflicts

    async def _bind_chunk(self, chunk: list[tuple[pod_pb2.Pod, str]]) -> int:
        """One transaction for the whole chunk; if anything in it moved, pod by pod."""
        bound = [self._bound_copy(pod, node) for pod, node in chunk]
        try:
            await self.api.bind_all(bound)
        except ConflictError:
            results = [await self._bind(pod, node) for pod, node in chunk]
            return sum(1 for ok in results if not ok)
        for pod, node in chunk:
            self._assume(pod, node)
        self._observe_bound([pod for pod, _ in chunk])
        log.info("pods_bound", count=len(chunk))
        return 0

    def _bound_copy(self, pod: pod_pb2.Pod, node: str) -> pod_pb2.Pod:
        bound = pod_pb2.Pod()
        bound.CopyFrom(pod)
        bound.spec.node_name = node
        _set_scheduled(bound, True, "", "", self.now())
        return bound

    def _assume(self, pod: pod_pb2.Pod, node: str) -> None:
        self.retries.pop(pod.metadata.uid, None)
        self.cache.assume(pod, node, until=asyncio.get_running_loop().time() + ASSUME_TTL)

    async def _bind(self, pod: pod_pb2.Pod, node: str) -> bool:
        try:
            await self.api.bind(self._bound_copy(pod, node))
        except (ConflictError, NotFoundError):
            if self.metrics is not None:
                self.metrics.scheduling_attempts("error")
            return False
        self._assume(pod, node)
        self._observe_bound([pod])
        log.info("pod_bound", pod=pod.metadata.name, namespace=pod.metadata.namespace, node=node)
        return True

    def _observe_bound(self, pods: list[pod_pb2.Pod]) -> None:
        if self.metrics is None:
            return
        self.metrics.scheduling_attempts("scheduled", len(pods))
        bound = utcnow()
        for pod in pods:
            if pod.metadata.HasField("creation_timestamp"):
                self.metrics.pod_bound(pod.metadata.creation_timestamp.ToDatetime(tzinfo=UTC), bound)

    async def _unschedulable(self, pod: pod_pb2.Pod, result: Unschedulable, now: float) -> None:
        if self.metrics is not None:
            self.metrics.scheduling_attempts("unschedulable")
        previous = self.retries.get(pod.metadata.uid)
        delay = RETRY_INITIAL if previous is None else min(previous.delay * 2, RETRY_MAX)
        self.retries[pod.metadata.uid] = Retry(now + delay, delay)
        current = next((c for c in pod.status.conditions if c.type == podutil.POD_SCHEDULED), None)
        if current is not None and current.status == "False" and current.message == result.message:
            return
        updated = pod_pb2.Pod()
        updated.CopyFrom(pod)
        updated.status.phase = updated.status.phase or "Pending"
        _set_scheduled(updated, False, "Unschedulable", result.message, self.now())
        try:
            await self.api.update_status(updated)
        except (ConflictError, NotFoundError):
            return
        await self.recorder.record(pod, "Warning", "FailedScheduling", result.message)
        log.info("pod_unschedulable", pod=pod.metadata.name, reason=result.message, retry_in=delay)


PlacementView = tuple[tuple[tuple[str, str], ...], bytes, tuple[tuple[str, str], ...], tuple[str, ...], bool]


def _placement_view(node: Message) -> PlacementView:
    """What placement depends on: labels, spec (cordon, taints), allocatable,
    runtimes and readiness; not heartbeat times, which change every few seconds."""
    assert isinstance(node, node_pb2.Node)
    ready = nodeutil.is_ready(node)
    return (
        tuple(sorted(node.metadata.labels.items())),
        node.spec.SerializeToString(deterministic=True),
        tuple(sorted(node.status.allocatable.items())),
        tuple(node.status.runtimes),
        ready,
    )


def _set_scheduled(pod: pod_pb2.Pod, ok: bool, reason: str, message: str, now: datetime) -> None:
    set_condition(
        pod.status.conditions, podutil.POD_SCHEDULED, "True" if ok else "False", reason=reason, message=message, now=now
    )
