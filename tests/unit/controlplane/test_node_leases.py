"""Heartbeats renew the node's Lease and leave the Node alone unless its Ready condition is due;
the Lease kind (coordination.k8s.io/v1) is registered, validated and printed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.validation import validate
from controlplane.informer import CacheEvent, Change, Informer
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.service import NODE_STATUS_REFRESH, NodeService, set_ready, status_due
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from controlplane.tunnels import TunnelRegistry
from corral.cli import printers
from protos import kinds, leases
from protos.corral.v1 import coordination_pb2, node_pb2
from protos.kinds import by_kind

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NODE = by_kind("Node")
LEASE = by_kind("Lease")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def plane() -> tuple[ObjectApi, NodeService, Clock]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    clock = Clock()
    service = NodeService(
        api,
        AssignmentIndex(Informer(objects, by_kind("Pod"))),
        TunnelRegistry(),
        lease_duration=12,
        now=clock,
        lease_batch_window=0,
    )
    node = node_pb2.Node()
    node.metadata.name = "n1"
    set_ready(node, T0)
    await api.create(node)
    return api, service, clock


async def stored_node(api: ObjectApi) -> node_pb2.Node:
    node = await api.find(NODE, "", "n1")
    assert isinstance(node, node_pb2.Node)
    return node


async def stored_lease(api: ObjectApi) -> coordination_pb2.Lease:
    lease = await api.find(LEASE, leases.NODE_LEASE_NAMESPACE, "n1")
    assert isinstance(lease, coordination_pb2.Lease)
    return lease


async def test_a_heartbeat_renews_the_lease_and_does_not_write_the_node() -> None:
    api, service, clock = await plane()
    before = (await stored_node(api)).metadata.resource_version
    clock.now = T0 + timedelta(seconds=4)
    await service._heartbeat("n1")
    assert (await stored_node(api)).metadata.resource_version == before
    lease = await stored_lease(api)
    assert lease.spec.holder_identity == "n1"
    assert lease.spec.lease_duration_seconds == 12
    assert leases.renew_time(lease) == clock.now
    owner = lease.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == ("Node", "n1", (await stored_node(api)).metadata.uid)
    clock.now = T0 + timedelta(seconds=8)
    await service._heartbeat("n1")
    assert leases.renew_time(await stored_lease(api)) == clock.now
    assert (await stored_node(api)).metadata.resource_version == before


async def test_a_lease_changed_elsewhere_is_read_again() -> None:
    api, service, clock = await plane()
    await service._heartbeat("n1")
    other = await stored_lease(api)
    other.spec.lease_duration_seconds = 99
    await api.write(other)  # another replica (or a user) wrote it since
    clock.now = T0 + timedelta(seconds=4)
    await service._heartbeat("n1")
    lease = await stored_lease(api)
    assert leases.renew_time(lease) == clock.now and lease.spec.lease_duration_seconds == 12


async def test_a_node_marked_unknown_is_made_ready_again_by_the_next_heartbeat() -> None:
    api, service, clock = await plane()
    node = await stored_node(api)
    node.status.conditions[0].status = "Unknown"
    await api.write(node)
    clock.now = T0 + timedelta(seconds=30)
    await service._heartbeat("n1")
    cond = (await stored_node(api)).status.conditions[0]
    assert cond.status == "True" and cond.last_heartbeat_time.ToDatetime(tzinfo=UTC) == clock.now


@pytest.mark.parametrize(
    ("status", "reason", "age", "due"),
    [
        pytest.param("True", "AgentReady", 4.0, False, id="fresh"),
        pytest.param("True", "AgentReady", NODE_STATUS_REFRESH - 1, False, id="just-before-refresh"),
        pytest.param("True", "AgentReady", NODE_STATUS_REFRESH, True, id="refresh-due"),
        pytest.param("Unknown", "NodeStatusUnknown", 1.0, True, id="marked-unknown"),
        pytest.param("False", "AgentReady", 1.0, True, id="not-ready"),
        pytest.param(None, "", 0.0, True, id="no-condition"),
    ],
)
def test_status_due(status: str | None, reason: str, age: float, due: bool) -> None:
    node = node_pb2.Node()
    if status is not None:
        cond = node.status.conditions.add(type="Ready", status=status, reason=reason)
        cond.last_heartbeat_time.FromDatetime(T0)
    assert status_due(node, T0 + timedelta(seconds=age)) is due


def test_renewed_takes_over_a_lease_held_by_another() -> None:
    node = node_pb2.Node()
    node.metadata.name, node.metadata.uid = "n1", "u1"
    held = coordination_pb2.Lease()
    held.spec.holder_identity, held.spec.lease_transitions = "someone", 2
    lease = leases.renewed(held, node, T0, 40)
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("n1", 3)
    assert lease.spec.acquire_time.ToDatetime(tzinfo=UTC) == T0
    again = leases.renewed(lease, node, T0 + timedelta(seconds=5), 40)
    assert again.spec.lease_transitions == 3 and again.spec.acquire_time == lease.spec.acquire_time


@pytest.mark.parametrize("name", ["lease", "leases", "Lease", "leases.coordination.k8s.io"])
def test_lease_names(name: str) -> None:
    assert kinds.resolve(name) is LEASE
    assert LEASE.api_version == "coordination.k8s.io/v1" and LEASE.namespaced


@pytest.mark.parametrize(
    ("duration", "transitions", "causes"),
    [
        pytest.param(15, 0, [], id="valid"),
        pytest.param(None, None, [], id="unset"),
        pytest.param(0, None, ["spec.leaseDurationSeconds: must be greater than 0, got 0"], id="zero-duration"),
        pytest.param(None, -1, ["spec.leaseTransitions: must be >= 0, got -1"], id="negative-transitions"),
    ],
)
def test_lease_validation(duration: int | None, transitions: int | None, causes: list[str]) -> None:
    lease = coordination_pb2.Lease()
    lease.metadata.name, lease.metadata.namespace = "my-operator", "default"
    if duration is not None:
        lease.spec.lease_duration_seconds = duration
    if transitions is not None:
        lease.spec.lease_transitions = transitions
    assert [str(c) for c in validate(LEASE, lease)] == causes


def test_lease_printer() -> None:
    assert printers.table_headers(LEASE, wide=False, all_namespaces=False) == ["NAME", "HOLDER", "AGE"]


def test_a_leader_election_lease_from_a_manifest() -> None:
    from corral.manifest import load_documents, parse_object

    raw = b"""apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: my-operator-lock, namespace: default}
