"""The agent's /metrics over real HTTP, with the node proxy relaying real
connections: per-Service counters as Prometheus reads them. Runs on the stdlib
event loop and on uvloop (conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from agent.network.proxy.server import ProxyServer
from agent.telemetry.series import AgentTelemetry
from corral.common.telemetry.endpoint import open_endpoint
from protos.corral.v1 import discovery_pb2
from tests.promtext import Key, parse, scrape, value

pytestmark = pytest.mark.timeout(30)

PROXY = "127.0.0.9"
WEB = "default/web"
BROKEN = "default/broken"


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def route(name: str, port: int, backend_port: int) -> discovery_pb2.ServiceRoute:
    backend = discovery_pb2.RouteBackend(address="127.0.0.1", port=backend_port, pod=f"{name}-0")
    return discovery_pb2.ServiceRoute(
        namespace="default",
        name=name,
        ports=[discovery_pb2.RoutePort(name="tcp", protocol="TCP", port=port, backends=[backend])],
    )


@contextlib.asynccontextmanager
async def running(proxy: ProxyServer) -> AsyncIterator[None]:
    task = asyncio.create_task(proxy.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def exchange(port: int, line: bytes) -> tuple[asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection(PROXY, port)
    writer.write(line)
    await writer.drain()
    async with asyncio.timeout(10):
        return writer, await reader.readline()


async def until(address: str, predicate: Callable[[dict[Key, float]], bool]) -> dict[Key, float]:
    """Scrape until `predicate` holds; the last scrape."""
    async with asyncio.timeout(10):
        while True:
            samples = parse(await asyncio.to_thread(scrape, address))
            if predicate(samples):
                return samples
            await asyncio.sleep(0.05)


async def test_proxy_counters_on_the_agent_metrics_endpoint() -> None:
    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    backend_port = backend.sockets[0].getsockname()[1]
    web_port, broken_port = free_port(PROXY), free_port(PROXY)
    proxy = ProxyServer([PROXY], connect_timeout=0.5)
    metrics = AgentTelemetry(process=False)
    metrics.observe(proxy_stats=proxy.stats, pods=list, connected=lambda: True)
    endpoint = open_endpoint(metrics.registry, ":0", default_host=PROXY)
    assert endpoint is not None and endpoint.address.startswith(f"{PROXY}:")
    try:
        async with running(proxy):
            proxy.update(
                {
                    WEB: route("web", web_port, backend_port),
                    BROKEN: route("broken", broken_port, free_port("127.0.0.1")),
                }
            )
            kept = None
            for n in range(3):
                writer, answer = await exchange(web_port, b"hello\n")
                assert answer == b"hello\n"
                if n == 0:
                    kept = writer
                else:
                    writer.close()
            refused = await asyncio.open_connection(PROXY, broken_port)
            async with asyncio.timeout(10):
                with pytest.raises(ConnectionResetError):  # no backend answers: the proxy resets it
                    await refused[0].read()
            refused[1].close()

            samples = await until(  # one connection left open
                endpoint.address, lambda s: value(s, "corral_agent_proxy_connections_active", service=WEB) == 1
            )
            assert kept is not None
            kept.close()
    finally:
        await endpoint.close()
        backend.close()

    assert value(samples, "corral_agent_proxy_connections_total", service=WEB) == 3
    assert value(samples, "corral_agent_proxy_bytes_total", service=WEB, direction="in") == 3 * len(b"hello\n")
    assert value(samples, "corral_agent_proxy_bytes_total", service=WEB, direction="out") == 3 * len(b"hello\n")
    assert value(samples, "corral_agent_proxy_connect_failures_total", service=WEB) == 0
    assert (value(samples, "corral_agent_proxy_connect_failures_total", service=BROKEN) or 0) >= 1
    assert value(samples, "corral_agent_proxy_connections_total", service=BROKEN) == 1
    assert value(samples, "corral_agent_connected") == 1
    assert value(samples, "corral_agent_pods", phase="Running") == 0
    assert value(samples, "corral_agent_probe_results_total", probe="readiness", result="success") == 0
