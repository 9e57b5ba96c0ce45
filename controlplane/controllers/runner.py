"""Runs controllers: shared informers, one work queue per controller, workers.

The informers are the manager's own, or — given as ``shared`` — running ones
owned by someone else (the serving replica's: a leader then keeps no second
copy of every pod and decodes no second watch). Shared informers are caught up
with the store (`Informer.refresh`) before the first sync, and stop telling
this manager's queues when it stops.

A controller says which informers it needs, maps cache events to keys, and
syncs one key at a time. `sync` returns a delay to look again later (for
deadlines such as progressDeadlineSeconds) or None; an exception requeues the
key with back-off, except a write refused by the leader's fence (`FencedError`):
another replica leads now, so every controller stops and `run` raises it.
Nothing here knows what a Deployment is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Protocol

import structlog

from controlplane.apiserver.errors import FencedError
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer, ObjectSource
from controlplane.telemetry.hooks import ControllerObserver
from protos.kinds import KindInfo, by_kind

log = structlog.get_logger(__name__)

# Changes to a key that arrive while it is being synced are folded into one
# more sync this much later (a busy ReplicaSet with a thousand pods gets a few
# syncs per second, not one per pod status write).
COALESCE_SECONDS = 0.1


class Controller(Protocol):
    name: str
    # Kinds whose informers this controller reads (e.g. "Deployment", "ReplicaSet", "Pod").
    kinds: tuple[str, ...]
    workers: int

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        """Receive the shared informers and this controller's queue before the first sync."""
        ...

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        """The keys to reconcile because of a cache event."""
        ...

    def all_keys(self) -> Iterable[str]:
        """Every key, for the first pass after the caches sync (level-driven start)."""
        ...

    async def sync(self, key: str) -> float | None:
        """Make `key` right; return seconds after which to look again, or None."""
        ...


class ControllerManager:
    def __init__(
        self,
        source: ObjectSource,
        controllers: list[Controller],
        *,
        observer: ControllerObserver | None = None,
        shared: Mapping[str, Informer] | None = None,
    ) -> None:
        self.source = source
        self.controllers = controllers
        # Told of the informers and queues while they run, and of every sync (metrics).
        self.observer = observer
        self.informers: dict[str, Informer] = {}
        self.queues: dict[str, WorkQueue] = {}
        # Running informers someone else owns, by kind; used for these kinds instead of new ones.
        self._shared = dict(shared or {})
        for controller in controllers:
            for kind in controller.kinds:
                if kind not in self.informers:
                    self.informers[kind] = self._shared.get(kind) or Informer(source, self._info(kind))
        before = {kind: set(informer.listeners) for kind, informer in self._shared.items()}
        for controller in controllers:
            queue = WorkQueue(coalesce=COALESCE_SECONDS)
            self.queues[controller.name] = queue
            controller.bind(self.informers, queue)
            for kind in controller.kinds:
                self.informers[kind].add_listener(self._enqueue(controller, kind, queue))
        # Everything this manager's controllers hung on shared informers (queues, their indexes).
        self._listening = [
            (informer, listener)
            for kind, informer in self._shared.items()
            for listener in informer.listeners
            if listener not in before[kind]
        ]

    @staticmethod
    def _info(kind: str) -> KindInfo:
        return by_kind(kind)

    @staticmethod
    def _enqueue(controller: Controller, kind: str, queue: WorkQueue):  # type: ignore[no-untyped-def]
        def listener(event: CacheEvent) -> None:
            for key in controller.keys_for(kind, event):
                queue.add(key)

        return listener

    def informer(self, kind: str) -> Informer:
        if kind not in self.informers:
            self.informers[kind] = self._shared.get(kind) or Informer(self.source, self._info(kind))
        return self.informers[kind]

    async def run(self) -> None:
        if self.observer is not None:
            self.observer.controllers_started(self.informers, self.queues)
        try:
            await self._run()
        finally:
            for informer, listener in self._listening:
                informer.remove_listener(listener)
            if self.observer is not None:
                self.observer.controllers_stopped()

    async def _run(self) -> None:
        shared = [i for i in self.informers.values() if i in self._shared.values()]
        async with asyncio.TaskGroup() as group:
            for informer in self.informers.values():
                if informer not in shared:
                    group.create_task(informer.run(), name=f"informer-{informer.info.kind}")
            await asyncio.gather(*(i.synced.wait() for i in self.informers.values()))
            await asyncio.gather(*(i.refresh() for i in shared))
            for controller in self.controllers:
                queue = self.queues[controller.name]
                for key in controller.all_keys():
                    queue.add(key)
                for n in range(controller.workers):
                    group.create_task(self._worker(controller, queue), name=f"{controller.name}-{n}")
            if self.controllers:
                log.info("controllers_started", controllers=[c.name for c in self.controllers])

    async def _worker(self, controller: Controller, queue: WorkQueue) -> None:
        while True:
            key = await queue.get()
            started = time.perf_counter()
            try:
                again = await controller.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._observe(controller, started, failed=True)
                if _fenced(e):
                    log.warning("controller_fenced", controller=controller.name, key=key, error=str(e))
                    raise
                delay = queue.retry(key)
                log.warning(
                    "sync_failed",
                    controller=controller.name,
                    key=key,
                    error=str(e) or type(e).__name__,
                    retry_in=round(delay, 2),
                )
            else:
                self._observe(controller, started, failed=False)
                queue.forget(key)
                if again is not None:
                    queue.add_after(key, again)
            finally:
                queue.done(key)
                log.debug(
                    "synced", controller=controller.name, key=key, ms=round((time.perf_counter() - started) * 1000, 2)
                )

    def _observe(self, controller: Controller, started: float, *, failed: bool) -> None:
        if self.observer is not None:
            self.observer.synced(controller.name, time.perf_counter() - started, failed=failed)


def _fenced(error: BaseException) -> bool:
    """True when the leader's fence refused a write, also inside a task group's error."""
    if isinstance(error, BaseExceptionGroup):
        return error.subgroup(FencedError) is not None
    return isinstance(error, FencedError) or (error.__cause__ is not None and _fenced(error.__cause__))
