"""Eviction rates per zone (Kubernetes' --node-eviction-rate, --secondary-node-eviction-rate,
--unhealthy-zone-threshold, --large-cluster-size-threshold): the pure rules, and the controller
over a driven clock and the in-memory store losing many nodes at once."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.nodelifecycle.controller import NodeLifecycleController
from controlplane.controllers.nodelifecycle.reconcile import Health
from controlplane.controllers.nodelifecycle.zones import (
    EvictionRates,
    ZoneLimits,
    ZoneState,
    zone_rate,
    zone_state,
    zone_states,
)
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import leases
from protos.corral.v1 import coordination_pb2, node_pb2, pod_pb2
from protos.kinds import by_kind
from protos.wellknown import ZONE
from tests.unit.controllers.lifecycle_builders import at, node, pod

R, N = Health.READY, Health.UNREACHABLE


@pytest.mark.parametrize(
    ("healths", "state"),
    [
        pytest.param([R] * 10, ZoneState.NORMAL, id="all-ready"),
        pytest.param([R] * 9 + [N], ZoneState.NORMAL, id="ten-percent"),
        pytest.param([R] * 4 + [N] * 6, ZoneState.PARTIAL_DISRUPTION, id="sixty-percent"),
        pytest.param([R] * 45 + [N] * 55, ZoneState.PARTIAL_DISRUPTION, id="at-the-threshold"),
        pytest.param([R] * 46 + [N] * 54, ZoneState.NORMAL, id="under-the-threshold"),
        pytest.param([R] + [N] * 2, ZoneState.NORMAL, id="two-down-is-never-partial"),
        pytest.param([N] * 3, ZoneState.FULL_DISRUPTION, id="none-ready"),
        pytest.param([Health.NEW, N], ZoneState.FULL_DISRUPTION, id="new-nodes-are-not-ready"),
    ],
)
def test_zone_state(healths: list[Health], state: ZoneState) -> None:
    assert zone_state(healths) is state


@pytest.mark.parametrize(
    ("state", "size", "rate"),
    [
        pytest.param(ZoneState.NORMAL, 1000, 0.1, id="normal"),
        pytest.param(ZoneState.PARTIAL_DISRUPTION, 1000, 0.01, id="partial-large"),
        pytest.param(ZoneState.PARTIAL_DISRUPTION, 51, 0.01, id="partial-just-large"),
        pytest.param(ZoneState.PARTIAL_DISRUPTION, 50, 0.0, id="partial-small"),
        pytest.param(ZoneState.FULL_DISRUPTION, 10, 0.1, id="full-zone-normal-rate"),
    ],
)
def test_zone_rate(state: ZoneState, size: int, rate: float) -> None:
    assert zone_rate(state, size, EvictionRates()) == rate


def test_zone_limits_keep_tokens_when_the_rate_changes() -> None:
    limits = ZoneLimits().with_states({"a": (ZoneState.NORMAL, 100)})
    taken, _, limits = limits.take("a", at(0))
    assert taken
    limits = limits.with_states({"a": (ZoneState.PARTIAL_DISRUPTION, 100)})
    taken, wait, limits = limits.take("a", at(1))
    assert not taken and wait == pytest.approx(99.0)  # 0.01/s from 0.01 tokens
    small = limits.with_states({"a": (ZoneState.PARTIAL_DISRUPTION, 10)})
    assert small.take("a", at(1000))[:2] == (False, None)


def test_nodes_without_a_zone_label_are_one_zone() -> None:
    labelled = node("a1")
    labelled.metadata.labels[ZONE] = "a"
    states = zone_states([(labelled, R), (node("x"), N), (node("y"), R)])
    assert states == {"a": (ZoneState.NORMAL, 1), "": (ZoneState.NORMAL, 2)}


# -- the controller losing nodes at once ----------------------------------------------------------

GRACE = 12.0
WINDOW = 60.0  # seconds the test watches after the lost nodes' grace period ended
STEP = 2.0


class Clock:
    def __init__(self) -> None:
        self.now = at(0)

    def __call__(self) -> datetime:
        return self.now


def lease(name: str, renewed: float) -> coordination_pb2.Lease:
    lease = coordination_pb2.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
    lease.metadata.namespace, lease.metadata.name = leases.NODE_LEASE_NAMESPACE, name
    lease.spec.holder_identity = name
    lease.spec.renew_time.FromDatetime(at(renewed))
    return lease


def no_execute(n: object) -> bool:
    return isinstance(n, node_pb2.Node) and any(t.effect == "NoExecute" for t in n.spec.taints)


async def lose(total: int, lost: int | set[int], *, zones: int = 1) -> tuple[int, int, int]:
    """`total` nodes (node i in zone i % `zones`) whose Ready stamps are old and whose Leases alone
    say who is alive: the `lost` ones (the first `lost`, or these indices) stop renewing at 0, the
    others' Leases stay fresh. Syncs the lost nodes every STEP seconds
    for WINDOW seconds after their grace ended; (nodes tainted NoExecute, their pods evicted, others
    tainted)."""
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    clock = Clock()
    controller = NodeLifecycleController(api, EventRecorder(api, "node-lifecycle-controller"), grace=GRACE, now=clock)
    names = [f"n{i:04d}" for i in range(total)]
    gone = set(range(lost)) if isinstance(lost, int) else lost
    for i, name in enumerate(names):
        n = node(name, heartbeat=-1000.0)  # the Node's own stamp is stale: only the Lease keeps it alive
        if zones > 1:
            n.metadata.labels[ZONE] = f"z{i % zones}"
        await objects.create(n)
        await objects.create(lease(name, 0.0 if i in gone else 10_000.0))
        if i in gone:
            await objects.create(pod(f"p-{name}", node_name=name))
    informers = {kind: Informer(objects, by_kind(kind)) for kind in ("Node", "Pod", "Lease")}
    tasks = [asyncio.create_task(i.run()) for i in informers.values()]
    try:
        await asyncio.gather(*(i.synced.wait() for i in informers.values()))
        controller.bind(informers, WorkQueue())
        t = GRACE + 1
        while t <= GRACE + 1 + WINDOW:
            clock.now = at(t)
            for i in sorted(gone):
                await controller.sync(names[i])
            await informers["Node"].refresh()
            await informers["Pod"].refresh()
            t += STEP
        tainted = sum(1 for i in gone if no_execute(informers["Node"].items.get(names[i])))
        others = sum(1 for i in range(total) if i not in gone and no_execute(informers["Node"].items.get(names[i])))
        pods = {k for k, p in informers["Pod"].items.items() if isinstance(p, pod_pb2.Pod)}
        return tainted, len(gone) - len(pods), others
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def allowed(rate: float) -> int:
    """Nodes a bucket of burst 1 lets through in WINDOW seconds."""
    return 1 + int(rate * (WINDOW + STEP))


async def test_losing_ten_percent_of_a_thousand_nodes_taints_and_evicts_at_the_node_eviction_rate() -> None:
    tainted, evicted, others = await lose(1000, 100)
    assert 2 <= tainted <= allowed(0.1)
    assert evicted <= tainted
    assert evicted >= 1
    assert others == 0  # the healthy nodes' Leases keep them Ready although their Node stamps are old


async def test_losing_sixty_percent_switches_to_the_secondary_rate() -> None:
    tainted, evicted, _ = await lose(200, 120)
    assert tainted == allowed(0.01) == 1
    assert evicted <= 1


async def test_losing_sixty_percent_of_a_small_cluster_evicts_nothing() -> None:
    tainted, evicted, _ = await lose(40, 24)
    assert (tainted, evicted) == (0, 0)


async def test_losing_every_node_evicts_nothing() -> None:
    tainted, evicted, _ = await lose(60, 60)
    assert (tainted, evicted) == (0, 0)


async def test_zones_are_judged_apart() -> None:
    # 3 zones of 30: 18 nodes of z0 lost are 60% of their zone (a small zone: no evictions), though
    # only 20% of the cluster (which, as one zone, would evict at the normal rate).
    tainted, evicted, others = await lose(90, {i for i in range(90) if i % 3 == 0 and i < 54}, zones=3)
    assert (tainted, evicted, others) == (0, 0, 0)


async def test_a_whole_zone_lost_among_healthy_ones_goes_at_the_normal_rate() -> None:
    tainted, _, others = await lose(90, {i for i in range(90) if i % 3 == 0}, zones=3)
    assert 2 <= tainted <= allowed(0.1)
    assert others == 0
