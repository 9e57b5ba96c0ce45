"""Run a function on the event loop from the scrape thread, and wait for its result;
`LoopCollector`, the series both planes compute that way at each scrape.

The HTTP server answers scrapes on its own threads; what the gauges read
(informer caches and work queues; the proxy's counters and the pod workers)
belongs to the event loop and is only touched there. A loop that does not
answer within the timeout (stopped, or blocked) costs the scrape those series,
never a hung scrape.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import structlog
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

log = structlog.get_logger(__name__)

T = TypeVar("T")
S = TypeVar("S")

# How long a scrape waits for the event loop.
SCRAPE_TIMEOUT = 5.0


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T], *, timeout: float) -> T | None:
    """`fn()` run on `loop`; None when the loop is closed or busy past `timeout`, or `fn` fails."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # scraped from the loop itself (e.g. a test calling the registry)
        return _guarded(fn)
    future: concurrent.futures.Future[T | None] = concurrent.futures.Future()

    def call() -> None:
        if future.set_running_or_notify_cancel():
            future.set_result(_guarded(fn))

    try:
        loop.call_soon_threadsafe(call)
    except RuntimeError:  # the loop is closed
        return None
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        log.warning("metrics_snapshot_timeout", timeout=timeout)
        return None


def _guarded(fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except Exception as e:  # a broken gauge must not fail the whole scrape
        log.warning("metrics_snapshot_failed", error=repr(e))
        return None


class LoopCollector(Collector, Generic[S]):
    """Series computed at each scrape from what the event loop owns.

    `snapshot()` runs on the loop (`call_on_loop`), `families(snapshot)` on the scrape thread; before
    `attach_loop`, or when the loop does not answer, the families are there but empty (`families(None)`).
    """

    def __init__(
        self,
        snapshot: Callable[[], S],
        families: Callable[[S | None], list[Metric]],
        *,
        timeout: float = SCRAPE_TIMEOUT,
    ) -> None:
        self._snapshot = snapshot
        self._families = families
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach_loop(self) -> None:
        """Read the sources on the running loop from now on (call on it)."""
        self._loop = asyncio.get_running_loop()

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(None))

    def collect(self) -> Iterator[Metric]:
        loop = self._loop
        if loop is None:
            return iter(self._families(None))
        return iter(self._families(call_on_loop(loop, self._snapshot, timeout=self._timeout)))
