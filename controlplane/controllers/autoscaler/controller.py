"""The HPA controller's shell: watch caches and a metrics source in, `reconcile`, writes out.

Keys are HPA keys ("ns/name"). Each HPA is synced every `sync_period` (15 s,
Kubernetes' default), at once when its spec changes, and when its target is
created, deleted, rescaled or gets a new selector (not on the target's status
writes, nor on the HPA's own status writes). A sync reads the HPA, its target
and the target's pods from the informers and the pods' samples from the
`MetricsSource`, reconciles, and writes:

1. the target's `spec.replicas` through `ObjectApi.update` (a CAS write that
   bumps its generation); on a conflict the target is read again and the
   write repeated only if its replica count is still the one the decision
   started from — otherwise someone else scaled it, and the HPA syncs again
   on what is;
2. the events, which explain every scale and every failure (before the
   status, so a scale that happened is told even if that write fails);
3. the HPA's status (a raw CAS write, kept as our latest until the cache shows
   it, so a sync right after its own write starts from it; on a conflict it is
   written onto the fresh object if the spec there is the one it was computed
   for).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime

import structlog

from controlplane.apiserver.errors import ApiError, ConflictError, FencedError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.autoscaler.reconcile import (
    HpaActions,
    Target,
    reconcile,
    rescale_failed,
    selected_pods,
)
from controlplane.controllers.autoscaler.replicas import Tuning
from controlplane.controllers.autoscaler.source import MetricsSource, collect
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.index import NamespaceIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.written import LatestWrites
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos import autoscaling
from protos.corral.v1 import metrics_pb2, pod_pb2
from protos.kinds import by_kind, info_of, meta

log = structlog.get_logger(__name__)
HPA = by_kind("HorizontalPodAutoscaler")
DEFAULT_SYNC_PERIOD = 15.0
# Writes of the target's replicas, each after re-reading it on a conflict.
SCALE_ATTEMPTS = 5
# How soon to look again when someone else changed the target's replicas mid-sync.
RACED_RETRY = 0.2


class _ScaleRaced(Exception):
    """The target changed its replica count (or went away) while we decided."""


class HorizontalPodAutoscalerController:
    name: str = "horizontalpodautoscaler"
    kinds: tuple[str, ...] = ("HorizontalPodAutoscaler", *autoscaling.TARGET_KINDS, "Pod")

    def __init__(
        self,
        api: ObjectApi,
        recorder: EventRecorder,
        metrics: MetricsSource,
        *,
        sync_period: float = DEFAULT_SYNC_PERIOD,
        workers: int = 2,
        tuning: Tuning | None = None,
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.metrics = metrics
        self.sync_period = sync_period
        self.workers = workers
        self.tuning = tuning or Tuning()
        self.now = now
        self.monotonic = monotonic
        self._informers: dict[str, Informer] = {}
        self._pods: NamespaceIndex[pod_pb2.Pod] | None = None
        # "ns/Kind/name" of a target → the keys of the HPAs that scale it.
        self._by_target: dict[str, set[str]] = {}
        self._target_of: dict[str, str] = {}
        # Our last status write per key, until the cache shows it (read-your-writes).
        self._written = LatestWrites(metrics_pb2.HorizontalPodAutoscaler)

    # -- wiring -----------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._informers = informers
        self._pods = NamespaceIndex(informers["Pod"], pod_pb2.Pod)
        hpas = informers["HorizontalPodAutoscaler"]
        for obj in hpas.items.values():
            self._index(obj, deleted=False)
        # Registered before the manager's enqueueing listener: the index is current
        # when a target's event is mapped to keys.
        hpas.add_listener(lambda event: self._index(event.obj, deleted=event.change is Change.DELETED))

    def _index(self, obj: object, *, deleted: bool) -> None:
        if not isinstance(obj, metrics_pb2.HorizontalPodAutoscaler):
            return
        key = object_key(obj)
        old = self._target_of.pop(key, None)
        if old is not None:
            keys = self._by_target.get(old, set())
            keys.discard(key)
            if not keys:
                self._by_target.pop(old, None)
        if not deleted:
            ref = obj.spec.scale_target_ref
            target = f"{obj.metadata.namespace}/{ref.kind}/{ref.name}"
            self._target_of[key] = target
            self._by_target.setdefault(target, set()).add(key)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "HorizontalPodAutoscaler":
            prev = event.prev
            if (
                event.change is not Change.MODIFIED
                or not isinstance(prev, metrics_pb2.HorizontalPodAutoscaler)
                or not isinstance(event.obj, metrics_pb2.HorizontalPodAutoscaler)
                or prev.spec != event.obj.spec
            ):
                return [object_key(event.obj)]
            return []
        if kind in autoscaling.TARGET_KINDS and _scale_changed(event):
            m = meta(event.obj)
            return list(self._by_target.get(f"{m.namespace}/{kind}/{m.name}", ()))
        return []

    def all_keys(self) -> Iterable[str]:
        return list(self._informers["HorizontalPodAutoscaler"].items)

    # -- sync -------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        hpa = self._latest(key)
        if hpa is None:
            return None
        target = self._target(hpa)
        pods: list[pod_pb2.Pod] = []
        if target is not None:
            assert self._pods is not None
            pods = selected_pods(target, self._pods.in_namespace(hpa.metadata.namespace))
        samples = collect(self.metrics, pods, autoscaling.metric_specs(hpa.spec), now=self.monotonic())
        now = self.now()
        actions = reconcile(hpa, target, pods, samples, now=now, tuning=self.tuning)
        if actions.scale_to is not None:
            assert target is not None
            try:
                await self._scale(target, actions.scale_to)
            except _ScaleRaced:
                log.info("hpa_target_changed", hpa=key, target=_target_name(hpa))
                return RACED_RETRY
            except FencedError:  # the term is over: write nothing more
                raise
            except ApiError as e:
                await self._failed(key, hpa, actions, str(e), now=now)
                raise
        # The events first: a scale that happened is told even if the status write then fails.
        for event in actions.events:
            await self.recorder.record(hpa, event.type, event.reason, event.message)
        self._log(key, hpa, actions)
        if actions.status is not None:
            await self._write_status(key, hpa, actions.status)
        return self.sync_period

    def _latest(self, key: str) -> metrics_pb2.HorizontalPodAutoscaler | None:
        return self._written.latest(key, self._informers["HorizontalPodAutoscaler"].items.get(key))

    def _target(self, hpa: metrics_pb2.HorizontalPodAutoscaler) -> Target | None:
        ref = hpa.spec.scale_target_ref
        informer = self._informers.get(ref.kind) if ref.kind in autoscaling.TARGET_KINDS else None
        obj = informer.items.get(f"{hpa.metadata.namespace}/{ref.name}") if informer is not None else None
        return obj if isinstance(obj, autoscaling.TARGET_MESSAGES) else None

    async def _scale(self, target: Target, replicas: int) -> None:
        """Set the target's replicas, if they are still what the decision saw."""
        seen = target.spec.replicas
        current: Target = target
        for attempt in range(SCALE_ATTEMPTS):
            if attempt:
                fresh = await self.api.find(info_of(target), target.metadata.namespace, target.metadata.name)
                if not isinstance(fresh, type(target)) or fresh.metadata.uid != target.metadata.uid:
                    raise _ScaleRaced
                current = fresh
            if current.spec.replicas != seen:
                raise _ScaleRaced
            updated = _copy(current)
            updated.spec.replicas = replicas
            try:
                await self.api.update(updated)
                return
            except ConflictError:
                if attempt + 1 == SCALE_ATTEMPTS:
                    raise
            except NotFoundError as e:
                raise _ScaleRaced from e

    async def _write_status(
        self, key: str, hpa: metrics_pb2.HorizontalPodAutoscaler, status: metrics_pb2.HorizontalPodAutoscalerStatus
    ) -> None:
        """CAS-write the status; on a conflict, onto the fresh object if its spec is the
        one the status was computed for (else the sync fails and runs again)."""
        updated = metrics_pb2.HorizontalPodAutoscaler()
        updated.CopyFrom(hpa)
        updated.status.CopyFrom(status)
        try:
            written = await self.api.update_status(updated)
        except ConflictError:
            fresh = await self.api.find(HPA, hpa.metadata.namespace, hpa.metadata.name)
            if not isinstance(fresh, metrics_pb2.HorizontalPodAutoscaler) or fresh.spec != hpa.spec:
                raise
            fresh.status.CopyFrom(status)
            written = await self.api.update_status(fresh)
        self._written.remember(key, written)

    async def _failed(
        self, key: str, hpa: metrics_pb2.HorizontalPodAutoscaler, actions: HpaActions, error: str, *, now: datetime
    ) -> None:
        status, event = rescale_failed(hpa, actions, error, now=now)
        log.warning("hpa_rescale_failed", hpa=key, target=_target_name(hpa), replicas=actions.scale_to, error=error)
        await self.recorder.record(hpa, event.type, event.reason, event.message)
        try:
            await self._write_status(key, hpa, status)
        except (ConflictError, NotFoundError) as e:
            log.info("hpa_status_not_written", hpa=key, error=str(e))

    def _log(self, key: str, hpa: metrics_pb2.HorizontalPodAutoscaler, actions: HpaActions) -> None:
        status = actions.status or hpa.status
        if actions.scale_to is not None:
            log.info(
                "hpa_rescaled",
                hpa=key,
                target=_target_name(hpa),
                current=status.current_replicas,
                replicas=actions.scale_to,
                reason=actions.reason,
            )
        # A problem is logged as a warning when it changes the status (once, not at every sync).
        problem = log.warning if actions.status is not None else log.debug
        for event in actions.events:
            if event.type == "Warning":
                problem("hpa_problem", hpa=key, reason=event.reason, message=event.message)
        log.debug("hpa_synced", hpa=key, current=status.current_replicas, desired=status.desired_replicas)


def _scale_changed(event: CacheEvent) -> bool:
    """A target event that matters to its HPAs: created, deleted, rescaled, reselected."""
    prev, obj = event.prev, event.obj
    if event.change is not Change.MODIFIED or prev is None:
        return True
    if not isinstance(prev, autoscaling.TARGET_MESSAGES) or not isinstance(obj, autoscaling.TARGET_MESSAGES):
        return False
    return prev.spec.replicas != obj.spec.replicas or prev.spec.selector != obj.spec.selector


def _copy(target: Target) -> Target:
    return type(target).FromString(target.SerializeToString())


def _target_name(hpa: metrics_pb2.HorizontalPodAutoscaler) -> str:
    ref = hpa.spec.scale_target_ref
    return f"{ref.kind}/{ref.name}"
