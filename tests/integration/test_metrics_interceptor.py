"""The gRPC interceptor over a real gRPC server, and the /metrics endpoint over
real HTTP: counts by method and code, timing of unary calls, open streams."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import structlog
from prometheus_client import CollectorRegistry, Counter, generate_latest

from controlplane.interceptor import ApiInterceptor
from controlplane.telemetry.series import ControlPlaneTelemetry
from corral.common.telemetry.endpoint import MetricsEndpointError, open_endpoint
from protos.corral.v1 import api_pb2, api_pb2_grpc
from tests.pki import TestCluster, aio_channel
from tests.promtext import parse, scrape, value

pytestmark = pytest.mark.timeout(30)

GET = "corral.v1.ObjectService/Get"
WATCH = "corral.v1.ObjectService/Watch"


class Scripted(api_pb2_grpc.ObjectServiceServicer):
    """Get answers by name; Watch sends one event, then waits until the client leaves."""

    def __init__(self) -> None:
        self.watching = asyncio.Event()

    async def Get(self, request: api_pb2.GetRequest, context: Any) -> api_pb2.ObjectResponse:
        if request.name == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
        if request.name == "bug":
            raise ValueError("a bug")
        return api_pb2.ObjectResponse()

    async def Watch(self, request: api_pb2.WatchRequest, context: Any) -> AsyncIterator[api_pb2.WatchEvent]:
        yield api_pb2.WatchEvent(type=api_pb2.WatchEvent.ADDED)
        self.watching.set()
        await asyncio.Event().wait()


@dataclass
class Served:
    channel: grpc.aio.Channel
    stub: api_pb2_grpc.ObjectServiceAsyncStub
    servicer: Scripted
    metrics: ControlPlaneTelemetry


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    metrics = ControlPlaneTelemetry(process=False)
    # The generated stubs make every method abstract; those not written here answer UNIMPLEMENTED.
    servicer = Scripted()  # type: ignore[abstract]
    server = grpc.aio.server(interceptors=[ApiInterceptor(telemetry=metrics)])
    api_pb2_grpc.add_ObjectServiceServicer_to_server(servicer, server)
    pki = TestCluster()
    port = pki.add_port(server, "127.0.0.1:0")
    await server.start()
    try:
        async with aio_channel(f"127.0.0.1:{port}", pki.admin()) as channel:
            yield Served(channel, api_pb2_grpc.ObjectServiceStub(channel), servicer, metrics)
    finally:
        await server.stop(0)


async def test_calls_are_counted_by_code_and_unary_calls_timed(served: Served) -> None:
    stub, servicer, metrics = served.stub, served.servicer, served.metrics
    for _ in range(3):
        await stub.Get(api_pb2.GetRequest(kind="pod", name="there"))
    for name, code in (("missing", grpc.StatusCode.NOT_FOUND), ("bug", grpc.StatusCode.UNKNOWN)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Get(api_pb2.GetRequest(kind="pod", name=name))
        assert info.value.code() == code

    watch = stub.Watch(api_pb2.WatchRequest(kind="pod"))
    await watch.read()
    await servicer.watching.wait()
    open_now = parse(await asyncio.to_thread(_text, metrics))  # as the scrape thread sees it
    assert value(open_now, "corral_api_streams_active", method=WATCH) == 1
    watch.cancel()
    await _until(lambda: value(parse(_text(metrics)), "corral_api_streams_active", method=WATCH) == 0)

    samples = parse(_text(metrics))
    assert value(samples, "corral_api_requests_total", method=GET, code="OK") == 3
    assert value(samples, "corral_api_requests_total", method=GET, code="NOT_FOUND") == 1
    assert value(samples, "corral_api_requests_total", method=GET, code="UNKNOWN") == 1
    assert value(samples, "corral_api_request_duration_seconds_count", method=GET) == 5
    assert (value(samples, "corral_api_request_duration_seconds_sum", method=GET) or 0) > 0
    assert value(samples, "corral_api_requests_total", method=WATCH, code="CANCELLED") == 1
    assert value(samples, "corral_api_request_duration_seconds_count", method=WATCH) is None


async def test_unknown_methods_are_left_alone(served: Served) -> None:
    nowhere = served.channel.unary_unary("/nope.Nothing/Here", request_serializer=bytes, response_deserializer=bytes)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await nowhere(b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert not any(name == "corral_api_requests_total" for name, _ in parse(_text(served.metrics)))


def _text(metrics: ControlPlaneTelemetry) -> str:
    return generate_latest(metrics.registry).decode()


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


# -- the endpoint -----------------------------------------------------------------------


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("corral_test_things", "Things.", registry=registry).inc(4)
    return registry


async def test_endpoint_serves_the_registry_and_frees_the_port_when_closed() -> None:
    endpoint = open_endpoint(_registry(), "127.0.0.1:0", default_host="127.0.0.1")
    assert endpoint is not None
    samples = parse(await asyncio.to_thread(scrape, endpoint.address))
    assert value(samples, "corral_test_things_total") == 4
    await endpoint.close()
    host, port = endpoint.address.rsplit(":", 1)
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) != 0
        s.close()
    with socket.socket() as again:  # the port can be bound again at once
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind((host, int(port)))


async def test_endpoint_port_only_takes_the_default_host() -> None:
    endpoint = open_endpoint(_registry(), ":0", default_host="127.0.0.1")
    assert endpoint is not None
    try:
        assert endpoint.address.startswith("127.0.0.1:")
    finally:
        await endpoint.close()


def test_endpoint_disabled_by_an_empty_address() -> None:
    assert open_endpoint(_registry(), "", default_host="127.0.0.1") is None


async def test_a_taken_port_stops_an_explicit_address_and_is_skipped_for_the_default() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(MetricsEndpointError, match=f"cannot serve metrics on {taken}"):
            open_endpoint(_registry(), taken, default_host="127.0.0.1")
        with structlog.testing.capture_logs() as logs:
            assert open_endpoint(_registry(), taken, default_host="127.0.0.1", optional=True) is None
        assert [e["event"] for e in logs] == ["metrics_unavailable"]
