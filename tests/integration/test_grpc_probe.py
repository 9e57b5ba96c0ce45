"""The gRPC probe against a real grpc.health.v1 server on 127.0.0.1: agent/probes/grpc_check.py.

The server is a generic gRPC handler that speaks the health protocol's wire
format by hand (HealthCheckResponse{status=1} is b"\\x08\\x01"), so these
tests also pin the agent's message copies to the standard protocol.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from agent.probes.grpc_check import probe_grpc
from agent.probes.result import ProbeResult
from agent.probes.runner import run_probe
from agent.probes.target import GrpcTarget
from agent.runtime.fake import FakeRuntime

pytestmark = pytest.mark.timeout(10)

HOST = "127.0.0.1"
# grpc.health.v1.HealthCheckResponse.ServingStatus
SERVING, NOT_SERVING, SERVICE_UNKNOWN = 1, 2, 3


@dataclass
class HealthServer:
    """Answers Check by service name; "hang" never answers; unknown names are NOT_FOUND."""

    statuses: dict[str, int] = field(default_factory=lambda: {"": SERVING, "db": NOT_SERVING, "gone": SERVICE_UNKNOWN})
    asked: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def check(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        service = request[2:].decode() if request else ""  # field 1, short string: tag, length, bytes
        self.asked.append(service)
        if service == "hang":
            await self.release.wait()
        if service not in self.statuses:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        status = self.statuses[service]
        return bytes([0x08, status]) if status else b""


@pytest.fixture
async def health_server() -> AsyncIterator[HealthServer]:
    health = HealthServer()
    server = grpc.aio.server()
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(health.check)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler}),)
    )
    health.port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        yield health
    finally:
        health.release.set()
        await server.stop(None)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("service", "result"),
    [
        pytest.param("", ProbeResult.ok("service healthy"), id="server-serving"),
        pytest.param(
            "db", ProbeResult.failed('service unhealthy (responded with "NOT_SERVING")'), id="service-not-serving"
        ),
        pytest.param(
            "gone",
            ProbeResult.failed('service unhealthy (responded with "SERVICE_UNKNOWN")'),
            id="service-unknown-status",
        ),
        pytest.param(
            "nope",
            ProbeResult.failed("error: health rpc probe failed: NOT_FOUND: unknown service"),
            id="rpc-error",
        ),
    ],
)
async def test_grpc_status(health_server: HealthServer, service: str, result: ProbeResult) -> None:
    assert await probe_grpc(HOST, health_server.port, service=service, timeout=2.0) == result
    assert health_server.asked == [service]


async def test_grpc_hanging_check_times_out(health_server: HealthServer) -> None:
    result = await probe_grpc(HOST, health_server.port, service="hang", timeout=0.3)
    assert result == ProbeResult.failed("timeout: health rpc did not complete within 0.3s")


async def test_grpc_nothing_listening(closed_port: int) -> None:
    result = await probe_grpc(HOST, closed_port, timeout=0.3)
    assert result == ProbeResult.failed(f'timeout: failed to connect service "{HOST}:{closed_port}" within 0.3s')


async def test_grpc_server_without_health_service(closed_port: int) -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        result = await probe_grpc(HOST, port, timeout=2.0)
    finally:
        await server.stop(None)
    assert result.success is False
    assert result.message.startswith("error: health rpc probe failed: UNIMPLEMENTED")


async def test_run_probe_dispatches_grpc(health_server: HealthServer) -> None:
    target = GrpcTarget(HOST, health_server.port, service="db")
    result = await run_probe(target, runtime=FakeRuntime(), container_id="c1", timeout=2.0)
    assert result == ProbeResult.failed('service unhealthy (responded with "NOT_SERVING")')
