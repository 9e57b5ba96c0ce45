"""sessionAffinity: ClientIP, internalTrafficPolicy: Local and the UDP conntrack clearing on the
kernel data path with real nftables and conntrack (agent/network/proxy/kernel.py, nft_rules.py,
udp_flows.py, conntrack.py).

Each test runs in a fresh network namespace (`netns` from test_proxy_nftables.py) with the
clusterIP 10.43.0.10 on lo, so the rules and conntrack entries go away with it. Backends are
asyncio servers on 127.0.0.1 answering with their name; clients connect from chosen loopback
sources (127.0.0.2, 127.0.0.3), which the affinity sets key on. Needs root, `nft` and `conntrack`
(CI installs both: scripts/docker-setup); skipped only without root.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from agent.network.proxy.conntrack import Conntrack
from agent.network.proxy.kernel import KernelProxy
from agent.network.proxy.server import ProxyServer
from protos.corral.v1 import discovery_pb2
from tests.integration.node.test_proxy import Backend
from tests.integration.node.test_proxy_nftables import PROXY, TABLE, WAIT, backends, netns, nft_list

__all__ = ["netns"]  # the fixture, imported

pytestmark = pytest.mark.timeout(60)

CLUSTER_IP = "10.43.0.10"


@pytest.fixture
def cluster_ip(netns: None) -> None:
    """The clusterIP on lo, in the test's namespace (gone with it)."""
    subprocess.run(["ip", "addr", "add", f"{CLUSTER_IP}/32", "dev", "lo"], check=True, timeout=10)


@contextlib.asynccontextmanager
async def running(node: str = "n1", conntrack: Conntrack | None = None) -> AsyncIterator[KernelProxy]:
    proxy = ProxyServer([PROXY], node=node)
    kernel = KernelProxy(proxy, TABLE, [PROXY], node=node, conntrack=conntrack)
    await kernel.start()
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(proxy.run()), group.create_task(kernel.run())]
        try:
            yield kernel
        finally:
            for task in tasks:
                task.cancel()


async def applied(kernel: KernelProxy, *routes: discovery_pb2.ServiceRoute) -> None:
    kernel.update({f"{r.namespace}/{r.name}": r for r in routes})
    async with asyncio.timeout(WAIT):
        while kernel._applied != kernel._wanted:
            await asyncio.sleep(0.01)


def service(
    backends: list[tuple[str, int, str]],
    *,
    protocol: str = "TCP",
    affinity: int = 0,
    internal: str = "",
    name: str = "web",
) -> discovery_pb2.ServiceRoute:
    """A one-port Service on the clusterIP, port 80 (UDP: 53), to (pod, port, node) on 127.0.0.1."""
    return discovery_pb2.ServiceRoute(
        namespace="default",
        name=name,
        cluster_ip=CLUSTER_IP,
        type="ClusterIP",
        internal_traffic_policy=internal,
        session_affinity_seconds=affinity,
        ports=[
            discovery_pb2.RoutePort(
                name="p",
                protocol=protocol,
                port=80 if protocol == "TCP" else 53,
                backends=[
                    discovery_pb2.RouteBackend(address="127.0.0.1", port=port, pod=pod, node=node)
                    for pod, port, node in backends
                ],
            )
        ],
    )


def tcp(*started: Backend, node: str = "n1") -> list[tuple[str, int, str]]:
    return [(b.name, b.port, node) for b in started]


async def ask_from(source: str) -> str:
    """One line on a new connection from `source` to the clusterIP: the backend's name."""
    async with asyncio.timeout(WAIT):
        reader, writer = await asyncio.open_connection(CLUSTER_IP, 80, local_addr=(source, 0))
        try:
            writer.write(b"who\n")
            return (await reader.readline()).decode().strip()
        finally:
            writer.close()


# -- ClientIP affinity -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("affinity", "spread"),
    [pytest.param(10800, 1, id="client-ip"), pytest.param(0, 3, id="none")],
)
async def test_a_client_gets_one_backend_for_20_new_connections_with_affinity(
    cluster_ip: None, affinity: int, spread: int
) -> None:
    async with backends("a", "b", "c") as started, running() as kernel:
        await applied(kernel, service(tcp(*started), affinity=affinity))
        answers = [await ask_from("127.0.0.2") for _ in range(20)]
        assert len(set(answers)) == spread
        if affinity:
            other = [await ask_from("127.0.0.3") for _ in range(5)]
            assert len(set(other)) == 1 and other[0] != answers[0]
            assert "update @ip_10_43_0_10_80_b0_aff { ip saddr }" in await nft_list()


async def test_affinity_survives_a_table_replace_and_moves_when_the_backend_goes(cluster_ip: None) -> None:
    async with backends("a", "b", "c", "d") as (a, b, c, d), running() as kernel:
        await applied(kernel, service(tcp(a, b, c), affinity=10800))
        assert await ask_from("127.0.0.2") == "a"
        assert await ask_from("127.0.0.3") == "b"
        # Another endpoint joins: the table is replaced, the clients stay where they were.
        await applied(kernel, service(tcp(a, b, c, d), affinity=10800))
        assert [await ask_from("127.0.0.2") for _ in range(5)] == ["a"] * 5
        assert [await ask_from("127.0.0.3") for _ in range(5)] == ["b"] * 5
        # a leaves: its client is balanced anew and sticks there; b's client is not moved.
        await applied(kernel, service(tcp(b, c, d), affinity=10800))
        moved = [await ask_from("127.0.0.2") for _ in range(5)]
        assert moved[0] != "a" and set(moved) == {moved[0]}
        assert [await ask_from("127.0.0.3") for _ in range(3)] == ["b"] * 3


