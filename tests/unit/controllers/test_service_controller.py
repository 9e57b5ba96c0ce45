"""The service controller: allocation repair (pure and over a memory store), the upgrade of
Services stored without a clusterIP, and a LoadBalancer Service's status."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.apiserver.allocator import Owner, ServiceAllocator
from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.service_ranges import ServiceRanges
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.services.controller import REPAIR, ServiceController
from controlplane.controllers.services.reconcile import Key, load_balancer_status, repair
from controlplane.informer import CacheEvent, Change, Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import node_pb2, service_pb2
from protos.kinds import by_kind

IPS, PORTS = "/c/allocations/clusterips/", "/c/allocations/nodeports/"


def svc(name: str, ip: str = "", *, uid: str = "", kind: str = "ClusterIP", node_port: int = 0) -> service_pb2.Service:
    s = service_pb2.Service(api_version="v1", kind="Service")
    s.metadata.name, s.metadata.namespace, s.metadata.uid = name, "default", uid or f"{name}-uid"
    s.spec.type = kind
    s.spec.cluster_ip = ip
    s.spec.ports.add(port=80, node_port=node_port)
    return s


def key(name: str, *, uid: str = "", at: float = 0.0, revision: int = 1) -> Key:
    return Key(Owner("default", name, uid or f"{name}-uid", at), revision)


@pytest.mark.parametrize(
    ("services", "keys", "free", "claim", "allocate"),
    [
        pytest.param([svc("a", "10.43.0.5")], {IPS + "10.43.0.5": key("a")}, [], [], [], id="in-order"),
        pytest.param([], {IPS + "10.43.0.5": key("a", at=0)}, [IPS + "10.43.0.5"], [], [], id="leaked"),
        pytest.param([], {IPS + "10.43.0.5": key("a", at=95)}, [], [], [], id="claim-in-flight"),
        pytest.param(
            [svc("a", "10.43.0.5", uid="new")], {IPS + "10.43.0.5": key("a", uid="old")}, [], [], [], id="clash"
        ),
        pytest.param(
            [svc("a", "10.43.0.6")],
            {IPS + "10.43.0.5": key("a")},
            [IPS + "10.43.0.5"],
            [IPS + "10.43.0.6"],
            [],
            id="not-its-ip",
        ),
        pytest.param([svc("a", "10.43.0.5")], {}, [], [IPS + "10.43.0.5"], [], id="missing-key"),
        pytest.param([svc("a")], {}, [], [], ["default/a"], id="upgrade"),
        pytest.param(
            [svc("a", "10.43.0.5", kind="NodePort", node_port=30080)],
            {IPS + "10.43.0.5": key("a")},
            [],
            [PORTS + "30080"],
            [],
            id="missing-node-port-key",
        ),
        pytest.param(
            [svc("a", "10.43.0.5", kind="NodePort")], {IPS + "10.43.0.5": key("a")}, [], [], ["default/a"], id="np"
        ),
        pytest.param([svc("a", "None")], {}, [], [], [], id="headless"),
    ],
)
def test_repair(
    services: list[service_pb2.Service], keys: dict[str, Key], free: list[str], claim: list[str], allocate: list[str]
) -> None:
    plan = repair(services, keys, ip_prefix=IPS, port_prefix=PORTS, now=100.0, grace=10.0)
    assert [k for k, _ in plan.free] == free
    assert [k for k, _ in plan.claim] == claim
    assert plan.allocate == allocate


def test_load_balancer_status_lists_the_nodes() -> None:
    lb = svc("a", kind="LoadBalancer")
    assert [i.ip for i in load_balancer_status(lb, ["10.0.0.2", "10.0.0.1", "10.0.0.2"]).ingress] == [
        "10.0.0.1",
        "10.0.0.2",
    ]
    assert list(load_balancer_status(svc("b"), ["10.0.0.1"]).ingress) == []


async def test_the_controller_upgrades_old_services_and_frees_leaks() -> None:
    clock = [datetime(2026, 12, 7, tzinfo=UTC)]
    store = MemoryStore()
    objects = ObjectStore(store, "/c")
    allocator = ServiceAllocator(store, "/c", ServiceRanges(), now=lambda: clock[0], rng=random.Random(3))
    api = ObjectApi(objects, allocator=allocator)
    old = svc("old", kind="NodePort")  # stored before corral allocated anything
    apply_defaults(by_kind("Service"), old)
    await objects.create(old)
    await store.create(IPS + "10.43.7.7", Owner("default", "gone", "x", clock[0].timestamp()).encode())
    controller = ServiceController(api, grace=30.0)
    await controller.sync("default/old")
    upgraded = await api.find(by_kind("Service"), "default", "old")
    assert isinstance(upgraded, service_pb2.Service)
    assert upgraded.spec.cluster_ip.startswith("10.43.") and upgraded.spec.ports[0].node_port >= 30000
    await controller.sync(REPAIR)
    assert await store.get(IPS + "10.43.7.7") is not None  # young: maybe a write on its way
    clock[0] += timedelta(seconds=31)
    await store.delete(PORTS + str(upgraded.spec.ports[0].node_port))  # lost somehow
    await controller.sync(REPAIR)
    assert await store.get(IPS + "10.43.7.7") is None
    assert await store.get(IPS + upgraded.spec.cluster_ip) is not None
    assert await store.get(PORTS + str(upgraded.spec.ports[0].node_port)) is not None


def node(name: str, address: str) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    n.status.addresses.add(type="InternalIP", address=address)
    return n


async def test_load_balancer_status_follows_the_nodes_and_heartbeats_cost_nothing() -> None:
    store = MemoryStore()
    api = ObjectApi(ObjectStore(store, "/c"), allocator=ServiceAllocator(store, "/c", rng=random.Random(1)))
    lb = svc("web", kind="LoadBalancer")
    lb.metadata.uid = ""
    created = await api.create(lb)
    controller = ServiceController(api)
    services, nodes = (
        Informer(ObjectStore(store, "/c"), by_kind("Service")),
        Informer(ObjectStore(store, "/c"), by_kind("Node")),
    )
    services.items["default/web"] = created
    nodes.items.update({"a": node("a", "10.0.0.1"), "b": node("b", "10.0.0.2")})
    controller.bind({"Service": services, "Node": nodes}, WorkQueue())
    heartbeat = CacheEvent(Change.MODIFIED, node("a", "10.0.0.1"), node("a", "10.0.0.1"), 5)
    assert list(controller.keys_for("Node", heartbeat)) == []
    moved = CacheEvent(Change.MODIFIED, node("a", "10.0.0.9"), node("a", "10.0.0.1"), 6)
    assert list(controller.keys_for("Node", moved)) == ["default/web"]
    await controller.sync("default/web")
    stored = await api.find(by_kind("Service"), "default", "web")
    assert isinstance(stored, service_pb2.Service)
    assert [i.ip for i in stored.status.load_balancer.ingress] == ["10.0.0.1", "10.0.0.2"]
