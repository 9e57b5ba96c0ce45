"""The control plane's ports, which no Service may take (pure rule and the registry over a memory store)."""

from __future__ import annotations

import pytest

from controlplane.apiserver.reserved_ports import PortRegistry, reserved_port_causes
from controlplane.store.memory import MemoryStore
from protos.corral.v1 import service_pb2

RESERVED = {7443: "the control plane's API port (server a:7443)", 7444: "the control plane's join port (server a:7443)"}


def service(*ports: tuple[int, int], kind: str = "LoadBalancer") -> service_pb2.Service:
    s = service_pb2.Service()
    s.spec.type = kind
    for i, (port, node_port) in enumerate(ports):
        s.spec.ports.add(name=f"p{i}", port=port, node_port=node_port)
    return s


@pytest.mark.parametrize(
    ("ports", "fields"),
    [
        pytest.param([(80, 0)], [], id="free"),
        pytest.param([(7443, 0)], ["spec.ports[0].port"], id="the API port"),
        pytest.param([(80, 0), (8080, 7444)], ["spec.ports[1].nodePort"], id="a nodePort on the join port"),
        pytest.param([(7443, 7444)], ["spec.ports[0].nodePort", "spec.ports[0].port"], id="both"),
    ],
)
def test_reserved_port_causes(ports: list[tuple[int, int]], fields: list[str]) -> None:
    causes = reserved_port_causes(service(*ports), RESERVED)
    assert [c.field for c in causes] == fields
    for cause in causes:
        assert "is the control plane's" in cause.message and "choose another port" in cause.message


def test_a_cluster_ip_port_is_never_reserved() -> None:
    """A ClusterIP Service's port lives on its own virtual IP, not on the nodes' addresses."""
    assert reserved_port_causes(service((7443, 0), kind="ClusterIP"), RESERVED) == []
    assert [c.field for c in reserved_port_causes(service((7443, 7444), kind="NodePort"), RESERVED)] == [
        "spec.ports[0].nodePort"
    ]


async def test_every_replica_records_its_ports_and_reads_all() -> None:
    store = MemoryStore()
    first, second = PortRegistry(store, "/c"), PortRegistry(store, "/c")
    first.add(7443, "API")
    first.add(7444, "join")
    await first.publish("a:7443")
    second.add(8443, "API")
    second.add(0, "metrics")  # not listening: nothing reserved
    await second.publish("b:8443")
    assert await second.reserved() == {
        7443: "the control plane's API port (server a:7443)",
        7444: "the control plane's join port (server a:7443)",
        8443: "the control plane's API port (server b:8443)",
    }
    restarted = PortRegistry(store, "/c")  # the first replica again, its metrics port added
    restarted.add(7443, "API")
    restarted.add(9464, "metrics")
    await restarted.publish("a:7443")
    assert sorted(await second.reserved()) == [7443, 8443, 9464]
    assert await PortRegistry(store, "/other").reserved() == {}
