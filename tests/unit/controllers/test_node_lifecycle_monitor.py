"""A healthy node that keeps renewing its Lease costs no sync: its deadline waits in the heartbeat
monitor, which arms it again when the Lease was renewed and queues a full sync only for a node
that stopped renewing (caught at its deadline, as before). A node's Lease lasts its
leaseDurationSeconds when longer than the grace period. Over a driven clock and a MemoryStore."""

from __future__ import annotations

from datetime import datetime, timedelta

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.nodelifecycle.controller import HEARTBEAT_MONITOR, NodeLifecycleController
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import leases
from protos.corral.v1 import coordination_pb2, node_pb2
from protos.kinds import by_kind
from tests.unit.controllers.lifecycle_builders import at, node


class Clock:
    def __init__(self) -> None:
        self.now = at(0)

    def __call__(self) -> datetime:
        return self.now


class Plane:
    """A controller bound to caches that the test fills (nothing runs: the test drives each step)."""

    def __init__(self) -> None:
        objects = ObjectStore(MemoryStore())
        self.api = ObjectApi(objects)
        self.clock = Clock()
        self.controller = NodeLifecycleController(
            self.api, EventRecorder(self.api, "node-lifecycle-controller"), grace=12, now=self.clock
        )
        self.nodes, self.leases = Informer(objects, by_kind("Node")), Informer(objects, by_kind("Lease"))
        self.queue = WorkQueue()
        informers = {"Node": self.nodes, "Pod": Informer(objects, by_kind("Pod")), "Lease": self.leases}
        self.controller.bind(informers, self.queue)

    async def add_node(self, name: str) -> None:
        created = await self.api.create(node(name))
        self.nodes.items[name] = created

    def renew(self, name: str, seconds: float, duration: int = 12) -> None:
        lease = coordination_pb2.Lease()
        lease.metadata.namespace, lease.metadata.name = leases.NODE_LEASE_NAMESPACE, name
        lease.spec.renew_time.FromDatetime(at(seconds))
        lease.spec.lease_duration_seconds = duration
        self.leases.items[leases.node_lease_key(name)] = lease

    def queued(self) -> list[str]:
        return list(self.queue._queue)

    async def drain(self) -> None:
        """Take what the first syncs queued (the start of the disruption watch queues every node)."""
        while len(self.queue):
            self.queue.done(await self.queue.get())

    async def stored(self, name: str) -> node_pb2.Node:
        found = await self.api.find(by_kind("Node"), "", name)
        assert isinstance(found, node_pb2.Node)
        return found


async def test_a_healthy_node_waits_in_the_monitor_not_in_the_queue() -> None:
    plane = Plane()
    await plane.add_node("n1")
    plane.renew("n1", 0)
    assert await plane.controller.sync("n1") is None
    assert "n1" in plane.controller.deadlines
    assert plane.controller.deadlines.next_at() == at(12)


async def test_renewals_cost_no_sync_and_a_silent_node_is_caught_at_its_deadline() -> None:
    plane = Plane()
    for name in ("n1", "n2"):
        await plane.add_node(name)
        plane.renew(name, 0)
        await plane.controller.sync(name)
    await plane.drain()
    # Both renew every 4 s until 20 s; n2 stops there.
    for t in (4, 8, 12, 16, 20):
        plane.renew("n1", t)
        plane.renew("n2", t)
    plane.clock.now = at(12.5)
    again = plane.controller.recheck_deadlines()
    assert plane.queued() == []
    assert plane.controller.deadlines.next_at() == at(32)
    assert again == 32 - 12.5 + 0.01
    for t in (24, 28, 32):
        plane.renew("n1", t)
    plane.clock.now = at(32.01)
    plane.controller.recheck_deadlines()
    assert plane.queued() == ["n2"]
    assert "n1" in plane.controller.deadlines and "n2" not in plane.controller.deadlines
    await plane.controller.sync("n2")
    status = await plane.stored("n2")
    assert status.status.conditions[0].status == "Unknown"


async def test_the_monitor_looks_at_most_every_tick() -> None:
    plane = Plane()
    for n, name in enumerate(("n1", "n2")):
        await plane.add_node(name)
        plane.renew(name, n * 0.01)
        await plane.controller.sync(name)
    plane.clock.now = at(12.001)
    assert plane.controller.recheck_deadlines() == 0.1


async def test_the_monitor_key_is_synced_by_the_controller() -> None:
    plane = Plane()
    await plane.add_node("n1")
    plane.renew("n1", 0)
    await plane.controller.sync("n1")
    await plane.drain()
    plane.clock.now = at(13)
    assert await plane.controller.sync(HEARTBEAT_MONITOR) is None
    assert plane.queued() == ["n1"]


async def test_a_node_gets_its_lease_duration_when_longer_than_the_grace_period() -> None:
    """A stretched heartbeat period (20 s at 5,000 nodes) comes with a 60 s Lease: the node is not
    unreachable 12 s after its last renewal, but after 60."""
    plane = Plane()
    await plane.add_node("n1")
    plane.renew("n1", 0, duration=60)
    await plane.controller.sync("n1")  # the controller starts at 0
    before = (await plane.stored("n1")).metadata.resource_version
    plane.clock.now = at(30)
    assert await plane.controller.sync("n1") is None
    assert plane.controller.deadlines.next_at() == at(60)
    assert (await plane.stored("n1")).metadata.resource_version == before
    plane.clock.now = at(60.5)
    await plane.controller.sync("n1")
    assert (await plane.stored("n1")).status.conditions[0].status == "Unknown"


async def test_a_short_lease_gets_the_grace_period() -> None:
    plane = Plane()
    await plane.add_node("n1")
    plane.renew("n1", 0, duration=5)
    await plane.controller.sync("n1")
    assert plane.controller.deadlines.next_at() == at(12)


def test_deadlines_keep_one_per_node() -> None:
    from controlplane.controllers.nodelifecycle.deadlines import Deadlines

    d = Deadlines()
    d.arm("a", at(5))
    d.arm("b", at(3))
    d.arm("a", at(9))
    d.disarm("b")
    assert d.next_at() == at(9)
    assert d.pop_due(at(8)) == []
    assert d.pop_due(at(9) + timedelta(seconds=1)) == ["a"]
    assert len(d) == 0 and d.next_at() is None