spec:
  holderIdentity: pod-abc_1234
  leaseDurationSeconds: 15
  renewTime: "2026-12-07T10:00:05.654321Z"
  leaseTransitions: 3
"""
    parsed = parse_object(load_documents("lock.yaml", raw)[0])
    assert parsed.info is LEASE and not parsed.warnings
    assert isinstance(parsed.message, coordination_pb2.Lease)
    assert parsed.message.spec.renew_time.nanos == 654321000
    assert validate(LEASE, parsed.message) == []


async def test_a_heartbeat_reads_the_node_from_the_serving_cache() -> None:
    api, service, clock = await plane()
    objects = ObjectStore(MemoryStore())
    cache = Informer(objects, NODE)
    cache.items["n1"] = await stored_node(api)
    service.nodes = cache
    read: list[str] = []
    find = api.find

    async def counting(info, namespace, name):  # type: ignore[no-untyped-def]
        read.append(info.kind)
        return await find(info, namespace, name)

    api.find = counting  # type: ignore[method-assign]
    clock.now = T0 + timedelta(seconds=4)
    await service._heartbeat("n1")
    await service._heartbeat("n1")
    assert "Node" not in read
    assert read == ["Lease"]  # read once, when this replica first renews it; then CAS over its own copy


async def test_a_deleted_nodes_last_lease_is_not_kept() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    nodes = Informer(objects, NODE)
    service = NodeService(
        api,
        AssignmentIndex(Informer(objects, by_kind("Pod"))),
        TunnelRegistry(),
        now=Clock(),
        nodes=nodes,
        lease_batch_window=0,
    )
    for name in ("n1", "n2"):
        node = node_pb2.Node()
        node.metadata.name = name
        set_ready(node, T0)
        nodes.items[name] = await api.create(node)
        await service._heartbeat(name)
    assert set(service._leases) == {"n1", "n2"}
    gone = nodes.items.pop("n1")
    for listener in nodes.listeners:
        listener(CacheEvent(Change.DELETED, gone, gone, 0))
    assert set(service._leases) == {"n2"}
