"""Services end to end, in process: pods → endpoints controller → EndpointSlices
→ route hub → WatchServices stream and DiscoveryService, over real gRPC.

The memory-store test wires the pieces as `controlplane.server.start` does;
the etcd test runs `start` itself and drives the pod through the agent's
own path (Register, ReportStatus).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from structlog.testing import capture_logs

from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.service import ObjectService
from controlplane.controllers.endpoints.controller import EndpointsController
from controlplane.controllers.runner import ControllerManager
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.service import NodeService
from controlplane.registry.hub import RouteHub
from controlplane.registry.service import DiscoveryService
from controlplane.server import ServerConfig, start
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from controlplane.tunnels import TunnelRegistry
from corral.cli.config import write_config
from corral.cli.main import cli
from protos.corral.v1 import (
    api_pb2,
    api_pb2_grpc,
    discovery_pb2,
    discovery_pb2_grpc,
    node_pb2,
    node_service_pb2,
    node_service_pb2_grpc,
    pod_pb2,
    service_pb2,
    workloads_pb2,
)
from protos.kinds import by_kind
from tests.pki import TestCluster, admin_of, aio_channel, node_of

WAIT = 10.0
SLICE, POD = by_kind("EndpointSlice"), by_kind("Pod")


async def wait_for(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not await check():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for: {what}")


def service(name: str = "web", port: int = 80) -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name = name
    s.spec.selector["app"] = name
    p = s.spec.ports.add(port=port)
    p.target_port.int_val = 8080
    return s


def pod(name: str, node: str = "n1") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["app"] = "web"
    p.spec.node_name = node
    p.spec.containers.add(name="main", image="httpd:2").ports.add(container_port=8080)
    return p


def pod_status(*, ready: bool, host_port: int, host_ip: str = "10.0.0.1") -> pod_pb2.PodStatus:
    status = pod_pb2.PodStatus(phase="Running", host_ip=host_ip)
    status.conditions.add(type="Ready", status="True" if ready else "False")
    container = status.container_statuses.add(name="main", ready=ready)
    container.ports.add(container_port=8080, host_port=host_port, protocol="TCP")
    return status


def backends(route: discovery_pb2.ServiceRoute) -> list[tuple[str, int, str]]:
    return [(b.address, b.port, b.pod) for p in route.ports for b in p.backends]


class RouteReader:
    """Reads a WatchServices stream and keeps the routes it describes, as a node proxy would."""

    def __init__(self, stream: AsyncIterable[node_service_pb2.ServiceRoutes]) -> None:
        self.stream = aiter(stream)
        self.routes: dict[str, discovery_pb2.ServiceRoute] = {}
        self.messages: list[node_service_pb2.ServiceRoutes] = []

    async def until(self, check: Callable[[dict[str, discovery_pb2.ServiceRoute]], bool], what: str) -> None:
        try:
            async with asyncio.timeout(WAIT):
                while not (self.messages and check(self.routes)):
                    message = await anext(self.stream)
                    self.messages.append(message)
                    if message.full:
                        self.routes.clear()
                    for route in message.upserts:
                        self.routes[f"{route.namespace}/{route.name}"] = route
                    for key in message.removed:
                        self.routes.pop(key, None)
        except TimeoutError:
            pytest.fail(f"timed out waiting on the route stream for: {what}; have {self.routes}")

    def backends(self, key: str = "default/web") -> list[tuple[str, int, str]]:
        route = self.routes.get(key)
        return [] if route is None else backends(route)


@dataclass
class Plane:
    api: ObjectApi
    objects: ObjectStore
    address: str
    # The admin's channel.
    channel: grpc.aio.Channel
    pki: TestCluster
    stack: contextlib.AsyncExitStack

    async def node(self, name: str) -> node_service_pb2_grpc.NodeServiceAsyncStub:
        """The NodeService as node ``name`` calls it (with its certificate)."""
        channel = await self.stack.enter_async_context(aio_channel(self.address, self.pki.node(name)))
        return node_service_pb2_grpc.NodeServiceStub(channel)

    async def set_status(self, name: str, status: pod_pb2.PodStatus) -> None:
        stored = await self.objects.get(POD, "default", name)
        assert isinstance(stored, pod_pb2.Pod)
        stored.status.CopyFrom(status)
        await self.objects.update(stored)

    async def slice_endpoints(self) -> list[tuple[str, bool]]:
        slices, _ = await self.objects.list_all(SLICE, "default")
        return sorted((e.target_ref.name, e.conditions.ready) for s in slices for e in s.endpoints)


@pytest.fixture
async def plane() -> AsyncIterator[Plane]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    manager = ControllerManager(objects, [EndpointsController(api)])
    hub = RouteHub(manager.informer("Service"), manager.informer("EndpointSlice"))
    assignments = AssignmentIndex(manager.informer("Pod"))
    server = grpc.aio.server()
    tunnels = TunnelRegistry()
    api_pb2_grpc.add_ObjectServiceServicer_to_server(ObjectService(api, tunnels), server)
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(NodeService(api, assignments, tunnels, routes=hub), server)
    discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server(DiscoveryService(hub), server)
    pki = TestCluster()
    port = pki.add_port(server, "127.0.0.1:0")
    await server.start()
    tasks = [asyncio.create_task(manager.run()), asyncio.create_task(hub.run())]
    try:
        async with AsyncExitStack() as stack:
            channel = await stack.enter_async_context(aio_channel(f"127.0.0.1:{port}", pki.admin()))
            yield Plane(api, objects, f"127.0.0.1:{port}", channel, pki, stack)
    finally:
        await server.stop(0)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in manager.queues.values():
            queue.close()


async def ready_node(api: ObjectApi, name: str) -> None:
    node = node_pb2.Node()
    node.metadata.name = name
    node.status.conditions.add(type="Ready", status="True")
    await api.create(node)


async def test_readiness_flips_reach_the_slice_and_the_route_stream(plane: Plane) -> None:
    await ready_node(plane.api, "n1")
    await plane.api.create(service())
    await plane.api.create(pod("web-1"))
    await plane.set_status("web-1", pod_status(ready=False, host_port=31001))
    nodes = await plane.node("n1")
    reader = RouteReader(nodes.WatchServices(node_service_pb2.ServicesRequest(node_name="n1")))
    await reader.until(lambda routes: "default/web" in routes, "the web route in the snapshot")
    assert reader.messages[0].full
    assert reader.backends() == []

    async def slice_is(expected: list[tuple[str, bool]]) -> bool:
        return await plane.slice_endpoints() == expected

    await wait_for(lambda: slice_is([("web-1", False)]), "an unready endpoint in the slice")
    await plane.set_status("web-1", pod_status(ready=True, host_port=31001))
    await wait_for(lambda: slice_is([("web-1", True)]), "the endpoint turned ready")
    await reader.until(lambda _: reader.backends() == [("10.0.0.1", 31001, "web-1")], "the backend in the route")
    assert not reader.messages[-1].full

    await plane.set_status("web-1", pod_status(ready=False, host_port=31001))
    await reader.until(lambda _: reader.backends() == [], "the backend gone from the route")
    await wait_for(lambda: slice_is([("web-1", False)]), "the endpoint unready again")

    await plane.api.delete("Service", "default", "web")
    await reader.until(lambda routes: "default/web" not in routes, "the route removed")
    await wait_for(lambda: slice_is([]), "the slices of the deleted Service deleted")


async def test_node_readiness_and_traffic_weights_follow(plane: Plane) -> None:
    await ready_node(plane.api, "n1")
    await plane.api.create(service())
    canary = pod("web-1")
    canary.metadata.labels["pod-template-hash"] = "h2"
    await plane.api.create(canary)
    await plane.set_status("web-1", pod_status(ready=True, host_port=31001))
    nodes = await plane.node("n2")
    reader = RouteReader(nodes.WatchServices(node_service_pb2.ServicesRequest(node_name="n2")))
    await reader.until(lambda _: reader.backends() == [("10.0.0.1", 31001, "web-1")], "the ready backend")

    async def node_ready(ready: bool) -> None:
        node = await plane.objects.get(by_kind("Node"), "", "n1")
        assert isinstance(node, node_pb2.Node)
        node.status.conditions[0].status = "True" if ready else "False"
        await plane.objects.update(node)

    await node_ready(False)
    await reader.until(lambda _: reader.backends() == [], "no backend on a NotReady node")
    await node_ready(True)
    await reader.until(lambda _: reader.backends() == [("10.0.0.1", 31001, "web-1")], "the node back")

    d = workloads_pb2.Deployment()
    d.metadata.name = "web"
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="main", image="httpd:2")
    created = await plane.api.create(d)
    assert isinstance(created, workloads_pb2.Deployment)
    created.status.traffic.add(pod_template_hash="h1", weight=90)
    created.status.traffic.add(pod_template_hash="h2", weight=10)
    await plane.objects.update(created)
    await reader.until(lambda routes: dict(routes["default/web"].weights) == {"h1": 90, "h2": 10}, "the weights")
    assert reader.routes["default/web"].ports[0].backends[0].group == "h2"


async def test_discovery_and_get_endpoints(plane: Plane, tmp_path: Path) -> None:
    await ready_node(plane.api, "n1")
    await plane.api.create(service())
    for n in range(5):
        await plane.api.create(pod(f"web-{n}"))
        await plane.set_status(f"web-{n}", pod_status(ready=True, host_port=31000 + n, host_ip=f"10.0.0.{n + 1}"))
    discovery = discovery_pb2_grpc.DiscoveryServiceStub(plane.channel)

    async def listed() -> bool:
        try:
            response = await discovery.ListEndpoints(discovery_pb2.ListEndpointsRequest(name="web"))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return False  # the registry has not seen the Service yet
            raise
        return len(backends(response.services[0])) == 5

    await wait_for(listed, "five ready endpoints listed")
    everywhere = await discovery.ListEndpoints(discovery_pb2.ListEndpointsRequest(all_namespaces=True))
    assert [r.name for r in everywhere.services] == ["web"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await discovery.ListEndpoints(discovery_pb2.ListEndpointsRequest(name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == 'endpoints "nope" not found: no Service "nope" in namespace "default"'

    config = write_config(plane.address, plane.pki.admin(), tmp_path / "config.yaml")
    runner = CliRunner(env={"CORRAL_CONFIG": str(config)})

    def corral(*args: str) -> tuple[int, str]:
        # The server logs from this process too: keep its log lines out of the CLI's output.
        with capture_logs():
            result = runner.invoke(cli, ["--server", plane.address, *args])
        return result.exit_code, result.output

    code, out = await asyncio.to_thread(corral, "get", "endpoints")
    assert code == 0, out
    header, row = out.splitlines()
    assert header.split() == ["NAME", "ENDPOINTS"]
    assert row.split(None, 1) == ["web", "10.0.0.1:31000,10.0.0.2:31001,10.0.0.3:31002 + 2 more..."]
    code, out = await asyncio.to_thread(corral, "get", "ep", "web", "-o", "wide", "-A")
    assert code == 0, out
    assert out.splitlines()[0].split() == ["NAMESPACE", "NAME", "ENDPOINTS", "PODS", "NODES"]
    assert out.splitlines()[1].split()[-1] == "n1" and "web-0,web-1,web-2 + 2 more..." in out
    code, out = await asyncio.to_thread(corral, "get", "endpoints/web", "-o", "yaml")
    assert code == 0, out
    assert "name: web" in out and "address: 10.0.0.5" in out and "port: 31004" in out
    code, out = await asyncio.to_thread(corral, "get", "endpointslices")
    assert code == 0, out
    assert out.splitlines()[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert out.splitlines()[1].split()[:4] == ["web-0", "IPv4", "8080", "10.0.0.1,10.0.0.2,10.0.0.3"]
    code, out = await asyncio.to_thread(corral, "get", "ep", "nope")
    assert code == 1
    assert 'Error from server (NotFound): endpoints "nope" not found' in out


# -- the real server, over etcd ------------------------------------------------------------


@pytest.mark.etcd
async def test_server_serves_routes_from_agent_reports(etcd_endpoint: str) -> None:
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/svc/{uuid.uuid4().hex}")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        channel = await stack.enter_async_context(aio_channel(running.address, admin_of(running)))
        node_channel = await stack.enter_async_context(aio_channel(running.address, node_of(running, "n1")))
        nodes = node_service_pb2_grpc.NodeServiceStub(node_channel)
        await nodes.Register(node_service_pb2.RegisterRequest(node_name="n1", status=node_pb2.NodeStatus()))
        api = api_pb2_grpc.ObjectServiceStub(channel)
        await api.Create(api_pb2.CreateRequest(object=api_pb2.Object(service=service())))
        created = (await api.Create(api_pb2.CreateRequest(object=api_pb2.Object(pod=pod("web-1"))))).object.pod
        reader = RouteReader(nodes.WatchServices(node_service_pb2.ServicesRequest(node_name="n1")))
        await reader.until(lambda routes: "default/web" in routes, "the snapshot")
        report = node_service_pb2.PodStatusReport(
            namespace="default", name="web-1", uid=created.metadata.uid, status=pod_status(ready=True, host_port=31005)
        )
        await nodes.ReportStatus(node_service_pb2.ReportStatusRequest(node_name="n1", pods=[report]))
        await reader.until(lambda _: reader.backends() == [("10.0.0.1", 31005, "web-1")], "the reported pod")
        discovery = discovery_pb2_grpc.DiscoveryServiceStub(channel)
        listed = await discovery.ListEndpoints(discovery_pb2.ListEndpointsRequest(namespace="default"))
        assert [backends(r) for r in listed.services] == [[("10.0.0.1", 31005, "web-1")]]
