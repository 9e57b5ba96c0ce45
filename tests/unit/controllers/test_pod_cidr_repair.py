"""The leader's pod subnet repair: the decisions (pure), and passes over a memory store — a
subnet claimed by a registration whose Node never came is freed once older than the grace, a
young claim and a Node's own are kept, a Node's missing key is claimed again, and a registration
taking back its old key while a pass runs keeps it (compare-and-swap)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_cidrs import Claim, PodCidrRange, PodCidrs
from controlplane.controllers.podcidrs.controller import PodCidrRepair
from controlplane.controllers.podcidrs.reconcile import repair
from controlplane.nodeapi.service import NodeService
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import node_service_pb2

PREFIX = "/corral/allocations/podcidrs/"
T0 = datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
GRACE = 60.0
NOW = T0.timestamp()


@pytest.mark.parametrize(
    ("held", "claims", "free", "claim", "clashes"),
    [
        pytest.param(
            {}, {"10.42.1.0/24": Claim("ghost", NOW - 61, 5)}, [("10.42.1.0/24", 5)], [], [], id="no-node-old"
        ),
        pytest.param({}, {"10.42.1.0/24": Claim("ghost", NOW - 30, 5)}, [], [], [], id="no-node-young"),
        pytest.param(
            {"n1": "10.42.2.0/24"},
            {"10.42.1.0/24": Claim("n1", NOW - 61, 5), "10.42.2.0/24": Claim("n1", NOW - 61, 6)},
            [("10.42.1.0/24", 5)],
            [],
            [],
            id="node-holds-another",
        ),
        pytest.param(
            {"n1": ""}, {"10.42.1.0/24": Claim("n1", NOW - 61, 5)}, [("10.42.1.0/24", 5)], [], [], id="node-holds-none"
        ),
        pytest.param({"n1": "10.42.1.0/24"}, {"10.42.1.0/24": Claim("n1", NOW - 999, 5)}, [], [], [], id="held"),
        pytest.param({}, {"10.42.1.0/24": Claim("", None, 5)}, [("10.42.1.0/24", 5)], [], [], id="unreadable"),
        pytest.param({"n1": "10.42.1.0/24"}, {}, [], [("10.42.1.0/24", "n1")], [], id="key-missing"),
        pytest.param(
            {"n1": "10.42.1.0/24"},
            {"10.42.1.0/24": Claim("n2", NOW - 999, 5)},
            [],
            [],
            [("10.42.1.0/24", "n1", "n2")],
            id="clash",
        ),
    ],
)
def test_repair_decisions(
    held: dict[str, str],
    claims: dict[str, Claim],
    free: list[tuple[str, int]],
    claim: list[tuple[str, str]],
    clashes: list[tuple[str, str, str]],
) -> None:
    plan = repair(held, claims, now=NOW, grace=GRACE)
    assert (plan.free, plan.claim, plan.clashes) == (free, claim, clashes)


class Cluster:
    """A memory store, its API, the node service registering, a repair, and a clock for both."""

    def __init__(self) -> None:
        self.at = T0
        self.store = MemoryStore()
        self.cidrs = PodCidrs(self.store, "/corral", PodCidrRange.parse("10.42.0.0/16", 24), now=lambda: self.at)
        self.api = ObjectApi(ObjectStore(self.store), pod_cidrs=self.cidrs)
        self.nodes = NodeService(self.api, cast(Any, None), cast(Any, None))
        self.repair = PodCidrRepair(self.api, grace=GRACE, now=lambda: self.at)

    def later(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)

    async def register(self, name: str, wanted: str = "") -> str:
        """Register `name` (asking for `wanted`, the subnet of its agent's bridge); its subnet."""
        request = node_service_pb2.RegisterRequest(node_name=name, pod_cidr=wanted)
        request.status.addresses.add(type="InternalIP", address="10.0.0.9")
        node, _ = await self.nodes._register(request)
        return node.spec.pod_cidr

    async def claimed(self) -> dict[str, str]:
        return {s: c.node for s, c in (await self.cidrs.claims()).items()}


async def test_a_leaked_subnet_is_freed_after_the_grace_and_nodes_keep_theirs() -> None:
    cluster = Cluster()
    kept = await cluster.register("n1")
    leaked = await cluster.cidrs.allocate("ghost")  # claimed, then the server crashed before the Node write
    cluster.later(30)
    assert await cluster.repair.sync("repair") == cluster.repair.period
    assert await cluster.claimed() == {kept: "n1", leaked: "ghost"}  # young: a write may be on its way

    cluster.later(31)
    with capture_logs() as logs:
        await cluster.repair.sync("repair")
    assert await cluster.claimed() == {kept: "n1"}
    assert [(e["event"], e["pod_cidr"]) for e in logs] == [("pod_cidr_leak_freed", leaked)]


async def test_a_node_whose_key_is_missing_gets_it_claimed_again() -> None:
    cluster = Cluster()
    subnet = await cluster.register("n1")
    await cluster.store.delete(PREFIX + subnet.replace("/", "-"))
    await cluster.repair.repair()
    assert await cluster.claimed() == {subnet: "n1"}


async def test_a_registration_taking_back_its_old_key_during_a_pass_keeps_it() -> None:
    cluster = Cluster()
    old = await cluster.cidrs.allocate("n2")  # a registration of n2 that crashed before its Node write
    cluster.later(600)
    listing = cluster.api.watch_start

    async def nodes_then_n2_registers(kind: str, namespace: str = "", *, selector: str = "") -> Any:
        listed = await listing(kind, namespace, selector=selector)  # the pass reads the Nodes: no n2
        assert await cluster.register("n2", old) == old  # n2's agent comes back: its key taken back
        return listed

    cluster.api.watch_start = nodes_then_n2_registers  # type: ignore[method-assign]
    await cluster.repair.repair()  # decides to free the old claim: the compare-and-swap refuses
    assert await cluster.claimed() == {old: "n2"}
