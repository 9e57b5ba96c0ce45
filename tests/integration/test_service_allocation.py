"""clusterIP and nodePort allocation on the real store (memory and etcd): two API replicas racing
for addresses and ports never hand one out twice, and ports can repeat across Services."""

from __future__ import annotations

import asyncio
import random

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.allocator import ServiceAllocator
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.service_ranges import ServiceRanges
from controlplane.store.base import Store
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import service_pb2


def replica(store: Store, prefix: str, seed: int, cidr: str = "10.43.0.0/27", ports: str = "30000-30009") -> ObjectApi:
    """One API replica: its own ObjectApi and allocator over the shared store."""
    allocator = ServiceAllocator(store, prefix, ServiceRanges.parse(cidr, ports), rng=random.Random(seed))
    return ObjectApi(ObjectStore(store, prefix), allocator=allocator)


def service(name: str, namespace: str = "default", kind: str = "NodePort") -> service_pb2.Service:
    s = service_pb2.Service(api_version="v1", kind="Service")
    s.metadata.name, s.metadata.namespace = name, namespace
    s.spec.type = kind
    s.spec.selector["app"] = name
    s.spec.ports.add(port=80)
    return s


async def test_two_replicas_racing_never_share_an_address_or_port(store: Store, key_prefix: str) -> None:
    # The same seed: both replicas try the same random addresses and ports in the same order.
    one, two = replica(store, key_prefix, 5), replica(store, key_prefix, 5)
    results = await asyncio.gather(
        *(api.create(service(f"s{i}")) for i, api in enumerate([one, two] * 7)), return_exceptions=True
    )
    made = [r for r in results if isinstance(r, service_pb2.Service)]
    refused = [r for r in results if isinstance(r, errors.InvalidError)]
    assert not [r for r in results if isinstance(r, BaseException) and not isinstance(r, errors.InvalidError)]
    # 10 node ports for 14 Services: 10 made, 4 refused with the field named.
    assert len(made) == 10 and len(refused) == 4
    assert len({s.spec.cluster_ip for s in made}) == 10
    assert len({s.spec.ports[0].node_port for s in made}) == 10
    assert {c.field for r in refused for c in r.causes} == {"spec.ports[0].nodePort"}
    # The refused creates left no address claimed: 30 usable addresses, 10 held.
    listed = await one.allocator.listed()
    assert sum(1 for k in listed if "/clusterips/" in k) == 10


async def test_two_services_on_port_80_in_two_namespaces(store: Store, key_prefix: str) -> None:
    api = replica(store, key_prefix, 1)
    a = await api.create(service("web", "a", kind="ClusterIP"))
    b = await api.create(service("web", "b", kind="ClusterIP"))
    assert isinstance(a, service_pb2.Service) and isinstance(b, service_pb2.Service)
    assert a.spec.ports[0].port == b.spec.ports[0].port == 80
    assert a.spec.cluster_ip != b.spec.cluster_ip


@pytest.mark.parametrize("kind", ["ClusterIP", "LoadBalancer"])
async def test_delete_frees_everything(store: Store, key_prefix: str, kind: str) -> None:
    api = replica(store, key_prefix, 2)
    await api.create(service("web", kind=kind))
    assert await api.allocator.listed() != {}
    await api.delete("Service", "default", "web")
    assert await api.allocator.listed() == {}
