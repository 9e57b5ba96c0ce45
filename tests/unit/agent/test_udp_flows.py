"""Stale UDP flows after a kernel table change (agent/network/proxy/udp_flows.py), the conntrack
command that deletes them (conntrack.py), and the affinity sets read back from nft (nftables.py)."""

from __future__ import annotations

import json

import pytest

from agent.network.proxy.conntrack import command
from agent.network.proxy.nft_rules import Plan, plan
from agent.network.proxy.nftables import parse_sets
from agent.network.proxy.udp_flows import Flow, stale_flows
from protos.corral.v1 import discovery_pb2

ADDRESSES = ["127.0.0.5", "10.1.0.1"]


def udp(*ports: int, node_port: int = 0, protocol: str = "UDP", algorithm: str = "") -> Plan:
    route = discovery_pb2.ServiceRoute(
        namespace="default",
        name="dns",
        cluster_ip="10.43.0.10",
        type="NodePort" if node_port else "ClusterIP",
        load_balancing=algorithm,
        ports=[
            discovery_pb2.RoutePort(
                protocol=protocol,
                port=53,
                node_port=node_port,
                backends=[discovery_pb2.RouteBackend(address="10.0.0.1", port=p, pod=f"p{p}") for p in ports],
            )
        ],
    )
    return plan({"default/dns": route})


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(udp(5001, 5002), udp(5001, 5002), [], id="unchanged"),
        pytest.param(udp(5001), udp(5001, 5002), [], id="endpoint-added"),
        pytest.param(udp(5001, 5002), udp(5002), [Flow("10.43.0.10", 53, ("10.0.0.1", 5001))], id="endpoint-removed"),
        pytest.param(udp(5001), udp(), [Flow("10.43.0.10", 53, ("10.0.0.1", 5001))], id="last-endpoint-removed"),
        pytest.param(udp(), udp(5001), [Flow("10.43.0.10", 53)], id="first-endpoint"),
        pytest.param(Plan(), udp(5001), [Flow("10.43.0.10", 53)], id="new-frontend"),
        pytest.param(Plan(), udp(), [], id="new-frontend-without-endpoints"),
        pytest.param(udp(5001), Plan(), [Flow("10.43.0.10", 53)], id="service-gone"),
        pytest.param(
            udp(5001), udp(5001, algorithm="LeastConnections"), [Flow("10.43.0.10", 53)], id="moved-to-userspace"
        ),
        pytest.param(udp(5001, 5002, protocol="TCP"), udp(5002, protocol="TCP"), [], id="tcp-is-left-alone"),
        pytest.param(
            udp(5001, 5002, node_port=30053),
            udp(5002, node_port=30053),
            [
                Flow("10.1.0.1", 30053, ("10.0.0.1", 5001)),
                Flow("10.43.0.10", 53, ("10.0.0.1", 5001)),
                Flow("127.0.0.5", 30053, ("10.0.0.1", 5001)),
            ],
            id="node-port-on-every-address",
        ),
    ],
)
def test_stale_flows(old: Plan, new: Plan, expected: list[Flow]) -> None:
    assert stale_flows(old, new, ADDRESSES) == expected


@pytest.mark.parametrize(
    ("flow", "args"),
    [
        pytest.param(
            Flow("10.43.0.10", 53),
            "-D -p udp --orig-dst 10.43.0.10 --orig-port-dst 53",
            id="every-flow-to-the-frontend",
        ),
        pytest.param(
            Flow("10.43.0.10", 53, ("10.0.0.1", 5001)),
            "-D -p udp --orig-dst 10.43.0.10 --orig-port-dst 53 --reply-src 10.0.0.1 --reply-port-src 5001",
            id="dnated-to-one-backend",
        ),
    ],
)
def test_conntrack_command(flow: Flow, args: str) -> None:
    assert " ".join(command(flow)) == args


def test_parse_sets_reads_the_clients_and_their_time_left() -> None:
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {
                "set": {
                    "name": "ip_10_43_0_10_80_b0_aff",
                    "timeout": 10800,
                    "elem": [
                        {"elem": {"val": "10.9.0.1", "expires": 8999}},
                        {"elem": {"val": "10.9.0.2", "timeout": 60, "expires": 4}},
                        "10.9.0.3",  # no timeout shown: left out
                    ],
                }
            },
            {"set": {"name": "ip_10_43_0_10_80_b1_aff", "timeout": 10800}},
            {"set": {"name": "plain", "elem": ["10.9.0.4"]}},
            {"rule": {"chain": "x", "expr": []}},
        ]
    }
    assert parse_sets(json.dumps(listing)) == {
        "ip_10_43_0_10_80_b0_aff": (10800, {"10.9.0.1": 8999, "10.9.0.2": 4}),
        "ip_10_43_0_10_80_b1_aff": (10800, {}),
    }
