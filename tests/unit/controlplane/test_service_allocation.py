"""Services' clusterIPs and nodePorts: allocation through the API over a memory store, races,
exhaustion, asked-for values, immutability, release on delete, and the leader's repair."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.allocator import Owner, ServiceAllocator
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.service_ranges import RangeError, ServiceRanges
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import codec
from protos.corral.v1 import service_pb2


def doc(name: str = "web", namespace: str = "default", **spec: Any) -> service_pb2.Service:
    base: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80}]}
    base.update(spec)
    raw = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": base}
    msg, problems = codec.from_dict(raw, service_pb2.Service)
    assert problems == []
    assert isinstance(msg, service_pb2.Service)
    return msg


def make_api(
    store: MemoryStore | None = None, cidr: str = "10.43.0.0/16", node_ports: str = "30000-32767", seed: int = 1
) -> ObjectApi:
    store = store or MemoryStore()
    allocator = ServiceAllocator(store, "/corral", ServiceRanges.parse(cidr, node_ports), rng=random.Random(seed))
    return ObjectApi(ObjectStore(store), allocator=allocator)


async def created(api: ObjectApi, svc: service_pb2.Service) -> service_pb2.Service:
    out = await api.create(svc)
    assert isinstance(out, service_pb2.Service)
    return out


async def test_every_service_gets_an_address_in_the_range_and_keeps_it() -> None:
    api = make_api()
    web = await created(api, doc())
    assert web.spec.cluster_ip.startswith("10.43.") and list(web.spec.cluster_ips) == [web.spec.cluster_ip]
    other = await created(api, doc(namespace="other"))
    assert other.spec.cluster_ip != web.spec.cluster_ip
    # Re-applied without clusterIP (as a manifest is), the address stays.
    again, _ = await api.apply(doc(ports=[{"port": 81}]))
    assert isinstance(again, service_pb2.Service)
    assert again.spec.cluster_ip == web.spec.cluster_ip
    headless = await created(api, doc("db", clusterIP="None"))
    assert headless.spec.cluster_ip == "None"


async def test_an_asked_for_address_is_given_once() -> None:
    api = make_api()
    first = await created(api, doc(clusterIP="10.43.0.10"))
    assert first.spec.cluster_ip == "10.43.0.10"
    with pytest.raises(errors.InvalidError) as info:
        await api.create(doc("api", clusterIP="10.43.0.10"))
    assert [str(c) for c in info.value.causes] == [
        'spec.clusterIPs[0]: Invalid value: ["10.43.0.10"]: failed to allocate IP 10.43.0.10: '
        "provided IP is already allocated"
    ]
    with pytest.raises(errors.InvalidError, match="not in the valid range; the range of valid IPs is 10.43.0.0/16"):
        await api.create(doc("api", clusterIP="10.44.0.1"))


async def test_the_address_is_immutable() -> None:
    api = make_api()
    web = await created(api, doc())
    web.spec.cluster_ip = "10.43.9.9"
    web.spec.cluster_ips[:] = ["10.43.9.9"]
    with pytest.raises(errors.InvalidError, match=r"spec.clusterIP: field is immutable"):
        await api.update(web)


async def test_a_full_range_is_a_field_error_and_a_delete_frees_an_address() -> None:
    api = make_api(cidr="10.43.0.0/30")  # two usable addresses
    await created(api, doc("a"))
    b = await created(api, doc("b"))
    with pytest.raises(errors.InvalidError) as info:
        await api.create(doc("c"))
    assert [c.field for c in info.value.causes] == ["spec.clusterIPs"]
    assert "range is full (10.43.0.0/30: 2 addresses, all in use)" in info.value.causes[0].message
    await api.delete("Service", "default", "b")
    c = await created(api, doc("c"))
    assert c.spec.cluster_ip == b.spec.cluster_ip


async def test_concurrent_creates_on_two_apis_never_share_an_address() -> None:
    store = MemoryStore()
    one, two = make_api(store, cidr="10.43.0.0/28", seed=7), make_api(store, cidr="10.43.0.0/28", seed=7)
    results = await asyncio.gather(
        *(api.create(doc(f"s{i}")) for i, api in enumerate([one, two] * 10)), return_exceptions=True
    )
    ips = [r.spec.cluster_ip for r in results if isinstance(r, service_pb2.Service)]
    full = [r for r in results if isinstance(r, errors.InvalidError)]
    assert len(ips) == 14 and len(set(ips)) == 14  # a /28 has 14 usable addresses
    assert len(full) == 6
    assert not [r for r in results if isinstance(r, BaseException) and not isinstance(r, errors.InvalidError)]


async def test_a_failed_write_frees_what_it_claimed() -> None:
    api = make_api(cidr="10.43.0.0/30")
    await created(api, doc("a"))
    with pytest.raises(errors.AlreadyExistsError):
        await api.create(doc("a"))  # claimed an address, then the write failed
    await created(api, doc("b"))  # the address claimed for the failed write is free again


@pytest.mark.parametrize(
    ("spec", "node_ports"),
    [
        pytest.param({"type": "ClusterIP"}, 0, id="cluster-ip"),
        pytest.param({"type": "NodePort"}, 1, id="node-port"),
        pytest.param({"type": "LoadBalancer"}, 1, id="load-balancer"),
        pytest.param({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": False}, 0, id="lb-without-node-ports"),
    ],
)
async def test_node_ports_are_allocated_for_the_types_that_have_them(spec: dict[str, Any], node_ports: int) -> None:
    api = make_api()
    svc = await created(api, doc(**spec))
    got = [p.node_port for p in svc.spec.ports if p.node_port]
    assert len(got) == node_ports and all(30000 <= p <= 32767 for p in got)


async def test_a_node_port_asked_for_twice_is_refused_and_kept_on_apply() -> None:
    api = make_api()
    web = await created(api, doc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert web.spec.ports[0].node_port == 30080
    with pytest.raises(errors.InvalidError) as info:
        await api.create(doc("api", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    assert [str(c) for c in info.value.causes] == [
        "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    ]
    with pytest.raises(errors.InvalidError, match="The range of valid ports is 30000-32767"):
        await api.create(doc("api", type="NodePort", ports=[{"port": 80, "nodePort": 8080}]))
    again, _ = await api.apply(doc(type="NodePort"))  # the manifest names no nodePort: it stays
    assert isinstance(again, service_pb2.Service) and again.spec.ports[0].node_port == 30080
    # Back to ClusterIP: the nodePort goes, and another Service may have it.
    back, _ = await api.apply(doc())
    assert isinstance(back, service_pb2.Service) and back.spec.ports[0].node_port == 0
    await created(api, doc("api", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))


async def test_a_full_node_port_range_is_a_field_error() -> None:
    api = make_api(node_ports="30000-30001")
    await created(api, doc("a", type="NodePort", ports=[{"name": "x", "port": 80}, {"name": "y", "port": 81}]))
    with pytest.raises(errors.InvalidError) as info:
        await api.create(doc("b", type="NodePort"))
    assert [c.field for c in info.value.causes] == ["spec.ports[0].nodePort"]
    assert "range is full (30000-30001)" in info.value.causes[0].message


async def test_delete_frees_node_ports() -> None:
    api = make_api()
    await created(api, doc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))
    await api.delete("Service", "default", "web")
    await created(api, doc("api", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))


def test_owner_round_trips_and_garbage_is_none() -> None:
    owner = Owner("ns", "web", "uid-1", 12.5)
    assert Owner.decode(owner.encode()) == owner
    assert Owner.decode(b"not json") is None


@pytest.mark.parametrize(
    ("cidr", "ports", "message"),
    [
        pytest.param("10.43.0.0/33", "30000-32767", "--service-cidr", id="bad-cidr"),
        pytest.param("fd00::/64", "30000-32767", "only IPv4", id="ipv6"),
        pytest.param("10.43.0.1/16", "30000-32767", "host bits", id="host-bits"),
        pytest.param("10.43.0.0/31", "30000-32767", "too small", id="too-small"),
        pytest.param("10.43.0.0/16", "32767-30000", "--service-node-port-range", id="reversed"),
        pytest.param("10.43.0.0/16", "30000", "FIRST-LAST", id="one-number"),
    ],
)
def test_bad_ranges_are_refused(cidr: str, ports: str, message: str) -> None:
    with pytest.raises(RangeError, match=message):
        ServiceRanges.parse(cidr, ports)
