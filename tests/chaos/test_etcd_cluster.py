"""A 3-member etcd cluster losing the member the control plane talks to
(kill -9): the store moves to the next endpoint, and a `corral server` given
all three keeps serving and leading."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import pytest

from controlplane.store.base import WatchEvent
from controlplane.store.errors import UnavailableError
from controlplane.store.etcd import EtcdStore
from corral.client import Client, ClientError
from protos.corral.v1 import meta_pb2, workloads_pb2
from tests.chaos.conftest import EtcdCluster, Replica, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.etcd, pytest.mark.timeout(90)]

DEADLINE = 20.0


async def retried_write(store: EtcdStore, key: str) -> tuple[int, int]:
    """Create ``key``, retrying while etcd is unavailable: (revision, failed attempts)."""
    failures = 0
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            return await store.create(key, b"after"), failures
        except UnavailableError:
            failures += 1
            assert time.monotonic() < deadline, "no write succeeded after losing a member"
            await asyncio.sleep(0.1)


async def drain(events: AsyncGenerator[WatchEvent, None], into: list[WatchEvent]) -> None:
    """Collect a watch's events until it ends (or DEADLINE passes)."""
    async with contextlib.aclosing(events), asyncio.timeout(DEADLINE):
        async for event in events:
            into.append(event)


async def test_the_store_moves_to_another_member_when_its_own_dies(
    etcd_cluster: EtcdCluster, report: Callable[[str], None]
) -> None:
    store = await EtcdStore.connect(etcd_cluster.endpoints)
    try:
        first = store.endpoint
        before = await store.create("/chaos/before", b"")
        events = store.watch("/chaos/", start_revision=before)
        async with asyncio.timeout(DEADLINE):
            assert (await anext(events)).key == "/chaos/before"  # the watch is open on the first member

        killed_at = time.monotonic()
        etcd_cluster.kill9(etcd_cluster.member(first))
        revision, failed = await retried_write(store, "/chaos/after")
        recovered = time.monotonic() - killed_at

        assert store.endpoint != first
        assert await store.get("/chaos/before") is not None
        # The watch on the dead member ends as unavailable; watching again from
        # where it stopped misses nothing.
        seen: list[WatchEvent] = []
        with pytest.raises(UnavailableError):
            await drain(events, seen)
        assert seen == []
        again = store.watch("/chaos/", start_revision=before + 1)
        async with contextlib.aclosing(again), asyncio.timeout(DEADLINE):
            replayed = await anext(again)
        assert (replayed.key, replayed.revision) == ("/chaos/after", revision)
        report(
            f"etcd member {first} killed: the store wrote through another member after {recovered:.2f} s "
            f"({failed} attempts failed as unavailable)"
        )
    finally:
        await store.close()


def deployment(name: str) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name=name))
    d.spec.replicas = 1
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    d.spec.template.spec.containers.add(name="main", image="httpd:2.4")
    return d


async def test_a_server_on_the_cluster_keeps_serving_and_leading_when_a_member_dies(
    etcd_cluster: EtcdCluster, tmp_path: Path, report: Callable[[str], None]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    server = Replica("server", ",".join(etcd_cluster.endpoints), tmp_path / "server.log", env)
    server.start()
    try:
        await wait_for(lambda: server.events("controllers_started"), DEADLINE, "the server to lead", server)
        client = Client(server.address, server.credentials(), timeout=10)

        killed_at = time.monotonic()
        etcd_cluster.kill9(etcd_cluster.members[0])  # the server talks to the first endpoint

        async def applied() -> bool:
            try:
                await asyncio.to_thread(client.apply, deployment("after-member-loss"))
            except ClientError:  # unavailable while the server moves on; the deadline decides
                return False
            return True

        await wait_for(applied, DEADLINE, "the API to accept a write", server)
        served = time.monotonic() - killed_at

        async def replica_sets() -> list[Any]:
            items, _ = await asyncio.to_thread(client.list, "replicasets")
            return items

        await wait_for(replica_sets, DEADLINE, "the controllers to act", server)
        acted = time.monotonic() - killed_at
        assert server.events("etcd_failover")
        client.close()
        report(
            f"etcd member killed under a server: API write accepted after {served:.2f} s, "
            f"controllers acted after {acted:.2f} s"
        )
    finally:
        server.stop()
