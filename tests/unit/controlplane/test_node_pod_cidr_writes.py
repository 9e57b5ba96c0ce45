"""A Node written through the API with its own spec.podCIDR (an admin's `corral apply`): the subnet
must be one of the cluster CIDR's, and free or already this node's; it is then claimed for the
node, so that registration never hands it to another. (Every node's routes are built from it.)"""

from __future__ import annotations

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_cidrs import PodCidrRange, PodCidrs
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import meta_pb2, node_pb2

PREFIX = "/corral/allocations/podcidrs/"


def make() -> tuple[ObjectApi, MemoryStore]:
    store = MemoryStore()
    api = ObjectApi(ObjectStore(store), pod_cidrs=PodCidrs(store, "/corral", PodCidrRange.parse("10.42.0.0/16", 24)))
    return api, store


def node(name: str, pod_cidr: str = "") -> node_pb2.Node:
    return node_pb2.Node(metadata=meta_pb2.ObjectMeta(name=name), spec=node_pb2.NodeSpec(pod_cidr=pod_cidr))


async def owners(store: MemoryStore) -> dict[str, bytes]:
    page = await store.list(PREFIX, limit=100)
    return {kv.key.removeprefix(PREFIX): kv.value for kv in page.items}


@pytest.mark.parametrize(
    "pod_cidr",
    [
        pytest.param("0.0.0.0/0", id="everything"),
        pytest.param("10.43.0.0/24", id="outside the cluster CIDR"),
        pytest.param("10.42.0.0/25", id="not the node mask size"),
        pytest.param("10.42.0.0/16", id="the whole cluster CIDR"),
    ],
)
async def test_a_subnet_that_is_not_one_of_the_clusters_is_refused(pod_cidr: str) -> None:
    api, store = make()
    with pytest.raises(errors.InvalidError, match=r"spec\.podCIDR.*10\.42\.0\.0/16"):
        await api.create(node("n1", pod_cidr))
    with pytest.raises(errors.InvalidError, match=r"spec\.podCIDR"):
        await api.apply(node("n1", pod_cidr))
    created = await api.create(node("n2"))
    assert isinstance(created, node_pb2.Node)
    created.spec.pod_cidr = pod_cidr
    with pytest.raises(errors.InvalidError, match=r"spec\.podCIDR"):
        await api.update(created)
    assert await owners(store) == {}


async def test_a_subnet_given_is_claimed_and_another_node_cannot_take_it() -> None:
    api, store = make()
    await api.create(node("n1", "10.42.7.0/24"))
    assert list(await owners(store)) == ["10.42.7.0-24"] and b'"n1"' in (await owners(store))["10.42.7.0-24"]
    with pytest.raises(errors.InvalidError, match=r"spec\.podCIDR.*n1"):
        await api.create(node("n2", "10.42.7.0/24"))
    assert list(await owners(store)) == ["10.42.7.0-24"]
    applied, _ = await api.apply(node("n2", "10.42.8.0/24"))
    assert isinstance(applied, node_pb2.Node) and applied.spec.pod_cidr == "10.42.8.0/24"
    await api.delete("Node", "", "n1")
    assert list(await owners(store)) == ["10.42.8.0-24"]
    await api.create(node("n3", "10.42.7.0/24"))  # free again


@pytest.mark.parametrize(
    ("pod_cidr", "pod_cidrs"),
    [
        pytest.param("10.42.9.0/24", [], id="podCIDR alone"),
        pytest.param("", ["10.42.9.0/24"], id="podCIDRs alone"),
    ],
)
async def test_either_field_alone_fills_the_other_as_kubernetes(pod_cidr: str, pod_cidrs: list[str]) -> None:
    api, store = make()
    written = node("n1", pod_cidr)
    written.spec.pod_cidrs.extend(pod_cidrs)
    created = await api.create(written)
    assert isinstance(created, node_pb2.Node)
    assert (created.spec.pod_cidr, list(created.spec.pod_cidrs)) == ("10.42.9.0/24", ["10.42.9.0/24"])
    assert list(await owners(store)) == ["10.42.9.0-24"]
