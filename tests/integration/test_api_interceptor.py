"""The API port's one interceptor over a real gRPC server with mutual TLS: what
telemetry, admission and the request guard did as three interceptors, done by a
single wrapper around each handler — one frame of ours between gRPC and the
servicer, per call and per streamed message."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import generate_latest

import controlplane
from controlplane.auth.admission import Admission, StreamRegistry
from controlplane.auth.revocations import RevocationList
from controlplane.interceptor import ApiInterceptor
from controlplane.store.memory import MemoryStore
from controlplane.telemetry.series import ControlPlaneTelemetry
from protos.corral.v1 import api_pb2, api_pb2_grpc, node_service_pb2, node_service_pb2_grpc
from tests.pki import TestCluster, aio_channel
from tests.promtext import parse, value

pytestmark = pytest.mark.timeout(30)

GET = "corral.v1.ObjectService/Get"
SERVICES = "corral.v1.NodeService/WatchServices"
STATUS = "corral.v1.NodeService/StreamStatus"
CONTROLPLANE = str(Path(controlplane.__file__).parent)


def interceptors(telemetry: ControlPlaneTelemetry, admission: Admission) -> list[grpc.aio.ServerInterceptor]:
    """The API port's interceptors, as `controlplane/server.py` installs them."""
    return [ApiInterceptor(telemetry=telemetry, admission=admission)]


def wrapper_frames() -> int:
    """How many frames of the control plane's code run between gRPC and the caller's caller (the
    servicer's own frame left out)."""
    frame = sys._getframe(2)
    count = 0
    while frame is not None:
        if frame.f_code.co_filename.startswith(CONTROLPLANE):
            count += 1
        frame = frame.f_back  # type: ignore[assignment]
    return count


class Objects(api_pb2_grpc.ObjectServiceServicer):
    def __init__(self) -> None:
        self.frames: list[int] = []

    async def Get(self, request: api_pb2.GetRequest, context: Any) -> api_pb2.ObjectResponse:
        self.frames.append(wrapper_frames())
        if request.name == "huge":
            raise OverflowError("date value out of range")
        return api_pb2.ObjectResponse()


class Nodes(node_service_pb2_grpc.NodeServiceServicer):
    def __init__(self) -> None:
        self.frames: list[int] = []
        self.watching = asyncio.Event()
        self.first_referenced = -1

    async def WatchServices(
        self, request: node_service_pb2.ServicesRequest, context: Any
    ) -> AsyncIterator[node_service_pb2.ServiceRoutes]:
        self.frames.append(wrapper_frames())
        first = node_service_pb2.ServiceRoutes()
        yield first
        self.frames.append(wrapper_frames())
        self.first_referenced = sys.getrefcount(first) - 2  # besides this frame's and the call's argument
        self.watching.set()
        await asyncio.Event().wait()

    async def StreamStatus(
        self, request_iterator: AsyncIterator[node_service_pb2.ReportStatusRequest], context: Any
    ) -> AsyncIterator[node_service_pb2.ReportStatusResponse]:
        async for _ in request_iterator:
            self.frames.append(wrapper_frames())
            yield node_service_pb2.ReportStatusResponse()


@dataclass
class Served:
    admin: grpc.aio.Channel
    node: grpc.aio.Channel
    objects: Objects
    nodes: Nodes
    streams: StreamRegistry
    telemetry: ControlPlaneTelemetry

    def samples(self) -> dict[Any, float]:
        return parse(generate_latest(self.telemetry.registry).decode())

    def count(self, method: str, code: str) -> float | None:
        return value(self.samples(), "corral_api_requests_total", method=method, code=code)

    def active(self, method: str) -> float | None:
        return value(self.samples(), "corral_api_streams_active", method=method)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    telemetry = ControlPlaneTelemetry(process=False)
    streams = StreamRegistry()
    server = grpc.aio.server(
        interceptors=interceptors(telemetry, Admission(RevocationList(MemoryStore(), "/c"), streams))
    )
    # The generated stubs make every method abstract; those not written here answer UNIMPLEMENTED.
    objects, nodes = Objects(), Nodes()  # type: ignore[abstract]
    api_pb2_grpc.add_ObjectServiceServicer_to_server(objects, server)
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(nodes, server)
    pki = TestCluster()
    address = f"127.0.0.1:{pki.add_port(server)}"
    await server.start()
    try:
        async with aio_channel(address, pki.admin()) as admin, aio_channel(address, pki.node("n1")) as node:
            yield Served(admin, node, objects, nodes, streams, telemetry)
    finally:
        await server.stop(0)


