"""Lease renewals that arrive within the batch window are written together: the store's group
commit puts them in one transaction, each still a compare-and-swap on its own Lease, and a Lease
changed elsewhere is read again and retried on its own. The Lease lasts three heartbeat periods
when the stretched period (large clusters) makes that longer than the grace period."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.informer import Informer
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.service import NodeService, set_ready
from controlplane.store.errors import StoreError
from controlplane.store.group_commit import GroupCommit, PendingWrite
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from controlplane.tunnels import TunnelRegistry
from protos import leases
from protos.corral.v1 import coordination_pb2, node_pb2
from protos.kinds import by_kind

pytestmark = pytest.mark.timeout(30)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEASE = by_kind("Lease")
NODES = [f"n{i}" for i in range(20)]


class GroupedStore(MemoryStore):
    """A MemoryStore whose updates go through a group commit, as EtcdStore's do; it records each
    batch's keys and each read's key."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.reads: list[str] = []
        self._group = GroupCommit(self._commit, max_items=64, max_bytes=1 << 20)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        return await self._group.write(key, value, expected_revision)

    async def get(self, key: str):  # type: ignore[no-untyped-def]
        self.reads.append(key)
        return await super().get(key)

    async def _commit(self, writes: Sequence[PendingWrite]) -> list[int | BaseException]:
        self.batches.append([w.key for w in writes])
        results: list[int | BaseException] = []
        for w in writes:
            try:
                results.append(await MemoryStore.update(self, w.key, w.value, expected_revision=w.expected))
            except StoreError as e:
                results.append(e)
        return results


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def plane(window: float) -> tuple[GroupedStore, ObjectApi, NodeService, Clock]:
    store = GroupedStore()
    objects = ObjectStore(store)
    api = ObjectApi(objects)
    clock = Clock()
    pods = AssignmentIndex(Informer(objects, by_kind("Pod")))
    service = NodeService(api, pods, TunnelRegistry(), lease_duration=12, lease_batch_window=window, now=clock)
    for name in NODES:
        node = node_pb2.Node()
        node.metadata.name = name
        set_ready(node, T0)
        await api.create(node)
    return store, api, service, clock


async def staggered_heartbeats(service: NodeService) -> None:
    """A heartbeat per node, each arriving a few loop turns after the previous one."""

    async def beat(name: str, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        await service._heartbeat(name)

    await asyncio.gather(*(beat(name, 3 * i) for i, name in enumerate(NODES)))


def lease_batches(store: GroupedStore) -> list[list[str]]:
    return [b for b in store.batches if all("/leases/" in k for k in b)]


async def stored_lease(api: ObjectApi, name: str) -> coordination_pb2.Lease:
    lease = await api.find(LEASE, leases.NODE_LEASE_NAMESPACE, name)
    assert isinstance(lease, coordination_pb2.Lease)
    return lease


async def test_renewals_within_the_window_share_one_transaction() -> None:
    store, api, service, clock = await plane(window=1.0)
    await staggered_heartbeats(service)  # creates the Leases
    store.batches.clear()
    clock.now = T0 + timedelta(seconds=4)
    await staggered_heartbeats(service)
    assert [len(b) for b in lease_batches(store)] == [len(NODES)]
    for name in NODES:
        assert leases.renew_time(await stored_lease(api, name)) == clock.now


async def test_a_lease_changed_elsewhere_is_read_again_and_retried_alone() -> None:
    store, api, service, clock = await plane(window=1.0)
    await staggered_heartbeats(service)
    changed = await stored_lease(api, "n7")
    changed.spec.holder_identity = "someone-else"
    await api.write(changed)
    store.batches.clear()
    store.reads.clear()
    clock.now = T0 + timedelta(seconds=4)
    await staggered_heartbeats(service)
    batches = lease_batches(store)
    assert len(batches[0]) == len(NODES)
    n7 = next(k for k in batches[0] if k.endswith("/n7"))
    assert batches[1:] == [[n7]]  # only n7's write again, after its read
    assert [k for k in store.reads if "/leases/" in k] == [n7]
    for name in NODES:
        lease = await stored_lease(api, name)
        assert leases.renew_time(lease) == clock.now and lease.spec.holder_identity == name


@pytest.mark.parametrize(
    ("connected", "period", "duration"),
    [
        pytest.param(100, 4, 12, id="small-cluster-gets-the-grace"),
        pytest.param(1_000, 4, 12, id="thousand-nodes"),
        pytest.param(5_000, 20, 60, id="five-thousand-nodes-stretched"),
    ],
)
async def test_the_lease_outlasts_three_heartbeat_periods(connected: int, period: int, duration: int) -> None:
    _, api, service, _ = await plane(window=0)
    service.connected.update(f"hollow-{i}" for i in range(connected))
    assert service.period() == period
    await service._heartbeat("n1")
    assert (await stored_lease(api, "n1")).spec.lease_duration_seconds == duration
