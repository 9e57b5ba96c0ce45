"""Group commit: writes issued in the same turn of the event loop go to the
store together, in as few transactions as their limits allow.

Creates are the first use; compare-and-swap updates the second (a hundred
agents reporting their pods' status at once, the scheduler's binds): each
write keeps its own outcome, so a conflict fails only its own caller.

A ReplicaSet scaling up creates its pods with `asyncio.gather` (batches of 1,
2, 4 … 256, as Kubernetes' slow start does); each create used to be one etcd
transaction, one gRPC call with its own Python overhead on both ends. A
`GroupCommit` holds each write until the loop has run everything that was
ready, then hands them to ``commit`` in batches: at most ``max_items``, at
most ``max_bytes`` of values (etcd refuses requests over 1.5 MiB), and no key
twice in one batch (etcd refuses a transaction that writes a key twice).
``commit`` answers each write on its own, so one failed write fails only its
caller.

Latency: a write waits for the rest of the current loop turn, never for a
timer. A caller cancelled before its batch is sent is left out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["GroupCommit", "PendingWrite"]


@dataclass
class PendingWrite:
    """One caller's write, waiting for its batch; ``done`` gets the revision or the error.
    ``expected``: the revision a compare-and-swap expects (0 for a create)."""

    key: str
    value: bytes
    done: asyncio.Future[int] = field(repr=False)
    expected: int = 0


# Answers one batch: for each write, in order, its revision or its error.
Commit = Callable[[Sequence[PendingWrite]], Awaitable[Sequence[int | BaseException]]]


class GroupCommit:
    def __init__(self, commit: Commit, *, max_items: int, max_bytes: int) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError("a batch needs room for at least one write")
        self._commit = commit
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._waiting: list[PendingWrite] = []
        self._inflight: set[asyncio.Task[None]] = set()

    async def write(self, key: str, value: bytes, expected: int = 0) -> int:
        """Write ``key`` with the writes issued beside it; its revision, or its own error."""
        loop = asyncio.get_running_loop()
        pending = PendingWrite(key, value, loop.create_future(), expected)
        self._waiting.append(pending)
        if len(self._waiting) == 1:
            loop.call_soon(self._flush)
        return await pending.done

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for batch in batches([w for w in waiting if not w.done.done()], self.max_items, self.max_bytes):
            task = asyncio.ensure_future(self._send(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _send(self, batch: list[PendingWrite]) -> None:
        try:
            results = await self._commit(batch)
        except BaseException as exc:
            for w in batch:
                if not w.done.done():
                    w.done.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            return
        for w, result in zip(batch, results, strict=True):
            if w.done.done():
                continue
            if isinstance(result, BaseException):
                w.done.set_exception(result)
            else:
                w.done.set_result(result)


def batches(writes: Sequence[PendingWrite], max_items: int, max_bytes: int) -> list[list[PendingWrite]]:
    """``writes`` in order, cut into batches within the limits; a key already in
    the batch being filled starts the next one (the two writes then race, as
    two callers' writes of one key always do)."""
    out: list[list[PendingWrite]] = []
    current: list[PendingWrite] = []
    keys: set[str] = set()
    size = 0
    for w in writes:
        if current and (len(current) >= max_items or size + len(w.value) > max_bytes or w.key in keys):
            out.append(current)
            current, keys, size = [], set(), 0
        current.append(w)
        keys.add(w.key)
        size += len(w.value)
    if current:
        out.append(current)
    return out