def _raw(channel: grpc.aio.Channel, method: str) -> Callable[[bytes], Any]:
    return channel.unary_unary(f"/{method}", request_serializer=bytes, response_deserializer=bytes)


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def test_one_wrapper_times_admits_and_guards_a_unary_call(served: Served) -> None:
    objects = api_pb2_grpc.ObjectServiceStub(served.admin)
    await objects.Get(api_pb2.GetRequest(kind="pod", name="there"))
    assert served.objects.frames == [1]
    assert served.count(GET, "OK") == 1

    as_node = api_pb2_grpc.ObjectServiceStub(served.node)
    refusals = [
        (objects.Get(api_pb2.GetRequest(kind="pod", name="huge")), grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
        (_raw(served.admin, GET)(b"\xff\xff"), grpc.StatusCode.INVALID_ARGUMENT, "malformed request"),
        (as_node.Get(api_pb2.GetRequest()), grpc.StatusCode.PERMISSION_DENIED, "n1"),
    ]
    for call, code, message in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert (info.value.code(), message in (info.value.details() or "")) == (code, True)
    assert served.count(GET, "INVALID_ARGUMENT") == 2
    assert served.count(GET, "PERMISSION_DENIED") == 1


async def test_one_wrapper_guards_each_message_of_a_request_stream(served: Served) -> None:
    status = served.node.stream_stream(f"/{STATUS}", request_serializer=bytes, response_deserializer=bytes)
    call = status()
    await call.write(node_service_pb2.ReportStatusRequest(node_name="n1").SerializeToString())
    await call.read()
    assert served.nodes.frames == [1]
    await call.write(b"\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request" in (info.value.details() or "")
    await _until(lambda: served.count(STATUS, "INVALID_ARGUMENT") == 1)


async def test_one_wrapper_counts_registers_and_revokes_a_stream(served: Served) -> None:
    stream = node_service_pb2_grpc.NodeServiceStub(served.node).WatchServices(
        node_service_pb2.ServicesRequest(node_name="n1")
    )
    await stream.read()
    await served.nodes.watching.wait()
    assert served.nodes.frames == [1, 1]  # at the call and at the message after the first
    # Neither the wrapper nor gRPC keeps a message sent while the handler waits for its next one.
    assert served.nodes.first_referenced == 0
    assert (served.streams.count("n1"), served.active(SERVICES)) == (1, 1)

    assert served.streams.close("n1") == 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.read()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (info.value.details() or "")
    await _until(lambda: served.count(SERVICES, "UNAUTHENTICATED") == 1)
    assert (served.streams.count("n1"), served.active(SERVICES)) == (0, 0)


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def test_a_method_is_wrapped_once_for_all_its_calls() -> None:
    """No new wrapper (closures, a handler) per call: a stream would keep them as long as it lives."""
    interceptor = ApiInterceptor(telemetry=ControlPlaneTelemetry(process=False))
    servicer: grpc.RpcMethodHandler[Any, Any] = grpc.unary_stream_rpc_method_handler(Nodes.WatchServices)
    replaced: grpc.RpcMethodHandler[Any, Any] = grpc.unary_stream_rpc_method_handler(Nodes.WatchServices)
    handlers = {f"/{SERVICES}": servicer}

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handlers.get(details.method)

    first, second = [await interceptor.intercept_service(continuation, _Details(f"/{SERVICES}")) for _ in range(2)]
    assert first is not None and first is second and first is not servicer
    handlers[f"/{SERVICES}"] = replaced  # another servicer's handler: wrapped afresh
    assert await interceptor.intercept_service(continuation, _Details(f"/{SERVICES}")) not in (None, first)
    assert await interceptor.intercept_service(continuation, _Details("/nope.Nothing/Here")) is None