async def test_the_kernel_forgets_a_client_after_the_timeout(cluster_ip: None) -> None:
    async with backends("a", "b") as started, running() as kernel:
        await applied(kernel, service(tcp(*started), affinity=1))
        assert [await ask_from("127.0.0.2") for _ in range(3)] == ["a"] * 3
        async with asyncio.timeout(WAIT):  # the set's element times out a second after the latest connection
            while "127.0.0.2" in await nft_list():
                await asyncio.sleep(0.05)
        assert await ask_from("127.0.0.2") == "b"  # balanced anew: the round robin's next slot


# -- internalTrafficPolicy: Local ----------------------------------------------------------


async def test_internal_traffic_policy_local_keeps_cluster_ip_traffic_on_the_node(cluster_ip: None) -> None:
    async with backends("here", "there") as (here, there), running(node="n1") as kernel:
        route = service(tcp(here) + tcp(there, node="n2"), internal="Local")
        await applied(kernel, route)
        assert [await ask_from("127.0.0.2") for _ in range(10)] == ["here"] * 10
        assert there.accepted == 0


async def test_internal_traffic_policy_local_refuses_on_a_node_without_a_local_endpoint(cluster_ip: None) -> None:
    async with backends("there") as (there,), running(node="n1") as kernel:
        # Something listening on the clusterIP would answer, were it not for the reset.
        squatter = await asyncio.start_server(lambda r, w: w.close(), CLUSTER_IP, 80)
        await applied(kernel, service(tcp(there, node="n2"), internal="Local"))
        for _ in range(3):
            with pytest.raises(ConnectionRefusedError):
                await ask_from("127.0.0.2")
        assert there.accepted == 0
        # The same Service with the default policy reaches the other node's endpoint.
        await applied(kernel, service(tcp(there, node="n2")))
        assert await ask_from("127.0.0.2") == "there"
        squatter.close()


# -- UDP flows and conntrack -----------------------------------------------------------------


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
    """One client socket (one conntrack flow): answers, or the ICMP error."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes | Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.answers.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.answers.put_nowait(exc)


@contextlib.asynccontextmanager
async def udp_backends(*names: str) -> AsyncIterator[list[tuple[str, int, str]]]:
    loop = asyncio.get_running_loop()
    transports = []
    for name in names:
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(_UdpBackend, name), local_addr=("127.0.0.1", 0)
        )
        transports.append(transport)
    try:
        yield [(n, t.get_extra_info("sockname")[1], "n1") for n, t in zip(names, transports, strict=True)]
    finally:
        for transport in transports:
            transport.close()


@contextlib.asynccontextmanager
async def udp_client() -> AsyncIterator[tuple[asyncio.DatagramTransport, _Client]]:
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        _Client, local_addr=("127.0.0.2", 0), remote_addr=(CLUSTER_IP, 53)
    )
    try:
        yield transport, client
    finally:
        transport.close()


async def send(flow: tuple[asyncio.DatagramTransport, _Client]) -> str:
    """A datagram on the client's one flow; the answer ("refused": port unreachable)."""
    transport, client = flow
    transport.sendto(b"who")
    async with asyncio.timeout(WAIT):
        answer = await client.answers.get()
    return "refused" if isinstance(answer, ConnectionRefusedError) else answer.decode()  # type: ignore[union-attr]


async def test_a_removed_udp_endpoint_loses_its_flows(cluster_ip: None) -> None:
    async with udp_backends("a", "b") as (a, b), running() as kernel, udp_client() as flow:
        await applied(kernel, service([a, b], protocol="UDP"))
        assert [await send(flow) for _ in range(3)] == ["a"] * 3  # one flow: conntrack keeps its NAT
        with capture_logs() as logs:
            await applied(kernel, service([b], protocol="UDP"))
        assert await send(flow) == "b"  # without the clearing: "a" for as long as it keeps talking
        cleared = [e for e in logs if e["event"] == "proxy_udp_flows_cleared"]
        assert [(e["flow"], e["entries"]) for e in cleared] == [(f"{CLUSTER_IP}:53/udp -> 127.0.0.1:{a[1]}", 1)]


async def test_a_udp_service_that_gets_its_first_endpoint_takes_over_the_earlier_flow(cluster_ip: None) -> None:
    async with backends("web") as (web,), udp_backends("a") as (a,), running() as kernel, udp_client() as flow:
        other = service(tcp(web), name="web")
        await applied(kernel, other)
        # No rule for the clusterIP's port 53 yet: the kernel tracks the flow with no NAT (port unreachable).
        assert await send(flow) == "refused"
        await applied(kernel, other, service([a], protocol="UDP", name="dns"))
        assert await send(flow) == "a"  # without the clearing: still the untranslated flow, refused


async def test_without_conntrack_the_flows_are_left_and_the_node_goes_on(cluster_ip: None) -> None:
    async with (
        udp_backends("a", "b") as (a, b),
        running(conntrack=Conntrack("conntrack-missing-here")) as kernel,
        udp_client() as flow,
    ):
        with capture_logs() as logs:
            await applied(kernel, service([a, b], protocol="UDP"))
            assert await send(flow) == "a"
            await applied(kernel, service([b], protocol="UDP"))
        assert await send(flow) == "a"  # the stale flow, until it idles out
        warnings = [e for e in logs if e["event"] == "proxy_conntrack_unavailable"]
        assert len(warnings) == 1
        assert "conntrack-missing-here not found: install the conntrack package" in warnings[0]["reason"]
