"""host-gw between two "machines": the test's own network namespace (node a) and a second one
(node b), joined by a veth pair on one L2 link. Each node's route programmer installs a route to
the other's pod subnet via its address; a "pod" address of node a (on its lo) then reaches a
server on a "pod" address of node b, and answers come back the same way. Without the routes the
pod subnets are unreachable (these namespaces have no default route)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.network.pod_routing import ROUTE_PROTO, PodRouting, run_command
from protos.corral.v1 import node_service_pb2
from tests.integration.node.test_proxy_nftables import netns

__all__ = ["netns"]  # the fixture

PEER = f"corral-podnet-{os.getpid()}"
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.42.2.7", 8080)); s.listen(1)
print("listening", flush=True)
c, peer = s.accept()
c.sendall(f"pong from {peer[0]}".encode()); c.close()
"""


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, timeout=10, capture_output=True)


@pytest.fixture
def peer(netns: None) -> Iterator[str]:
    """Node b: a namespace with its pod address 10.42.2.7 (on lo), at 10.251.0.2 on the link."""
    sh("ip", "netns", "add", PEER)
    try:
        sh("ip", "link", "add", "pn-a", "type", "veth", "peer", "name", "pn-b", "netns", PEER)
        sh("ip", "addr", "add", "10.251.0.1/24", "dev", "pn-a")
        sh("ip", "link", "set", "pn-a", "up")
        sh("ip", "addr", "add", "10.42.1.7/32", "dev", "lo")  # node a's "pod"
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", "10.251.0.2/24", "dev", "pn-b"],
            ["ip", "link", "set", "pn-b", "up"],
            ["ip", "addr", "add", "10.42.2.7/32", "dev", "lo"],
        ):
            sh("ip", "netns", "exec", PEER, *command)
        yield PEER
    finally:
        subprocess.run(["ip", "netns", "del", PEER], check=False, timeout=10, capture_output=True)


def table() -> node_service_pb2.PodNetwork:
    t = node_service_pb2.PodNetwork(cluster_cidr="10.42.0.0/16")
    t.nodes.add(node="a", pod_cidr="10.42.1.0/24", address="10.251.0.1")
    t.nodes.add(node="b", pod_cidr="10.42.2.0/24", address="10.251.0.2")
    return t


async def in_peer(argv: list[str]) -> tuple[int, str, str]:
    return await run_command(["ip", "netns", "exec", PEER, *argv])


async def test_each_node_routes_the_others_pod_subnet_via_its_address(peer: str) -> None:
    a = PodRouting("a", forwarding=False)
    b = PodRouting("b", forwarding=False, runner=in_peer)
    await a.sync(table())
    await b.sync(table())
    assert [(r.subnet, r.via) for r in a.plan.routes] == [("10.42.2.0/24", "10.251.0.2")]
    shown = subprocess.run(["ip", "route", "show", "proto", ROUTE_PROTO], capture_output=True, text=True, check=True)
    assert "10.42.2.0/24 via 10.251.0.2 dev pn-a" in shown.stdout

    server = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", peer, sys.executable, "-c", SERVER, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        async with asyncio.timeout(10):
            assert (await server.stdout.readline()).strip() == b"listening"
            reader, writer = await asyncio.open_connection("10.42.2.7", 8080, local_addr=("10.42.1.7", 0))
            answer = await reader.read()
            writer.close()
        assert answer == b"pong from 10.42.1.7"  # node a's pod address, not masqueraded
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()

    # Node b gone from the table: its route goes.
    only_a = node_service_pb2.PodNetwork(cluster_cidr="10.42.0.0/16", nodes=[table().nodes[0]])
    await a.sync(only_a)
    shown = subprocess.run(["ip", "route", "show", "proto", ROUTE_PROTO], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == ""
