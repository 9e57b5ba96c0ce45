"""The node proxy never takes the control plane's ports (`--server`, `--join`) nor the agent's metrics port,
whatever Service asks for them: userspace and nftables paths."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.network.proxy.reserved import reserved_ports
from agent.network.stack import build_service_network
from protos.corral.v1 import node_service_pb2
from tests.integration.node.test_proxy_nftables import PROXY, netns, nft_list, route

pytestmark = pytest.mark.timeout(30)
__all__ = ["netns"]  # the fixture


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def routes(*items: tuple[str, int]) -> node_service_pb2.ServiceRoutes:
    return node_service_pb2.ServiceRoutes(full=True, upserts=[route(name, port, []) for name, port in items])


@pytest.mark.parametrize(
    ("servers", "joins", "metrics", "expected"),
    [
        pytest.param(["10.0.0.1:7443"], [], "", {7443: "--server 10.0.0.1:7443"}, id="one server"),
        pytest.param(["10.0.0.1"], [], "", {7443: "--server 10.0.0.1"}, id="the default API port"),
        pytest.param(
            ["a:7443", "b:8443"],
            ["a:7444", "b:9000"],
            ":9100",
            {
                7443: "--server a:7443",
                8443: "--server b:8443",
                7444: "--join a:7444",
                9000: "--join b:9000",
                9100: "--metrics-listen :9100",
            },
            id="replicas, joins and metrics",
        ),
        pytest.param(
            ["[::1]:7443"],
            ["[::1]:7444"],
            "127.0.0.1:0",
            {7443: "--server [::1]:7443", 7444: "--join [::1]:7444"},
            id="ipv6, any port",
        ),
    ],
)
def test_reserved_ports(servers: list[str], joins: list[str], metrics: str, expected: dict[int, str]) -> None:
    assert reserved_ports(servers, joins, metrics) == expected


async def test_the_userspace_proxy_never_binds_a_control_plane_port(tmp_path: Path) -> None:
    api, join, web = free_port(), free_port(), free_port()
    reserved = reserved_ports([f"127.0.0.1:{api}"], [f"127.0.0.1:{join}"])
    discovery = await build_service_network(
        {}, proxy_addresses=["127.0.0.1"], dns_port=0, data_dir=tmp_path, reserved_ports=reserved
    )
    try:
        with capture_logs() as logs:
            discovery.table.apply(routes(("takeover", api), ("joiner", join), ("web", web)))
            discovery.table.apply(routes(("takeover", api), ("joiner", join), ("web", web)))  # logged once
        assert discovery.proxy.listening() == [("127.0.0.1", web)]
        warned = sorted((e["service"], e["port"]) for e in logs if e["event"] == "proxy_port_reserved")
        assert warned == sorted([("default/takeover", api), ("default/joiner", join)])
        # The API port stays free for the server to listen on again.
        with socket.socket() as server:
            server.bind(("0.0.0.0", api))
    finally:
        discovery.table.apply(node_service_pb2.ServiceRoutes(full=True))


async def test_the_kernel_path_never_nats_a_control_plane_port(netns: None, tmp_path: Path) -> None:
    reserved = reserved_ports(["127.0.0.1:7443"], ["127.0.0.1:7444"], ":9464")
    discovery = await build_service_network(
        {},
        proxy_addresses=[PROXY],
        dns_port=0,
        data_dir=tmp_path,
        proxy_mode="nftables",
        node_name="n1",
        reserved_ports=reserved,
    )
    assert discovery.kernel is not None
    discovery.table.apply(routes(("api", 7443), ("join", 7444), ("metrics", 9464), ("web", 8080)))
    assert discovery.kernel.kernel_ports() == {8080: "default/web"}
    assert discovery.proxy.listening() == []
    await discovery.kernel._apply()
    try:
        ruleset = await nft_list()
        assert "tcp . 8080" in ruleset
        assert not any(f"tcp . {port}" in ruleset for port in (7443, 7444, 9464))
    finally:
        await discovery.kernel.nft.delete(discovery.kernel.table)
