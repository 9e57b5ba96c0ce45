"""A watch whose client stops reading is cut off once what waits for it passes
a bound: the server stops buffering (the store's watch is closed), the client
gets OUT_OF_RANGE after what was already on its way, and lists again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.service import ObjectService, watch_bound
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from corral import client as api
from protos.corral.v1 import api_pb2, api_pb2_grpc, meta_pb2, pod_pb2
from tests.pki import TestCluster, aio_channel

pytestmark = pytest.mark.timeout(120)

MAX_EVENTS = 200
MAX_BYTES = 4 * 1024 * 1024
PAYLOAD = "x" * 16 * 1024  # every event about 16 KiB: the transport's windows fill fast
PODS = 2000  # 32 MiB of events in all: far more than the windows and the bound hold


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    p.spec.containers.add(name="main", image="busybox:1").env.add(name="PAD", value=PAYLOAD)
    return p


@dataclass
class Served:
    address: str
    cluster: TestCluster
    objects: ObjectApi
    store: MemoryStore


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    store = MemoryStore()
    objects = ObjectApi(ObjectStore(store))
    server = grpc.aio.server(options=[("grpc.max_send_message_length", 8 * 1024 * 1024)])
    api_pb2_grpc.add_ObjectServiceServicer_to_server(
        ObjectService(objects, watch_limit=watch_bound(MAX_EVENTS, MAX_BYTES)), server
    )
    cluster = TestCluster()
    port = cluster.add_port(server)
    await server.start()
    try:
        yield Served(f"127.0.0.1:{port}", cluster, objects, store)
    finally:
        await server.stop(0)


def cut_offs(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "watch_cut_off"]


def waiting_in_store(store: MemoryStore) -> int:
    """Events the store holds for its open watches, not yet read by them."""
    return sum(s.queue.qsize() for s in store._subscribers)


async def read_to_the_end(call: Any) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


@pytest.mark.parametrize("method", ["WatchBatches", "Watch"])
async def test_a_client_that_stops_reading_is_cut_off_and_lists_again(served: Served, method: str) -> None:
    await served.objects.create(pod("first"))
    options = [("grpc.max_receive_message_length", 8 * 1024 * 1024)]
    with capture_logs() as logs:
        async with aio_channel(served.address, served.cluster.admin(), options=options) as channel:
            stub = api_pb2_grpc.ObjectServiceStub(channel)
            call = getattr(stub, method)(api_pb2.WatchRequest(kind="pods", namespace="default"))
            first = await call.read()  # the watch is open: from now on, this client reads nothing
            assert first is not grpc.aio.EOF
            most_waiting = 0
            for i in range(PODS):
                await served.objects.create(pod(f"p{i}"))
                most_waiting = max(most_waiting, waiting_in_store(served.store))
                if cut_offs(logs):
                    break
                if i % 20 == 0:
                    await asyncio.sleep(0.01)  # turns for the transport to fill up, as over a real network
            # The bound is what piles up: the store's queue for the watch never held more.
            assert most_waiting <= MAX_EVENTS + 1
            [cut] = cut_offs(logs)
            assert cut["buffered_events"] <= MAX_EVENTS + 1
            assert cut["buffered_bytes"] <= MAX_BYTES + len(PAYLOAD) + 1024
            async with asyncio.timeout(10):  # the store's watch is closed once cut off
                while served.store._subscribers:
                    await asyncio.sleep(0.01)
            # The client, reading again, gets what was on its way, then OUT_OF_RANGE: list again.
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(read_to_the_end(call), 30)
            assert ended.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert "list again" in (ended.value.details() or "")
    # corral's client: GoneError, then a list and a watch from its version resume.
    client = api.Client(served.address, served.cluster.admin())
    try:
        listed, version = await asyncio.to_thread(client.list, "pods", "default")
        assert len(listed) > 1

        def next_event() -> str:
            for ev in client.watch("pods", "default", resource_version=version):
                return ev.obj.metadata.name  # type: ignore[no-any-return]
            raise AssertionError("the watch ended")

        following = asyncio.ensure_future(asyncio.to_thread(next_event))
        await served.objects.create(pod("after"))
        async with asyncio.timeout(15):
            assert await following == "after"
    finally:
        client.close()


async def test_corral_client_stopped_reading_gets_gone(served: Served) -> None:
    await served.objects.create(pod("first"))
    client = api.Client(served.address, served.cluster.admin())
    try:
        events = client.watch("pods", "default")
        first = await asyncio.to_thread(next, events)
        assert first.obj.metadata.name == "first"
        with capture_logs() as logs:  # now the client reads nothing
            for i in range(PODS):
                await served.objects.create(pod(f"p{i}"))
                if cut_offs(logs):
                    break
                if i % 20 == 0:
                    await asyncio.sleep(0.01)
        assert cut_offs(logs)

        def read_on() -> None:
            for _ in events:
                pass

        with pytest.raises(api.GoneError, match="list again"):
            await asyncio.wait_for(asyncio.to_thread(read_on), 30)
    finally:
        client.close()
