"""Node revocation: ``<prefix>/security/revocations/<node>`` holds the instant
before which every certificate issued to the node is refused.

Every replica keeps the records in memory, fed by a watch (re-listed after a
compaction or a lost connection), and calls ``on_revoked(node)`` for each new
or moved record so the node's open streams are closed within seconds. A node
revoked and then joined again with a fresh token gets a certificate issued
after the instant, which is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog

from controlplane.store import errors as store_errors
from controlplane.store.base import EventType, Store

log = structlog.get_logger(__name__)

RETRY_DELAY = 1.0


class RevocationList:
    def __init__(self, store: Store, prefix: str, on_revoked: Callable[[str], Any] | None = None) -> None:
        self.store = store
        self.prefix = f"{prefix.rstrip('/')}/security/revocations/"
        self.on_revoked = on_revoked
        self._before: dict[str, float] = {}
        self.synced = asyncio.Event()

    def revoked(self, node: str, issued_at: float) -> bool:
        before = self._before.get(node)
        return before is not None and issued_at < before

    async def revoke(self, node: str, now: float) -> float:
        """Refuse every certificate of ``node`` issued before ``now``; return ``now``."""
        key = self.prefix + node
        value = json.dumps({"node": node, "revoked_before": now}).encode()
        for _ in range(5):
            kv = await self.store.get(key)
            try:
                if kv is None:
                    await self.store.create(key, value)
                else:
                    await self.store.update(key, value, expected_revision=kv.mod_revision)
            except (store_errors.AlreadyExistsError, store_errors.ConflictError):
                continue
            self._set(node, now)
            return now
        raise store_errors.UnavailableError(f"the revocation of node {node} kept conflicting")

    def _set(self, node: str, before: float) -> None:
        if self._before.get(node, 0.0) >= before:
            return
        self._before[node] = before
        log.info("node_certificates_revoked", node=node, issued_before=before)
        if self.on_revoked is not None:
            self.on_revoked(node)

    def _apply(self, value: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            data = json.loads(value)
            self._set(str(data["node"]), float(data["revoked_before"]))

    async def run(self) -> None:
        """List, then follow the watch; start again after any store failure."""
        while True:
            try:
                await self._follow()
            except store_errors.StoreError as e:
                log.warning("revocations_watch_restarting", error=str(e))
            await asyncio.sleep(RETRY_DELAY)

    async def _follow(self) -> None:
        start: str | None = None
        revision: int | None = None
        while True:
            page = await self.store.list(self.prefix, start_after=start, revision=revision)
            for kv in page.items:
                self._apply(kv.value)
            revision = page.revision
            if not page.more or not page.items:
                break
            start = page.items[-1].key
        self.synced.set()
        async with contextlib.aclosing(self.store.watch(self.prefix, start_revision=revision + 1)) as events:
            async for event in events:
                if event.type is EventType.PUT:
                    self._apply(event.value)
