"""Nodes' pod subnets: the range, allocation at registration over a memory store (racing replicas
never give one subnet twice), exhaustion, the agent's own subnet given back, keeping it across
writes, and freeing it when the Node is deleted."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from typing import Any, cast

import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_cidrs import PodCidrRange, PodCidrRangeError, PodCidrs
from controlplane.nodeapi.service import NodeService
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import meta_pb2, node_pb2, node_service_pb2

PREFIX = "/corral/allocations/podcidrs/"


def make(cidr: str = "10.42.0.0/16", mask: int = 24, store: MemoryStore | None = None) -> tuple[ObjectApi, NodeService]:
    store = store or MemoryStore()
    api = ObjectApi(ObjectStore(store), pod_cidrs=PodCidrs(store, "/corral", PodCidrRange.parse(cidr, mask)))
    return api, NodeService(api, cast(Any, None), cast(Any, None))


def request(name: str, wanted: str = "") -> node_service_pb2.RegisterRequest:
    req = node_service_pb2.RegisterRequest(node_name=name, pod_cidr=wanted)
    req.status.addresses.add(type="InternalIP", address="10.0.0.9")
    return req


async def register(service: NodeService, name: str, wanted: str = "") -> node_pb2.Node:
    node, _ = await service._register(request(name, wanted))
    return node


async def claimed(store: MemoryStore) -> dict[str, str]:
    page = await store.list(PREFIX, limit=1000)
    return {kv.key.removeprefix(PREFIX).replace("-", "/"): kv.value.decode() for kv in page.items}


@pytest.mark.parametrize(
    ("cidr", "mask", "message"),
    [
        pytest.param("10.42.0.0/16", 8, "between the cluster CIDR's /16 and 30", id="mask wider than the range"),
        pytest.param("10.42.0.0/16", 31, "between", id="mask too narrow"),
        pytest.param("fd00::/64", 80, "only IPv4", id="IPv6"),
        pytest.param("10.42.0.1/16", 24, "has host bits set", id="host bits"),
        pytest.param("ten", 24, "does not appear to be", id="not an address"),
    ],
)
def test_a_range_that_cannot_be_used_is_refused(cidr: str, mask: int, message: str) -> None:
    with pytest.raises(PodCidrRangeError, match=message):
        PodCidrRange.parse(cidr, mask)


def test_the_default_range_is_k3s_one() -> None:
    cluster = PodCidrRange.parse()
    assert (str(cluster.cidr), cluster.mask_size, cluster.count) == ("10.42.0.0/16", 24, 256)
    assert cluster.holds("10.42.7.0/24") and not cluster.holds("10.42.7.0/25") and not cluster.holds("10.43.0.0/24")


async def test_a_node_gets_a_subnet_at_registration_and_keeps_it() -> None:
    api, service = make()
    cluster = PodCidrRange.parse()
    first = await register(service, "n1")
    assert cluster.holds(first.spec.pod_cidr) and list(first.spec.pod_cidrs) == [first.spec.pod_cidr]
    second = await register(service, "n2")
    assert cluster.holds(second.spec.pod_cidr) and second.spec.pod_cidr != first.spec.pod_cidr
    again = await register(service, "n1")
    assert again.spec.pod_cidr == first.spec.pod_cidr
    # An admin's apply without the field keeps it; changing it is refused.
    n1 = meta_pb2.ObjectMeta(name="n1")
    applied, _ = await api.apply(node_pb2.Node(metadata=n1, spec=node_pb2.NodeSpec(unschedulable=True)))
    assert isinstance(applied, node_pb2.Node) and applied.spec.pod_cidr == first.spec.pod_cidr
    with pytest.raises(errors.InvalidError, match=r"spec.podCIDR.*immutable"):
        await api.apply(node_pb2.Node(metadata=n1, spec=node_pb2.NodeSpec(pod_cidr="10.42.255.0/24")))


def test_subnets_are_numbered_in_order() -> None:
    cluster = PodCidrRange.parse("10.42.0.0/16", 26)
    assert [cluster.subnet_at(i) for i in (0, 1, 4, cluster.count - 1)] == [
        "10.42.0.0/26",
        "10.42.0.64/26",
        "10.42.1.0/26",
        "10.42.255.192/26",
    ]
    assert list(cluster.subnets())[:2] == ["10.42.0.0/26", "10.42.0.64/26"]


async def test_the_subnet_the_agent_already_uses_is_given_back_when_free() -> None:
    _, service = make()
    assert (await register(service, "n1", wanted="10.42.77.0/24")).spec.pod_cidr == "10.42.77.0/24"
    # Taken, or not one of the range's subnets: another one instead.
    other = (await register(service, "n2", wanted="10.42.77.0/24")).spec.pod_cidr
    outside = (await register(service, "n3", wanted="10.99.0.0/24")).spec.pod_cidr
    assert len({"10.42.77.0/24", other, outside}) == 3 and all(s.startswith("10.42.") for s in (other, outside))


async def test_a_deleted_node_frees_its_subnet() -> None:
    store = MemoryStore()
    api, service = make("10.42.0.0/23", 24, store=store)
    first = (await register(service, "n1")).spec.pod_cidr
    second = (await register(service, "n2")).spec.pod_cidr
    await api.delete("Node", "", "n1")
    assert sorted(await claimed(store)) == [second]
    assert (await register(service, "n3")).spec.pod_cidr == first


async def test_an_exhausted_range_registers_the_node_without_a_subnet_and_says_so() -> None:
    api, service = make("10.42.0.0/24", 25)
    recorded: list[tuple[str, str, str]] = []

    async def record(obj: Message, type_: str, reason: str, message: str) -> None:
        recorded.append((type_, reason, message))

    service.events = record
    first = (await register(service, "n1")).spec.pod_cidr
    await register(service, "n2")
    with capture_logs() as logs:
        third = await register(service, "n3")
    assert third.spec.pod_cidr == "" and list(third.spec.pod_cidrs) == []
    assert any(e["event"] == "pod_cidr_range_full" for e in logs)
    [(type_, reason, message)] = recorded
    assert (type_, reason) == ("Warning", "CIDRNotAvailable")
    assert "10.42.0.0/24" in message and "publish" in message
    # Once one is freed, the next registration of the node gets it.
    await api.delete("Node", "", "n1")
    assert (await register(service, "n3")).spec.pod_cidr == first


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["register", "delete"]), st.lists(st.integers(0, 7), min_size=1, max_size=4)),
        min_size=1,
        max_size=12,
    )
)
def test_no_two_nodes_ever_share_a_subnet(steps: list[tuple[str, list[int]]]) -> None:
    """Two API replicas (one store) register and delete nodes, several at once: every Node with a
    subnet has its own, inside the range, and the claimed keys are exactly the Nodes' subnets."""

    async def scenario() -> None:
        store = MemoryStore()
        (api, one), (_, two) = make("10.42.0.0/22", 24, store), make("10.42.0.0/22", 24, store)
        for action, nodes in steps:
            if action == "register":
                await asyncio.gather(
                    *(
                        register(one if i % 2 else two, f"n{n}")
                        for i, n in enumerate(nodes)
                        if not (i and nodes[i - 1] == n)
                    ),
                    return_exceptions=True,
                )
            else:
                for n in set(nodes):
                    with contextlib.suppress(errors.NotFoundError):
                        await api.delete("Node", "", f"n{n}")
            listed = await api.list("Node", "")
            subnets = [n.spec.pod_cidr for n in listed.items if isinstance(n, node_pb2.Node) and n.spec.pod_cidr]
            assert len(subnets) == len(set(subnets))
            assert all(ipaddress.IPv4Network(s).subnet_of(ipaddress.IPv4Network("10.42.0.0/22")) for s in subnets)
            assert sorted(await claimed(store)) == sorted(subnets)

    asyncio.run(scenario())
