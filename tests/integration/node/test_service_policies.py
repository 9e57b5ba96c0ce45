"""sessionAffinity: ClientIP and internalTrafficPolicy: Local on the userspace proxy's real sockets
(agent/network/proxy/server.py, udp.py).

Clients connect from chosen loopback sources (127.0.0.2, 127.0.0.3) so that the proxy sees
distinct client addresses. The clusterIP is a loopback address (127.0.0.8: local without any
setup). Every wait has a deadline; each test runs on the stdlib loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from agent.network.proxy.server import ProxyServer
from agent.network.proxy.udp import UdpProxy
from protos.corral.v1 import discovery_pb2
from tests.integration.node.test_proxy import (
    PROXY,
    WAIT,
    Backend,
    eventually,
    free_port,
    route,
    route_backend,
    routes,
    running,
)

pytestmark = pytest.mark.timeout(60)

CLUSTER_IP = "127.0.0.8"


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [await Backend(name).start() for name in ("a", "b", "c")]
    yield started
    for backend in started:
        await backend.stop()


async def ask_from(source: str, port: int, address: str = PROXY) -> str:
    """One line on a new connection from `source`: the backend's name."""
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(address, port, local_addr=(source, 0))
        try:
            writer.write(b"who\n")
            return (await reader.readline()).decode().strip()
        finally:
            writer.close()


def sticky(port: int, backends: list[Backend], seconds: int) -> discovery_pb2.ServiceRoute:
    web = route("web", port, [route_backend(b) for b in backends])
    web.session_affinity_seconds = seconds
    return web


@pytest.mark.parametrize(
    ("seconds", "spread"),
    [pytest.param(10800, 1, id="client-ip"), pytest.param(0, 3, id="none")],
)
async def test_a_client_gets_one_backend_for_20_new_connections_with_affinity(
    backends: list[Backend], seconds: int, spread: int
) -> None:
    port = free_port()
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(routes(sticky(port, backends, seconds)))
        await eventually(lambda: (PROXY, port) in proxy.listening(), "the proxy listening")
        answers = [await ask_from("127.0.0.2", port) for _ in range(20)]
        assert len(set(answers)) == spread
        if seconds:
            # Another client is balanced on its own, and sticks too.
            other = [await ask_from("127.0.0.3", port) for _ in range(5)]
            assert len(set(other)) == 1 and other[0] != answers[0]


async def test_a_client_moves_when_its_backend_goes_and_stays_there(backends: list[Backend]) -> None:
    port = free_port()
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(routes(sticky(port, backends, 10800)))
        await eventually(lambda: (PROXY, port) in proxy.listening(), "the proxy listening")
        first = await ask_from("127.0.0.2", port)
        proxy.update(routes(sticky(port, [b for b in backends if b.name != first], 10800)))
        moved = [await ask_from("127.0.0.2", port) for _ in range(10)]
        assert moved[0] != first and set(moved) == {moved[0]}


def local_route(port: int, here: Backend, there: Backend) -> discovery_pb2.ServiceRoute:
    web = route("web", port, [route_backend(here), route_backend(there)])
    web.cluster_ip, web.type, web.internal_traffic_policy = CLUSTER_IP, "ClusterIP", "Local"
    web.ports[0].backends[0].node, web.ports[0].backends[1].node = "n1", "n2"
    return web


async def test_internal_traffic_policy_local_keeps_cluster_ip_traffic_on_the_node(backends: list[Backend]) -> None:
    here, there, _ = backends
    port = free_port(CLUSTER_IP)
    async with running(ProxyServer([PROXY], node="n1")) as proxy:
        proxy.update(routes(local_route(port, here, there)))
        await eventually(lambda: (CLUSTER_IP, port) in proxy.listening(), "the clusterIP listening")
        answers = [await ask_from("127.0.0.2", port, CLUSTER_IP) for _ in range(10)]
        assert Counter(answers) == {"a": 10}


async def test_internal_traffic_policy_local_refuses_on_a_node_without_a_local_endpoint(
    backends: list[Backend],
) -> None:
    here, there, _ = backends
    port = free_port(CLUSTER_IP)
    async with running(ProxyServer([PROXY], node="n3")) as proxy:
        proxy.update(routes(local_route(port, here, there)))
        await eventually(lambda: (CLUSTER_IP, port) in proxy.listening(), "the clusterIP listening")
        for _ in range(3):
            with pytest.raises(ConnectionResetError):
                await ask_from("127.0.0.2", port, CLUSTER_IP)
    assert here.accepted == there.accepted == 0


class _UdpBackend(asyncio.DatagramProtocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name.encode(), addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.answers.put_nowait(data)


async def udp_ask_from(source: str, port: int) -> str:
    """One datagram from a new client socket on `source`; the answer."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(_Client, local_addr=(source, 0), remote_addr=(PROXY, port))
    try:
        async with asyncio.timeout(WAIT):
            transport.sendto(b"who")
            return (await client.answers.get()).decode()
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def udp_service(
    names: tuple[str, ...], *, affinity: int = 0, groups: tuple[str, ...] = (), weights: dict[str, int] | None = None
) -> AsyncIterator[int]:
    """UDP backends answering their names behind a UDP Service served by a relay; yields its port."""
    loop = asyncio.get_running_loop()
    servers = []
    for name in names:
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(_UdpBackend, name), local_addr=("127.0.0.1", 0)
        )
        servers.append(transport)
    port = free_port()
    udp = UdpProxy([PROXY])
    proxy = ProxyServer([PROXY])
    proxy.udp = udp.update
    dns = discovery_pb2.ServiceRoute(
        namespace="default",
        name="dns",
        session_affinity_seconds=affinity,
        weights=weights or {},
        ports=[
            discovery_pb2.RoutePort(
                protocol="UDP",
                port=port,
                backends=[
                    discovery_pb2.RouteBackend(
                        address="127.0.0.1",
                        port=t.get_extra_info("sockname")[1],
                        pod=str(i),
                        group=groups[i] if groups else "",
                    )
                    for i, t in enumerate(servers)
                ],
            )
        ],
    )
    task = asyncio.create_task(udp.run())
    try:
        proxy.update(routes(dns))
        await eventually(lambda: (PROXY, port) in udp.listening(), "the UDP frontend bound")
        yield port
    finally:
        task.cancel()
        for transport in servers:
            transport.close()


async def test_udp_sessions_from_one_client_address_go_to_one_backend() -> None:
    async with udp_service(("a", "b", "c"), affinity=10800) as port:
        answers = [await udp_ask_from("127.0.0.2", port) for _ in range(10)]  # a new client port each time
        assert len(set(answers)) == 1
        assert await udp_ask_from("127.0.0.3", port) != answers[0]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        pytest.param({"stable": 90, "canary": 10}, {"stable-1": 9, "stable-2": 9, "canary": 2}, id="canary-10"),
        pytest.param({"stable": 100, "canary": 0}, {"stable-1": 10, "stable-2": 10}, id="canary-0"),
    ],
)
async def test_udp_flows_follow_the_traffic_weights_per_flow(weights: dict[str, int], expected: dict[str, int]) -> None:
    names = ("stable-1", "stable-2", "canary")
    async with udp_service(names, groups=("stable", "stable", "canary"), weights=weights) as port:
        answers = [await udp_ask_from("127.0.0.2", port) for _ in range(20)]  # a new flow each time
    assert Counter(answers) == expected
