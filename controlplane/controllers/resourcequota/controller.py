"""The resource quota controller's shell: cache events in, recounts through
`ObjectApi.quota_usage`, status written as a compare-and-swap.

Keys are quota keys ("ns/name"). A sync reads the quota from the store, then
counts the namespace's stored objects (read after the quota), and writes the
status over the quota's resourceVersion: a create charged by the API server
in between moves that version, so the write fails and the key is retried on
fresh counts rather than forgetting the charge. Every quota is recounted
again `resync` seconds after its last sync (the kinds counted with
`count/<resource>` that no informer here watches are caught up then).

One window is left by that order: a create charged before the quota was read
whose object is not yet written when the objects are listed (the API server
charges, then writes). A recount that would lower a quota is therefore
written only once the quota has gone `settle` seconds without a charge (its
resourceVersion unchanged across a wait): by then every earlier charge's
object is written, or its write failed and gave the charge back.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.resourcequota.reconcile import lowers, may_free, needs_status, recounted
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos.corral.v1 import quota_pb2
from protos.kinds import by_kind, meta

log = structlog.get_logger(__name__)

QUOTA = "ResourceQuota"
DEFAULT_RESYNC = 60.0
DEFAULT_SETTLE = 1.0
CONFLICT_RETRY = 0.1


class ResourceQuotaController:
    name: str = "resourcequota"
    kinds: tuple[str, ...] = (
        QUOTA,
        "Pod",
        "Service",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "ReplicaSet",
    )
    workers: int = 2

    def __init__(self, api: ObjectApi, *, resync: float = DEFAULT_RESYNC, settle: float = DEFAULT_SETTLE) -> None:
        self.api = api
        self.resync = resync
        # Seconds a quota must go uncharged before a recount may lower it (see the module doc).
        self.settle = settle
        # Quota key → the resourceVersion a lowering recount waits to see unchanged.
        self._settling: dict[str, str] = {}
        self._quotas: Informer | None = None

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._quotas = informers[QUOTA]

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == QUOTA:
            obj = event.obj
            changed = isinstance(obj, quota_pb2.ResourceQuota) and needs_status(obj)
            return [object_key(obj)] if event.change is not Change.DELETED and changed else []
        if not may_free(event.change is Change.DELETED, event.obj, event.prev):
            return []
        return self._in_namespace(meta(event.obj).namespace)

    def _in_namespace(self, namespace: str) -> list[str]:
        if self._quotas is None:
            return []
        return sorted(object_key(q) for q in self._quotas.items.values() if meta(q).namespace == namespace)

    def all_keys(self) -> Iterable[str]:
        if self._quotas is None:
            return []
        return sorted(object_key(q) for q in self._quotas.items.values())

    async def sync(self, key: str) -> float | None:
        namespace, _, name = key.partition("/")
        found = await self.api.find(by_kind(QUOTA), namespace, name)
        if not isinstance(found, quota_pb2.ResourceQuota):
            return None
        usage = await self.api.quota_usage(found)
        updated = recounted(found, usage)
        if updated is None:
            self._settling.pop(key, None)
            return self.resync
        version = found.metadata.resource_version
        if lowers(found, usage) and self.settle > 0 and self._settling.get(key) != version:
            self._settling[key] = version
            return self.settle
        self._settling.pop(key, None)
        try:
            await self.api.update_status(updated)
        except ConflictError:
            return CONFLICT_RETRY
        except NotFoundError:
            return None
        log.info("quota_recounted", quota=key, used=dict(updated.status.used))
        return self.resync
