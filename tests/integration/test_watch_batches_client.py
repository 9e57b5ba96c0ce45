"""`Client.watch` over real gRPC (mutual TLS, in-process servers): batched
watches from the ObjectService, and the old one-event Watch from a server that
does not have WatchBatches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.service import ObjectService
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from corral import client as api
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import api_pb2, api_pb2_grpc, meta_pb2, pod_pb2
from protos.kinds import wrap
from tests.pki import TestCluster

pytestmark = pytest.mark.timeout(60)


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    p.spec.containers.add(name="main", image="busybox:1")
    return p


@dataclass
class Served:
    address: str
    admin: Credentials


async def serve(register: Callable[[grpc.aio.Server], None]) -> tuple[grpc.aio.Server, Served]:
    server = grpc.aio.server()
    register(server)
    cluster = TestCluster()
    port = cluster.add_port(server)
    await server.start()
    return server, Served(f"127.0.0.1:{port}", cluster.admin())


async def watch(served: Served, count: int, **kwargs: Any) -> list[tuple[str, str]]:
    """The first ``count`` events of ``Client.watch("pods", "default", **kwargs)``, as (type, name)."""
    client = api.Client(served.address, served.admin)

    def follow() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        for ev in client.watch("pods", "default", **kwargs):
            seen.append((ev.type, ev.obj.metadata.name))
            if len(seen) == count:
                break
        return seen

    try:
        async with asyncio.timeout(15):
            return await asyncio.to_thread(follow)
    finally:
        client.close()  # ends the stream (and the thread, should the timeout have struck)


# -- a server older than WatchBatches ----------------------------------------------------


class OldObjects(api_pb2_grpc.ObjectServiceServicer):
    """Watch only, one event per message; then quiet, as a watch is, until the client leaves."""

    def __init__(self) -> None:
        self.requests: list[api_pb2.WatchRequest] = []

    async def Watch(self, request: api_pb2.WatchRequest, context: Any) -> AsyncIterator[api_pb2.WatchEvent]:
        self.requests.append(request)
        yield api_pb2.WatchEvent(type=api_pb2.WatchEvent.ADDED, object=wrap(pod("a")))
        yield api_pb2.WatchEvent(type=api_pb2.WatchEvent.MODIFIED, object=wrap(pod("a")))
        yield api_pb2.WatchEvent(type=api_pb2.WatchEvent.DELETED, object=wrap(pod("b")))
        await asyncio.Event().wait()


def servicer_without_watch_batches(old: OldObjects, server: grpc.aio.Server) -> None:
    # The generated base class answers UNIMPLEMENTED for what a subclass does not write.
    api_pb2_grpc.add_ObjectServiceServicer_to_server(old, server)


def service_without_watch_batches(old: OldObjects, server: grpc.aio.Server) -> None:
    # As a server built from the older proto: the method is not registered at all.
    handlers = {
        "Watch": grpc.unary_stream_rpc_method_handler(
            old.Watch,
            request_deserializer=api_pb2.WatchRequest.FromString,
            response_serializer=api_pb2.WatchEvent.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("corral.v1.ObjectService", handlers)])


@pytest.mark.parametrize("register", [servicer_without_watch_batches, service_without_watch_batches])
async def test_watch_falls_back_to_the_old_watch(
    register: Callable[[OldObjects, grpc.aio.Server], None],
) -> None:
    old = OldObjects()  # type: ignore[abstract]
    server, served = await serve(lambda s: register(old, s))
    try:
        events = await watch(served, 3, selector="app=web", resource_version="41")
    finally:
        await server.stop(0)
    assert events == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "b")]
    [request] = old.requests  # the same request, sent once to the old call
    assert (request.kind, request.namespace, request.label_selector, request.resource_version) == (
        "pods",
        "default",
        "app=web",
        "41",
    )


# -- the current ObjectService ---------------------------------------------------------


class Recording(ObjectService):
    """The real service, noting each WatchBatch sent and each call of the old Watch."""

    def __init__(self, objects: ObjectApi) -> None:
        super().__init__(objects)
        self.batches: list[int] = []
        self.sent = asyncio.Event()
        self.old_watches = 0

    async def WatchBatches(self, request: api_pb2.WatchRequest, context: Any) -> AsyncIterator[api_pb2.WatchBatch]:
        async for batch in super().WatchBatches(request, context):
            self.batches.append(len(batch.events))
            self.sent.set()
            yield batch

    async def Watch(self, request: api_pb2.WatchRequest, context: Any) -> AsyncIterator[api_pb2.WatchEvent]:
        self.old_watches += 1
        async for event in super().Watch(request, context):
            yield event


@pytest.fixture
async def current() -> AsyncIterator[tuple[Served, ObjectApi, Recording]]:
    objects = ObjectApi(ObjectStore(MemoryStore()))
    service = Recording(objects)
    server, served = await serve(lambda s: api_pb2_grpc.add_ObjectServiceServicer_to_server(service, s))
    try:
        yield served, objects, service
    finally:
        await server.stop(0)


async def test_watch_takes_batches_from_the_current_server(current: tuple[Served, ObjectApi, Recording]) -> None:
    served, objects, service = current
    for i in range(40):
        await objects.create(pod(f"p{i:02d}"))
    following = asyncio.create_task(watch(served, 41))
    try:
        async with asyncio.timeout(15):
            await service.sent.wait()  # the existing pods are on their way
        await objects.create(pod("late"))
        events = await following
    finally:
        following.cancel()  # on a failure, closes the client (and so its thread's stream)
    assert events == [("ADDED", f"p{i:02d}") for i in range(40)] + [("ADDED", "late")]
    assert service.old_watches == 0
    assert sum(service.batches) == 41
    assert len(service.batches) < 10  # the listing went in a few messages, not one per pod
    assert service.batches[-1] == 1  # the later pod went alone, at once


async def test_a_watch_error_is_raised_not_retried_on_the_old_call(
    current: tuple[Served, ObjectApi, Recording],
) -> None:
    served, _, service = current
    with pytest.raises(api.InvalidError, match="resourceVersion"):
        await watch(served, 1, resource_version="not-a-number")
    assert service.old_watches == 0
