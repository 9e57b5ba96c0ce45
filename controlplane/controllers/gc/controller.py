"""The garbage collector's shell: dependents and Events from the caches,
owners confirmed against the store, deletes as compare-and-swap.

Keys are `Kind/namespace/name` of a dependent (a ReplicaSet, Job or Pod with
ownerReferences) or of an Event. A dependent is checked when it changes and
whenever an object it references is deleted (an index owner uid → dependents
finds them). The caches only say who might be garbage: before deleting, the
dependent and each of its owners are read from the store, and the dependent
is deleted only if it is still unchanged since that read. Nothing is deleted
before every cache has synced.

Pods are deleted gracefully (`ObjectApi.delete_version`): a running one is
marked terminating and left to its node. A terminating pod is also checked
when it changes and when a Node is deleted: if its node is gone, it is
deleted at once (no agent will confirm its end).

An Event is requeued for the moment it expires, then deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.gc.reconcile import (
    OwnerKey,
    collector_sees_change,
    event_expires_at,
    is_orphan,
    is_stranded,
    owner_keys,
)
from controlplane.controllers.index import discard_from
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos.corral.v1 import event_pb2, pod_pb2
from protos.kinds import by_kind, meta
from protos.pods import is_terminating

log = structlog.get_logger(__name__)

DEPENDENT_KINDS = ("ReplicaSet", "Job", "Pod", "PersistentVolumeClaim", "ControllerRevision", "Lease")
EVENT = "Event"
POD = "Pod"
NODE = "Node"
# Seconds before looking again: caches still syncing; a write lost a race.
NOT_SYNCED_RETRY = 0.5
CONFLICT_RETRY = 0.1
DEFAULT_EVENT_TTL = 3600.0


def gc_key(kind: str, obj: Message) -> str:
    m = meta(obj)
    return f"{kind}/{m.namespace}/{m.name}"


class GarbageCollector:
    name: str = "garbagecollector"
    kinds: tuple[str, ...] = (
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "CronJob",
        "Job",
        "Pod",
        "PersistentVolumeClaim",
        "ControllerRevision",
        "Lease",
        "Event",
        "Node",
    )
    workers: int = 2

    def __init__(
        self, api: ObjectApi, *, event_ttl: float = DEFAULT_EVENT_TTL, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.api = api
        self.event_ttl = timedelta(seconds=event_ttl)
        self.now = now
        self._informers: dict[str, Informer] = {}
        # owner uid → keys of the dependents that reference it
        self._dependents: dict[str, set[str]] = {}
        self._owners_of: dict[str, tuple[str, ...]] = {}

    # -- wiring ------------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._informers = {kind: informers[kind] for kind in self.kinds}
        for kind in DEPENDENT_KINDS:
            self._informers[kind].add_listener(self._indexer(kind))

    def _indexer(self, kind: str) -> Callable[[CacheEvent], None]:
        def index(event: CacheEvent) -> None:
            prev = event.prev
            if (
                event.change is Change.MODIFIED
                and prev is not None
                and meta(prev).owner_references == meta(event.obj).owner_references
            ):
                return  # the same owners: the index holds already
            key = gc_key(kind, event.obj)
            for uid in self._owners_of.pop(key, ()):
                discard_from(self._dependents, uid, key)
            if event.change is Change.DELETED:
                return
            uids = tuple(ref.uid for ref in meta(event.obj).owner_references)
            if uids:
                self._owners_of[key] = uids
                for uid in uids:
                    self._dependents.setdefault(uid, set()).add(key)

        return index

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        keys: list[str] = []
        if kind == NODE:
            if event.change is Change.DELETED:
                keys += self._terminating_on(meta(event.obj).name)
        elif event.change is Change.DELETED:
            keys += sorted(self._dependents.get(meta(event.obj).uid, ()))
        elif kind != EVENT and event.prev is not None and not collector_sees_change(event.prev, event.obj):
            pass  # a status write, a Lease renewal: nothing the collector looks at changed
        elif (
            kind == EVENT
            or (kind in DEPENDENT_KINDS and meta(event.obj).owner_references)
            or (kind == POD and is_terminating(event.obj))
        ):
            keys.append(gc_key(kind, event.obj))
        return keys

    def _terminating_on(self, node: str) -> list[str]:
        pods = self._informers[POD].items.values()
        return sorted(
            gc_key(POD, p)
            for p in pods
            if isinstance(p, pod_pb2.Pod) and p.spec.node_name == node and is_terminating(p)
        )

    def all_keys(self) -> Iterable[str]:
        if not self._informers:
            return []
        keys = [gc_key(EVENT, e) for e in self._informers[EVENT].items.values()]
        for kind in DEPENDENT_KINDS:
            keys += [
                gc_key(kind, o)
                for o in self._informers[kind].items.values()
                if meta(o).owner_references or (kind == POD and is_terminating(o))
            ]
        return keys

    def synced(self) -> bool:
        return bool(self._informers) and all(i.synced.is_set() for i in self._informers.values())

    # -- sync --------------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        if not self.synced():
            log.debug("gc_waiting_for_caches", key=key)
            return NOT_SYNCED_RETRY
        kind, namespace, name = key.split("/", 2)
        cached = self._informers[kind].items.get(f"{namespace}/{name}" if namespace else name)
        if cached is None:
            return None
        try:
            if kind == EVENT:
                return await self._sync_event(cached)
            await self._sync_dependent(kind, cached)
        except ConflictError:
            return CONFLICT_RETRY
        except NotFoundError:
            return None
        return None

    async def _sync_event(self, event: Message) -> float | None:
        if not isinstance(event, event_pb2.Event):
            return None
        expires = event_expires_at(event, self.event_ttl)
        if expires is None:
            return None
        left = (expires - self.now()).total_seconds()
        if left > 0:
            return left
        await self.api.remove(event)
        log.info("event_expired", event=object_key(event), reason=event.reason)
        return None

    async def _sync_dependent(self, kind: str, cached: Message) -> None:
        if kind == POD and await self._delete_if_stranded(cached):
            return
        if is_terminating(cached) or not is_orphan(cached, self._cached_owner_uids(cached)):
            return
        info = by_kind(kind)
        m = meta(cached)
        live = await self.api.find(info, m.namespace, m.name)
        if live is None or is_terminating(live) or not is_orphan(live, await self._live_owner_uids(live)):
            return
        result = await self.api.delete_version(live)
        owners = [f"{r.kind}/{r.name} ({r.uid})" for r in meta(live).owner_references]
        log.info(
            "garbage_collected",
            kind=kind,
            namespace=m.namespace,
            name=m.name,
            owners=owners,
            terminating=is_terminating(result),
        )

    async def _delete_if_stranded(self, cached: Message) -> bool:
        """Delete a terminating pod at once if its node is gone; True if it was."""
        node = cached.spec.node_name if isinstance(cached, pod_pb2.Pod) else ""
        if not is_stranded(cached, node_exists=node in self._informers[NODE].items):
            return False
        m = meta(cached)
        live = await self.api.find(by_kind(POD), m.namespace, m.name)
        if not isinstance(live, pod_pb2.Pod):
            return True
        live_node = await self.api.find(by_kind(NODE), "", live.spec.node_name)
        if not is_stranded(live, node_exists=live_node is not None):
            return False
        await self.api.remove(live)
        log.warning(
            "terminating_pod_deleted", namespace=m.namespace, name=m.name, node=live.spec.node_name, reason="node gone"
        )
        return True

    def _cached_owner_uids(self, obj: Message) -> dict[OwnerKey, str]:
        uids: dict[OwnerKey, str] = {}
        for key in owner_keys(obj):
            informer = self._informers.get(key.kind) if key is not None else None
            if key is None or informer is None:
                continue
            owner = informer.items.get(f"{key.namespace}/{key.name}" if key.namespace else key.name)
            if owner is not None:
                uids[key] = meta(owner).uid
        return uids

    async def _live_owner_uids(self, obj: Message) -> dict[OwnerKey, str]:
        uids: dict[OwnerKey, str] = {}
        for key in owner_keys(obj):
            if key is None:
                continue
            owner = await self.api.find(by_kind(key.kind), key.namespace, key.name)
            if owner is not None:
                uids[key] = meta(owner).uid
        return uids
