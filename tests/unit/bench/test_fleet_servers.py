"""bench/fleet.py --servers: which replica each hollow node dials first, and whose CPU is the control plane's."""

from __future__ import annotations

import pytest
from fleet import expected_shares, is_server, servers_cpu
from hollow import node_name

from agent.node.session import first_server


def test_expected_shares_follow_first_server() -> None:
    names = [node_name("hollow", i) for i in range(300)]
    shares = expected_shares(names, 3)
    assert sum(shares.values()) == 300
    assert shares["server1"] == sum(1 for n in names if first_server(n, 3) == 1)
    assert all(v > 0 for v in shares.values())


@pytest.mark.parametrize(
    ("name", "server"),
    [
        pytest.param("server", True, id="one-replica"),
        pytest.param("server2", True, id="a-replica"),
        pytest.param("etcd", False, id="etcd"),
        pytest.param("sim0", False, id="simulator"),
    ],
)
def test_is_server(name: str, server: bool) -> None:
    assert is_server(name) is server


def test_servers_cpu_sums_the_replicas() -> None:
    assert servers_cpu({"server0": 1.0, "server1": 2.5, "etcd": 9.0, "sim0": 4.0}) == 3.5
