"""Services on their clusterIPs, nodePorts and LoadBalancer ports, TCP and UDP, on both data paths
(agent/network/stack.py wired as an agent wires it), each test in its own network namespace
(`netns` from test_proxy_nftables): two Services on port 80 each answer on their address, a UDP
Service echoes, a LoadBalancer answers on the node address and keeps out other sources."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from agent.network.stack import ServiceNetwork, build_service_network
from protos.corral.v1 import discovery_pb2, node_service_pb2
from tests.integration.node.test_proxy_nftables import PROXY, WAIT, backends, netns

pytestmark = pytest.mark.timeout(30)
__all__ = ["netns"]  # the fixture


class UdpEcho(asyncio.DatagramProtocol):
    """Answers every datagram with its name and the datagram."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name.encode() + b" " + data, addr)


@contextlib.asynccontextmanager
async def udp_echo(name: str) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: UdpEcho(name), local_addr=("127.0.0.1", 0))
    try:
        yield int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


def service(
    name: str,
    cluster_ip: str,
    port: int,
    backend_port: int,
    *,
    namespace: str = "default",
    protocol: str = "TCP",
    kind: str = "ClusterIP",
    node_port: int = 0,
    ranges: tuple[str, ...] = (),
) -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        namespace=namespace,
        name=name,
        cluster_ip=cluster_ip,
        type=kind,
        load_balancer_source_ranges=list(ranges),
        ports=[
            discovery_pb2.RoutePort(
                protocol=protocol,
                port=port,
                node_port=node_port,
                backends=[discovery_pb2.RouteBackend(address="127.0.0.1", port=backend_port, pod=f"{name}-0")],
            )
        ],
    )


async def ask(address: str, port: int) -> str:
    """One line over a new TCP connection, retried until the deadline (the path may still be coming up)."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                reader, writer = await asyncio.open_connection(address, port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.write(b"who\n")
            answer = (await reader.readline()).decode().strip()
            writer.close()
            if answer:
                return answer
            await asyncio.sleep(0.05)


async def ask_udp(address: str, port: int, payload: bytes = b"ping") -> str:
    """One datagram and its answer, sent again every 100 ms until the deadline."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        async with asyncio.timeout(WAIT):
            while True:
                with contextlib.suppress(OSError):  # unreachable until the address is local
                    sock.sendto(payload, (address, port))
                with contextlib.suppress(TimeoutError, OSError):
                    async with asyncio.timeout(0.1):
                        return (await loop.sock_recv(sock, 2048)).decode()


@contextlib.asynccontextmanager
async def node(tmp_path: Path, mode: str) -> AsyncIterator[ServiceNetwork]:
    network = await build_service_network(
        {}, proxy_addresses=[PROXY], dns_port=0, data_dir=tmp_path, proxy_mode=mode, node_name="n1"
    )
    async with asyncio.TaskGroup() as group:
        task = group.create_task(network.run())
        try:
            yield network
        finally:
            task.cancel()


def apply(network: ServiceNetwork, *routes: discovery_pb2.ServiceRoute) -> None:
    network.table.apply(node_service_pb2.ServiceRoutes(full=True, upserts=list(routes)))


@pytest.mark.parametrize("mode", ["userspace", "nftables"])
async def test_two_services_on_port_80_answer_on_their_own_addresses(netns: None, tmp_path: Path, mode: str) -> None:
    async with backends("a", "b") as (a, b), node(tmp_path, mode) as network:
        apply(
            network,
            service("web", "10.43.0.10", 80, a.port),
            service("web", "10.43.0.11", 80, b.port, namespace="other"),
        )
        assert await ask("10.43.0.10", 80) == "a"
        assert await ask("10.43.0.11", 80) == "b"
        # A ClusterIP Service is not on the node's address.
        with pytest.raises(OSError):
            await asyncio.open_connection(PROXY, 80)


@pytest.mark.parametrize("mode", ["userspace", "nftables"])
async def test_a_udp_service_answers(netns: None, tmp_path: Path, mode: str) -> None:
    async with udp_echo("dns") as port, node(tmp_path, mode) as network:
        apply(network, service("dns", "10.43.0.53", 53, port, protocol="UDP", kind="NodePort", node_port=30053))
        assert await ask_udp("10.43.0.53", 53) == "dns ping"
        assert await ask_udp(PROXY, 30053, b"pong") == "dns pong"


@pytest.mark.parametrize("mode", ["userspace", "nftables"])
async def test_a_load_balancer_answers_on_the_node_address_for_allowed_sources(
    netns: None, tmp_path: Path, mode: str
) -> None:
    async with backends("a") as (a,), node(tmp_path, mode) as network:
        apply(network, service("web", "10.43.0.10", 8080, a.port, kind="LoadBalancer", node_port=30080))
        assert await ask(PROXY, 8080) == "a"
        assert await ask(PROXY, 30080) == "a"
        assert await ask("10.43.0.10", 8080) == "a"
        # Only 10.0.0.0/8 may connect on the node's address now (the clusterIP stays open).
        apply(
            network,
            service("web", "10.43.0.10", 8080, a.port, kind="LoadBalancer", node_port=30080, ranges=("10.0.0.0/8",)),
        )
        async with asyncio.timeout(WAIT):
            while True:
                try:
                    async with asyncio.timeout(0.3):
                        reader, writer = await asyncio.open_connection(PROXY, 8080)
                        writer.write(b"who\n")
                        answer = await reader.readline()
                        writer.close()
                except (OSError, TimeoutError):
                    break
                if not answer:
                    break
                await asyncio.sleep(0.05)
        assert await ask("10.43.0.10", 8080) == "a"


async def test_the_userspace_proxy_puts_cluster_ips_on_an_interface_and_removes_them(
    netns: None, tmp_path: Path
) -> None:
    async with backends("a") as (a,):
        async with node(tmp_path, "userspace") as network:
            apply(network, service("web", "10.43.0.10", 80, a.port))
            assert await ask("10.43.0.10", 80) == "a"
            assert network.cluster_ips is not None and network.cluster_ips.applied == {"10.43.0.10"}
            apply(network)
            async with asyncio.timeout(WAIT):
                while network.cluster_ips.applied:
                    await asyncio.sleep(0.02)
        shown = await asyncio.create_subprocess_exec(
            "ip", "-4", "-o", "addr", "show", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await shown.communicate()
        assert "10.43.0.10" not in out.decode()
