"""The resource quota controller's shell: cache events in, recounts through
`ObjectApi.quota_usage`, status written as a compare-and-swap.

Keys are quota keys ("ns/name"). A sync reads the quota from the store, then
counts the namespace's stored objects (read after the quota), and writes the
status over the quota's resourceVersion: a create charged by the API server
in between moves that version, so the write fails and the key is retried on
fresh counts rather than forgetting the charge. Every quota is recounted
again `resync` seconds after its last sync (the kinds counted with
`count/<resource>` that no informer here watches are caught up then).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.resourcequota.reconcile import may_free, needs_status, recounted
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos.corral.v1 import quota_pb2
from protos.kinds import by_kind, meta

log = structlog.get_logger(__name__)

QUOTA = "ResourceQuota"
DEFAULT_RESYNC = 60.0
CONFLICT_RETRY = 0.1


class ResourceQuotaController:
    name: str = "resourcequota"
    kinds: tuple[str, ...] = (QUOTA, "Pod", "Service", "Secret", "ConfigMap", "Deployment", "ReplicaSet")
    workers: int = 2

    def __init__(self, api: ObjectApi, *, resync: float = DEFAULT_RESYNC) -> None:
        self.api = api
        self.resync = resync
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
            return self.resync
        try:
            await self.api.update_status(updated)
        except ConflictError:
            return CONFLICT_RETRY
        except NotFoundError:
            return None
        log.info("quota_recounted", quota=key, used=dict(updated.status.used))
        return self.resync
