"""RouteHub over informers on the memory store: snapshot then deltas,
coalesced bursts, and a slow subscriber that holds up nobody."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.informer import Informer
from controlplane.registry.hub import RouteHub
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import discovery_pb2, node_service_pb2, service_pb2
from protos.kinds import by_kind
from protos.wellknown import SERVICE_NAME

WAIT = 5.0


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


def service(name: str, port: int) -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name = name
    s.spec.selector["app"] = name
    s.spec.ports.add(port=port)
    return s


def endpoint_slice(service_name: str, host_ports: list[int], *, ready: bool = True) -> discovery_pb2.EndpointSlice:
    s = discovery_pb2.EndpointSlice()
    s.metadata.name = f"{service_name}-0"
    s.metadata.labels[SERVICE_NAME] = service_name
    s.ports.add(name="", port=8080)
    for n, host_port in enumerate(host_ports):
        e = s.endpoints.add(addresses=["10.0.0.1"], host_ports={"": host_port})
        e.conditions.ready = ready
        e.target_ref.kind, e.target_ref.name = "Pod", f"{service_name}-pod-{n}"
    return s


@dataclass
class Hub:
    api: ObjectApi
    hub: RouteHub
    slices: Informer

    async def put_slice(self, endpoint_slice: discovery_pb2.EndpointSlice) -> None:
        """Create the slice, or replace the stored one's endpoints; return once the hub's cache has it."""
        stored = await self.api.find(by_kind("EndpointSlice"), "default", endpoint_slice.metadata.name)
        if stored is None:
            written = await self.api.create(endpoint_slice)
        else:
            assert isinstance(stored, discovery_pb2.EndpointSlice)
            stored.ClearField("endpoints")
            stored.endpoints.extend(endpoint_slice.endpoints)
            written = await self.api.write(stored)
        revision = int(written.metadata.resource_version)
        await wait_for(lambda: self.slices.revision >= revision, "the slice reached the cache")

    def ports_of(self, name: str) -> list[int]:
        route = self.hub.route("default", name)
        return [] if route is None else [b.port for b in route.ports[0].backends]


@pytest.fixture
async def running() -> AsyncIterator[Hub]:
    objects = ObjectStore(MemoryStore())
    services = Informer(objects, by_kind("Service"))
    slices = Informer(objects, by_kind("EndpointSlice"))
    hub = RouteHub(services, slices, coalesce=0.05)
    api = ObjectApi(objects)
    await api.create(service("web", 80))
    await api.create(endpoint_slice("web", [31000]))
    tasks = [asyncio.create_task(services.run()), asyncio.create_task(slices.run()), asyncio.create_task(hub.run())]
    try:
        yield Hub(api, hub, slices)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def summary(message: node_service_pb2.ServiceRoutes) -> tuple[bool, dict[str, list[int]], list[str]]:
    upserts = {f"{r.namespace}/{r.name}": [b.port for b in r.ports[0].backends] for r in message.upserts}
    return message.full, upserts, list(message.removed)


async def test_snapshot_then_deltas(running: Hub) -> None:
    stream = running.hub.watch()
    async with asyncio.timeout(WAIT):
        assert summary(await anext(stream)) == (True, {"default/web": [31000]}, [])
        await running.put_slice(endpoint_slice("web", [31000, 31001]))
        assert summary(await anext(stream)) == (False, {"default/web": [31000, 31001]}, [])
        await running.api.create(service("api", 81))
        assert summary(await anext(stream)) == (False, {"default/api": []}, [])
        await running.api.delete("Service", "default", "web")
        assert summary(await anext(stream)) == (False, {}, ["default/web"])
    await stream.aclose()
    assert running.hub.subscriber_count() == 0


async def test_an_unready_endpoint_leaves_the_route(running: Hub) -> None:
    await wait_for(lambda: running.ports_of("web") == [31000], "first route")
    await running.put_slice(endpoint_slice("web", [31000], ready=False))
    await wait_for(lambda: running.ports_of("web") == [], "unready endpoint dropped")


async def test_a_burst_is_coalesced(running: Hub) -> None:
    running.hub.coalesce = 1.0
    subscription = running.hub.subscribe()
    async with asyncio.timeout(WAIT):
        assert (await subscription.next()).full
        messages: list[node_service_pb2.ServiceRoutes] = []

        async def read() -> None:
            while not messages or sorted(b.port for b in messages[-1].upserts[0].ports[0].backends) != list(
                range(31000, 31020)
            ):
                messages.append(await subscription.next())

        reader = asyncio.create_task(read())
        for n in range(1, 21):
            await running.put_slice(endpoint_slice("web", list(range(31000, 31000 + n))))
        await reader
    # 20 writes, read by an eager reader, arrive as one or two messages (a window may split them).
    assert 1 <= len(messages) <= 2


async def test_a_slow_subscriber_holds_up_nobody_and_gets_the_latest(running: Hub) -> None:
    for n in range(5):
        await running.api.create(service(f"s{n}", 100 + n))
    await wait_for(lambda: len(running.hub.routes()) == 6, "six routes")
    slow = running.hub.subscribe()
    fast = running.hub.watch()
    async with asyncio.timeout(WAIT):
        assert (await slow.next()).full
        assert (await anext(fast)).full
        for round_ in range(10):
            for n in range(5):
                await running.put_slice(endpoint_slice(f"s{n}", [32000 + round_]))
            seen: dict[str, list[int]] = {}
            while any(seen.get(f"default/s{n}") != [32000 + round_] for n in range(5)):
                seen.update(summary(await anext(fast))[1])
        # The slow one has not read for ten rounds: it owes one entry per Service, not fifty messages.
        assert slow.pending == 5
        full, upserts, removed = summary(await slow.next())
    assert not full and not removed
    assert upserts == {f"default/s{n}": [32009] for n in range(5)}
    await fast.aclose()
    running.hub.unsubscribe(slow)
    assert running.hub.subscriber_count() == 0


async def test_the_ingress_table_rides_the_stream(running: Hub) -> None:
    from protos.corral.v1 import ingress_pb2

    before = running.hub.watch()
    async with asyncio.timeout(WAIT):
        first = await anext(before)
        assert first.full and not first.HasField("ingress")  # not known yet: the node keeps its own
        table = ingress_pb2.IngressRoutes()
        table.hosts.add(host="a.test")
        running.hub.set_ingress(table)
        message = await anext(before)
        assert (message.full, list(message.upserts), message.ingress) == (False, [], table)
        running.hub.set_ingress(table)  # unchanged: nothing sent
        await running.api.create(service("api", 81))
        message = await anext(before)
        assert not message.HasField("ingress") and [r.name for r in message.upserts] == ["api"]
        after = running.hub.watch()
        snapshot = await anext(after)
        assert snapshot.full and snapshot.ingress == table
    await before.aclose()
    await after.aclose()


async def test_the_pod_network_table_rides_the_stream(running: Hub) -> None:
    from controlplane.registry.pod_network import pod_network
    from protos.corral.v1 import meta_pb2, node_pb2

    nodes = []
    for name, subnet, address in (("b", "10.42.1.0/24", "192.168.1.11"), ("a", "10.42.0.0/24", "192.168.1.10")):
        n = node_pb2.Node(metadata=meta_pb2.ObjectMeta(name=name), spec=node_pb2.NodeSpec(pod_cidr=subnet))
        n.status.addresses.add(type="Hostname", address=name)
        n.status.addresses.add(type="InternalIP", address=address)
        nodes.append(n)
    # No subnet (the range was exhausted): not routed.
    nodes.append(node_pb2.Node(metadata=meta_pb2.ObjectMeta(name="c")))
    table = pod_network("10.42.0.0/16", nodes)
    assert [(e.node, e.pod_cidr, e.address) for e in table.nodes] == [
        ("a", "10.42.0.0/24", "192.168.1.10"),
        ("b", "10.42.1.0/24", "192.168.1.11"),
    ]
    before = running.hub.watch()
    async with asyncio.timeout(WAIT):
        first = await anext(before)
        assert first.full and not first.HasField("pod_network")
        running.hub.set_pod_network(table)
        message = await anext(before)
        assert (message.full, message.pod_network) == (False, table)
        running.hub.set_pod_network(pod_network("10.42.0.0/16", nodes))  # equal: nothing sent
        await running.api.create(service("api2", 82))
        message = await anext(before)
        assert not message.HasField("pod_network") and [r.name for r in message.upserts] == ["api2"]
        after = running.hub.watch()
        assert (await anext(after)).pod_network == table
    await before.aclose()
    await after.aclose()
