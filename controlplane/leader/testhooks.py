"""Test-only switches, read from the environment at startup. Never set them in
production: the server logs each one loudly when it is on.

``CORRAL_TEST_DISABLE_FENCING=1``
    The leader's writes carry no fence. Exists so that the chaos tests can
    show the anomaly fencing prevents (a deposed leader's late write landing),
    which proves that they test what they claim.

``CORRAL_TEST_WRITE_DELAY_FILE=PATH``
    While PATH exists, every write of the leader is held before it is sent;
    once held it is in flight: cancelling the writer (as stepping down does)
    does not recall it, as a request already on the wire cannot be recalled.
    Lets a test pause a leader with a write pending, reliably.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from controlplane.store.base import Fence, KeyValue, ListPage, Store, WatchEvent
from controlplane.store.errors import StoreError

log = structlog.get_logger(__name__)

DISABLE_FENCING_ENV = "CORRAL_TEST_DISABLE_FENCING"
WRITE_DELAY_FILE_ENV = "CORRAL_TEST_WRITE_DELAY_FILE"
HOLD_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class TestHooks:
    """Which test-only switches are on."""

    __test__ = False  # not a pytest test class, whatever its name

    disable_fencing: bool = False
    write_delay_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TestHooks:
        delay = environ.get(WRITE_DELAY_FILE_ENV, "")
        return cls(
            disable_fencing=environ.get(DISABLE_FENCING_ENV, "") not in ("", "0"),
            write_delay_file=Path(delay) if delay else None,
        )

    def announce(self) -> None:
        """Log every switch that is on, as an error: no production server runs with one."""
        if self.disable_fencing:
            log.error(
                "TEST_ONLY_FENCING_DISABLED",
                env=DISABLE_FENCING_ENV,
                danger="a deposed leader's late writes will land; never run a cluster like this",
            )
        if self.write_delay_file is not None:
            log.error(
                "TEST_ONLY_WRITE_DELAY",
                env=WRITE_DELAY_FILE_ENV,
                path=str(self.write_delay_file),
                danger="the leader's writes are held while this file exists",
            )


def leader_store(store: Store, fence: Fence, hooks: TestHooks) -> Store:
    """The store a leader's controllers write through: fenced with its term
    (unless a test turned fencing off), writes held while a test asks."""
    view = store if hooks.disable_fencing else store.fenced(fence)
    if hooks.write_delay_file is not None:
        view = HeldWrites(view, hooks.write_delay_file)
    return view


class HeldWrites:
    """A `Store` whose writes wait while ``path`` exists, then go out even if
    their caller was cancelled meanwhile (test-only, see the module doc)."""

    def __init__(self, inner: Store, path: Path, *, poll: float = HOLD_POLL_SECONDS) -> None:
        self._inner = inner
        self._path = path
        self._poll = poll
        self._in_flight: set[asyncio.Task[int]] = set()

    async def create(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        return await self._send("create", key, lambda: self._inner.create(key, value, lease=lease))

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        return await self._send(
            "update", key, lambda: self._inner.update(key, value, expected_revision=expected_revision)
        )

    async def update_many(self, items: Sequence[tuple[str, bytes, int]]) -> int:
        return await self._send("update_many", items[0][0] if items else "", lambda: self._inner.update_many(items))

    async def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        return await self._send("delete", key, lambda: self._inner.delete(key, expected_revision=expected_revision))

    async def _send(self, op: str, key: str, write: Callable[[], Awaitable[int]]) -> int:
        if not self._path.exists():
            return await write()
        log.warning("test_write_held", op=op, key=key)
        task = asyncio.get_running_loop().create_task(self._release(op, key, write), name=f"held-{op}")
        self._in_flight.add(task)
        task.add_done_callback(self._landed)
        return await asyncio.shield(task)

    async def _release(self, op: str, key: str, write: Callable[[], Awaitable[int]]) -> int:
        while self._path.exists():  # noqa: ASYNC110 - the test removes a file: there is no event to await
            await asyncio.sleep(self._poll)
        try:
            revision = await write()
        except StoreError as e:
            log.warning("test_write_released", op=op, key=key, outcome=type(e).__name__, error=str(e))
            raise
        log.warning("test_write_released", op=op, key=key, outcome="written", revision=revision)
        return revision

    def _landed(self, task: asyncio.Task[int]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its outcome is logged, its caller may be gone

    # -- everything else passes through -------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        return await self._inner.get(key)

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 500,
        start_after: str | None = None,
        revision: int | None = None,
    ) -> ListPage:
        return await self._inner.list(prefix, limit=limit, start_after=start_after, revision=revision)

    async def current_revision(self) -> int:
        return await self._inner.current_revision()

    def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        return self._inner.watch(prefix, start_revision=start_revision)

    async def grant_lease(self, ttl: int) -> int:
        return await self._inner.grant_lease(ttl)

    async def refresh_lease(self, lease: int) -> int:
        return await self._inner.refresh_lease(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self._inner.revoke_lease(lease)

    def fenced(self, fence: Fence) -> Store:
        return HeldWrites(self._inner.fenced(fence), self._path, poll=self._poll)

    async def compact(self, revision: int) -> None:
        await self._inner.compact(revision)

    async def close(self) -> None:
        await self._inner.close()
