"""What only the etcd store does: endpoints of a cluster tried in turn, and
watches that end when cancelled at any point of their registration."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.store.errors import UnavailableError
from controlplane.store.etcd import EtcdStore

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

DEAD = "127.0.0.1:1"  # nothing listens on port 1


async def test_connect_skips_endpoints_that_do_not_answer(etcd_endpoint: str, key_prefix: str) -> None:
    store = await EtcdStore.connect([DEAD, etcd_endpoint], timeout=2)
    try:
        assert store.endpoint == etcd_endpoint
        assert await store.create(key_prefix + "a", b"") > 0
    finally:
        await store.close()


async def test_connect_fails_when_no_endpoint_answers() -> None:
    with pytest.raises(UnavailableError, match="no etcd endpoint answered"):
        await EtcdStore.connect([DEAD, "127.0.0.1:2"], timeout=2)


async def test_a_watch_cancelled_while_it_registers_always_ends(etcd_endpoint: str, key_prefix: str) -> None:
    """A cancel landing at any step of the registration ends the watcher's
    task (aetcd's wait_for on Python 3.11 could swallow it: a hang)."""
    store = await EtcdStore.connect([etcd_endpoint])
    try:
        revision = await store.create(key_prefix + "a", b"")
        for steps in range(40):
            events = store.watch(key_prefix, start_revision=revision + 1)
            task = asyncio.create_task(anext(events))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert task in done, f"the watch ignored a cancel after {steps} steps"
            await events.aclose()
    finally:
        await store.close()
