"""The namespace controller's shell: Terminating namespaces from the cache,
their contents listed and deleted through `ObjectApi`, the namespace deleted
once nothing is left.

Keys are namespace names. A namespace is synced when it is marked Terminating
(and at the start of a term, for those already marked), and when a pod in it
goes away (a pod stopping on its node is what a namespace usually waits for);
while anything is left it is looked at again every `recheck` seconds. Each
pass lists every namespaced kind in the namespace from the store and deletes
what is not already being deleted: pods gracefully (their nodes stop them
first), everything else at once, each a compare-and-swap on the version read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import ApiError, ConflictError, NotFoundError
from controlplane.apiserver.handlers import MAX_PAGE, ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.namespace.reconcile import content_kinds, plan_namespace
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer
from protos.corral.v1 import namespace_pb2
from protos.kinds import KindInfo, by_kind, meta
from protos.pods import is_terminating

log = structlog.get_logger(__name__)

NAMESPACE = by_kind("Namespace")
DEFAULT_RECHECK = 5.0
CONFLICT_RETRY = 0.2


class NamespaceController:
    name: str = "namespace"
    kinds: tuple[str, ...] = ("Namespace", "Pod")
    workers: int = 2

    def __init__(
        self, api: ObjectApi, *, recheck: float = DEFAULT_RECHECK, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.api = api
        self.recheck = recheck
        self.now = now
        self._namespaces: Informer | None = None

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._namespaces = informers["Namespace"]

    def _terminating(self, name: str) -> bool:
        ns = self._namespaces.items.get(name) if self._namespaces is not None else None
        return ns is not None and is_terminating(ns)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "Namespace":
            return [meta(event.obj).name] if is_terminating(event.obj) else []
        namespace = meta(event.obj).namespace
        return [namespace] if self._terminating(namespace) else []

    def all_keys(self) -> Iterable[str]:
        if self._namespaces is None:
            return []
        return [meta(ns).name for ns in self._namespaces.items.values() if is_terminating(ns)]

    async def sync(self, key: str) -> float | None:
        if not self._terminating(key):
            return None
        try:
            live = await self.api.find(NAMESPACE, "", key)
            if not isinstance(live, namespace_pb2.Namespace) or not is_terminating(live):
                return None
            left, failures = await self._delete_content(key)
            plan = plan_namespace(live, left, failures, self.now())
            if plan.finalize:
                await self.api.remove(live)
                log.info("namespace_deleted", name=key)
                return None
            if plan.status != live.status:
                updated = namespace_pb2.Namespace()
                updated.CopyFrom(live)
                updated.status.CopyFrom(plan.status)
                await self.api.update_status(updated)
        except (ConflictError, NotFoundError):
            return CONFLICT_RETRY
        log.info("namespace_content_remaining", name=key, left=sum(left.values()), failures=len(failures))
        return self.recheck

    async def _delete_content(self, namespace: str) -> tuple[dict[KindInfo, int], list[str]]:
        """One pass: delete what is not being deleted yet; how many of each kind are left, and what failed."""
        left: dict[KindInfo, int] = {}
        failures: list[str] = []
        for info in content_kinds():
            count = 0
            for obj in await self._list(info, namespace):
                if not is_terminating(obj) and await self._delete(info, obj, failures):
                    continue
                count += 1
            if count:
                left[info] = count
        return left, failures

    async def _delete(self, info: KindInfo, obj: Message, failures: list[str]) -> bool:
        """Delete one object; True when it is gone (not merely marked, changed or failed)."""
        try:
            result = await self.api.delete_version(obj)
        except NotFoundError:
            return True
        except ConflictError:
            return False
        except ApiError as e:
            failures.append(f'{info.plural} "{meta(obj).name}": {e}')
            return False
        log.info("namespace_content_deleted", kind=info.kind, namespace=meta(obj).namespace, name=meta(obj).name)
        return not is_terminating(result)

    async def _list(self, info: KindInfo, namespace: str) -> list[Message]:
        items: list[Message] = []
        token = ""
        while True:
            page = await self.api.list(info.kind, namespace, limit=MAX_PAGE, continue_token=token)
            items += page.items
            token = page.continue_token
            if not token:
                return items
