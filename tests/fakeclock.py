"""A fake loop clock for unit tests that wait to see that something does *not* happen.

On `FakeClockLoop` time moves only when nothing is ready to run, and then straight to the next
timer: `await asyncio.sleep(0.2)` returns at once, but only after every callback that was ready
ran, so "nothing happened in 0.2 s" is exact and instant. Pure-asyncio tests only: a thread or a
socket whose answer is due would see timeouts jump ahead of it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec

P = ParamSpec("P")


class FakeClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def _run_once(self) -> None:
        # BaseEventLoop's own queues: the callbacks ready now, and the timers (a heap, with cancelled ones).
        if not self._ready:
            due = [h.when() for h in self._scheduled if not h.cancelled()]
            if due:
                self._now = max(self._now, min(due))
        super()._run_once()  # type: ignore[misc]


def on_fake_clock(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async test on a `FakeClockLoop` of its own (instead of pytest-asyncio's loop)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with asyncio.Runner(loop_factory=FakeClockLoop) as runner:
            runner.run(test(*args, **kwargs))

    return run
