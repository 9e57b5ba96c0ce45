"""host-gw between two "machines": the test's own network namespace (node a) and a second one
(node b), joined by a veth pair on one L2 link. Each node's route programmer installs a route to
the other's pod subnet via its address; a pod of node a (a third namespace behind a veth, node a
forwarding for it, with the masquerade rule Docker puts on a bridge and an empty DOCKER-USER chain)
then reaches a server on a "pod" address of node b, and answers come back the same way. The server
sees the pod's own address (no NAT between pods), while the pod's traffic to node b's host address
(outside the cluster CIDR) is still masqueraded. Without the routes the pod subnets are unreachable
(these namespaces have no default route)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agent.network.pod_routing import ROUTE_PROTO, PodRouting, run_command
from protos.corral.v1 import node_service_pb2
from tests.integration.node.test_proxy_nftables import netns

__all__ = ["netns"]  # the fixture

PEER = f"corral-podnet-{os.getpid()}"
POD = f"corral-podnet-pod-{os.getpid()}"
SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(2)
print("listening", flush=True)
for _ in range(2):
    c, peer = s.accept()
    c.sendall(f"pong from {peer[0]}".encode()); c.close()
"""
# A client in node a's pod namespace: the server's answer.
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 8080), timeout=5)
print(c.recv(100).decode(), flush=True)
"""


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, timeout=10, capture_output=True)


@pytest.fixture
def peer(netns: None) -> Iterator[str]:
    """Node b: a namespace with its pod address 10.42.2.7 (on lo), at 10.251.0.2 on the link.
    Node a's pod: a namespace at 10.42.1.7 behind the veth pod-a (node a: 10.42.1.1, as a bridge)."""
    if shutil.which("iptables") is None:
        pytest.skip("needs iptables")
    sh("ip", "netns", "add", PEER)
    sh("ip", "netns", "add", POD)
    try:
        sh("ip", "link", "add", "pn-a", "type", "veth", "peer", "name", "pn-b", "netns", PEER)
        sh("ip", "addr", "add", "10.251.0.1/24", "dev", "pn-a")
        sh("ip", "link", "set", "pn-a", "up")
        sh("ip", "link", "add", "pod-a", "type", "veth", "peer", "name", "eth0", "netns", POD)
        sh("ip", "addr", "add", "10.42.1.1/24", "dev", "pod-a")
        sh("ip", "link", "set", "pod-a", "up")
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1")
        # What Docker does for a bridge network: masquerade what leaves the subnet; DOCKER-USER.
        sh(
            "iptables",
            "-w",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.42.1.0/24",
            "!",
            "-o",
            "pod-a",
            "-j",
            "MASQUERADE",
        )
        sh("iptables", "-w", "-N", "DOCKER-USER")
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", "10.42.1.7/24", "dev", "eth0"],
            ["ip", "link", "set", "eth0", "up"],
            ["ip", "route", "add", "default", "via", "10.42.1.1"],
        ):
            sh("ip", "netns", "exec", POD, *command)
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", "10.251.0.2/24", "dev", "pn-b"],
            ["ip", "link", "set", "pn-b", "up"],
            ["ip", "addr", "add", "10.42.2.7/32", "dev", "lo"],
        ):
            sh("ip", "netns", "exec", PEER, *command)
        yield PEER
    finally:
        for name in (POD, PEER):
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=10, capture_output=True)


def table() -> node_service_pb2.PodNetwork:
    t = node_service_pb2.PodNetwork(cluster_cidr="10.42.0.0/16")
    t.nodes.add(node="a", pod_cidr="10.42.1.0/24", address="10.251.0.1")
    t.nodes.add(node="b", pod_cidr="10.42.2.0/24", address="10.251.0.2")
    return t


async def in_peer(argv: list[str]) -> tuple[int, str, str]:
    return await run_command(["ip", "netns", "exec", PEER, *argv])


async def from_pod(address: str) -> str:
    """What the server answers a connection from node a's pod to `address`."""
    code, out, err = await run_command(["ip", "netns", "exec", POD, sys.executable, "-c", CLIENT, address])
    assert code == 0, err
    return out.strip()


def nat_rules() -> list[str]:
    listing = subprocess.run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"], capture_output=True, text=True)
    return [line for line in listing.stdout.splitlines() if line.startswith("-A ")]


async def test_each_node_routes_the_others_pod_subnet_via_its_address(peer: str) -> None:
    a = PodRouting("a", forwarding=True)
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
            assert await from_pod("10.42.2.7") == "pong from 10.42.1.7"  # the pod's own address: no NAT
            assert await from_pod("10.251.0.2") == "pong from 10.251.0.1"  # leaving the cluster: masqueraded
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()

    # A restarted agent keeps one rule, above Docker's masquerade.
    await PodRouting("a", forwarding=True).sync(table())
    assert len(nat_rules()) == 2 and "corral-podnet-a" in nat_rules()[0] and "MASQUERADE" in nat_rules()[1]

    # Node b gone from the table: its route goes.
    only_a = node_service_pb2.PodNetwork(cluster_cidr="10.42.0.0/16", nodes=[table().nodes[0]])
    await a.sync(only_a)
    shown = subprocess.run(["ip", "route", "show", "proto", ROUTE_PROTO], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == ""
    # Node a's own subnet gone: its NAT rule goes.
    await a.sync(node_service_pb2.PodNetwork(cluster_cidr="10.42.0.0/16", nodes=[table().nodes[1]]))
    assert ["MASQUERADE" in rule for rule in nat_rules()] == [True]
