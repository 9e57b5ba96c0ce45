"""The metrics relay's shell on the in-memory store: replicas find each other through their
announced keys, and a peer that is down is logged once and its batches dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from controlplane.replicas.relay import MetricsRelay
from controlplane.store.memory import MemoryStore
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import metrics_pb2
from tests.pki import TestCluster

DEAD = "127.0.0.1:1"  # nothing listens on port 1


async def until(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(10):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


def relay(store: MemoryStore, holder: str, address: str) -> MetricsRelay:
    return MetricsRelay(
        store,
        key_prefix="/t",
        holder=holder,
        address=address,
        credentials=TestCluster().admin(),
        lease_ttl=3,
        flush_every=0.05,
        call_timeout=1.0,
    )


def dropped(sender: MetricsRelay, batches: int) -> Callable[[], bool]:
    return lambda: sender.failed_sends == batches


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore()
    yield memory
    await memory.close()


async def test_replicas_find_each_other_and_forget_one_that_stops(store: MemoryStore) -> None:
    a, b = relay(store, "h:1:a", "10.0.0.1:7443"), relay(store, "h:2:b", "10.0.0.2:7443")
    ta, tb = asyncio.create_task(a.run()), asyncio.create_task(b.run())
    try:
        await until(lambda: a.peers.targets() == ["10.0.0.2:7443"], "a sees b")
        await until(lambda: b.peers.targets() == ["10.0.0.1:7443"], "b sees a")
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)
        await until(lambda: a.peers.targets() == [], "a forgets b once b revoked its lease")
    finally:
        for task in (ta, tb):
            task.cancel()
        await asyncio.gather(ta, tb, return_exceptions=True)


async def test_a_lone_replica_queues_nothing(store: MemoryStore) -> None:
    lone = relay(store, "h:1:a", "10.0.0.1:7443")
    task = asyncio.create_task(lone.run())
    try:
        async with asyncio.timeout(10):
            while await store.get("/t/replicas/h:1:a") is None:
                await asyncio.sleep(0.01)
        lone.share(metrics_pb2.MetricsReport(node_name="n1"))
        assert lone.outbox.reports == {}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_peer_that_is_down_is_logged_once_and_its_batches_dropped(store: MemoryStore) -> None:
    sender = relay(store, "h:1:a", "10.0.0.1:7443")
    await store.create("/t/replicas/h:9:dead", DEAD.encode())
    with capture_logs() as logs:
        task = asyncio.create_task(sender.run())
        try:
            await until(lambda: sender.peers.targets() == [DEAD], "the dead peer")
            for round_ in range(2):
                sender.share(metrics_pb2.MetricsReport(node_name=f"n{round_}"))
                await until(dropped(sender, round_ + 1), "the batch dropped for the dead peer")
                assert sender.outbox.reports == {}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert sum(e["event"] == "metrics_peer_unreachable" for e in logs) == 1


async def test_credentials_past_two_thirds_of_their_life_are_renewed_before_a_send(store: MemoryStore) -> None:
    first, second = TestCluster().admin(), TestCluster().admin()
    clock = [first.renew_at() - timedelta(seconds=1)]
    issued: list[Credentials] = []

    def renew() -> Credentials:
        issued.append(second)
        return second

    sender = MetricsRelay(
        store,
        key_prefix="/t",
        holder="h:1:a",
        address="10.0.0.1:7443",
        credentials=first,
        lease_ttl=3,
        flush_every=0.05,
        call_timeout=1.0,
        renew=renew,
        now=lambda: clock[0],
    )
    await store.create("/t/replicas/h:9:dead", DEAD.encode())
    task = asyncio.create_task(sender.run())
    try:
        await until(lambda: sender.peers.targets() == [DEAD], "the peer")
        sender.share(metrics_pb2.MetricsReport(node_name="n0"))
        await until(dropped(sender, 1), "the first batch sent (and dropped)")
        assert issued == [] and sender.credentials is first
        channel = sender._channels[DEAD]
        clock[0] = first.renew_at()
        sender.share(metrics_pb2.MetricsReport(node_name="n1"))
        await until(dropped(sender, 2), "the second batch sent")
        assert issued == [second] and sender.credentials is second
        assert sender._channels[DEAD] is not channel, "the channel is opened again with the new certificate"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
