"""Resource metrics end to end, in one process: a real agent (session, pod manager,
metrics sampler) over the fake runtime reports to the NodeService on a real gRPC
port; the MetricsService answers from the same MetricsStore, joined with the
objects from the memory store.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from structlog.testing import capture_logs

from agent.network.proxy.server import ServiceStats
from agent.node.metrics import MetricsSampler
from agent.node.session import Session, SessionConfig
from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.runner import ControllerManager
from controlplane.metrics.service import MetricsService
from controlplane.metrics.store import MetricsStore
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.service import NodeService
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from controlplane.tunnels import TunnelRegistry
from corral.common.backoff import CrashLoopBackoff
from protos.corral.v1 import metrics_pb2, metrics_pb2_grpc, node_pb2, node_service_pb2_grpc, pod_pb2
from tests.pki import TestCluster, aio_channel, node_identity

pytestmark = pytest.mark.timeout(60)

NODE = "node-1"
WAIT = 20.0
T = TypeVar("T")


@dataclass
class Cluster:
    api: ObjectApi
    metrics: metrics_pb2_grpc.MetricsServiceAsyncStub
    store: MetricsStore | None

    async def until(self, probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str) -> T:
        try:
            async with asyncio.timeout(WAIT):
                while not ok(value := await probe()):
                    await asyncio.sleep(0.05)
                return value
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


def node_status() -> node_pb2.NodeStatus:
    status = node_pb2.NodeStatus(runtimes=["docker"])
    status.capacity.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
    status.allocatable.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
    return status


def bound_pod(name: str, image: str, *, labels: dict[str, str]) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels.update(labels)
    p.spec.node_name = NODE
    container = p.spec.containers.add(name="main", image=image)
    container.resources.requests.update({"cpu": "500m", "memory": "64Mi"})
    p.spec.containers.add(name="side", image="idle:1").resources.limits.update({"cpu": "100m"})
    return p


@contextlib.asynccontextmanager
async def running_cluster(tmp_path: Path, *, keep_metrics: bool = True) -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    serving = ControllerManager(objects, [])
    pods = serving.informer("Pod")
    store = MetricsStore() if keep_metrics else None
    server = grpc.aio.server()
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(
        NodeService(api, AssignmentIndex(pods), TunnelRegistry(), metrics=store), server
    )
    if store is not None:
        metrics_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(store, api, pods), server)
    pki = TestCluster()
    port = pki.add_port(server, "127.0.0.1:0")
    await server.start()
    runtime = FakeRuntime(
        {"busy:1": FakeBehaviour(cpu_millis=250, memory_bytes=32 << 20), "idle:1": FakeBehaviour(memory_bytes=4 << 20)}
    )
    settings = WorkerSettings(
        node_name=NODE, host_ip="127.0.0.1", poll_interval=0.05, backoff=CrashLoopBackoff(initial=0.1, cap=0.4)
    )
    manager = PodManager({"docker": runtime}, settings, tmp_path)
    connections = itertools.count(0, 3)  # three more connections to "web" at every report
    sampler = MetricsSampler(
        NODE,
        {"docker": runtime},
        lambda: [w.pod for w in manager.workers.values()],
        traffic=lambda: {"default/web": ServiceStats(backends={"web": next(connections)})},
    )
    session = Session(
        SessionConfig(server=f"127.0.0.1:{port}", node_name=NODE, labels={}, metrics_period=1.0),
        manager,
        node_status(),
        metrics=sampler,
        identity=node_identity(pki.node(NODE), tmp_path),
    )
    channel = aio_channel(f"127.0.0.1:{port}", pki.admin())
    tasks = [asyncio.create_task(serving.run()), asyncio.create_task(manager.run()), asyncio.create_task(session.run())]
    try:
        yield Cluster(api, metrics_pb2_grpc.MetricsServiceStub(channel), store)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await channel.close()
        await server.stop(None)


async def test_pod_and_node_metrics_from_a_reporting_agent(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        await cluster.api.create(bound_pod("web", "busy:1", labels={"app": "web"}))
        await cluster.api.create(bound_pod("db", "busy:1", labels={"app": "db"}))

        async def web_metrics() -> list[metrics_pb2.PodMetrics]:
            response = await cluster.metrics.PodMetrics(metrics_pb2.PodMetricsRequest(selector="app=web"))
            return list(response.items)

        items = await cluster.until(web_metrics, lambda items: len(items) == 1, "metrics of the web pod")
        nodes = await cluster.until(
            lambda: cluster.metrics.NodeMetrics(metrics_pb2.NodeMetricsRequest()),
            lambda r: len(r.items) == 1 and r.items[0].HasField("usage"),
            "the node's usage",
        )
        everywhere = await cluster.metrics.PodMetrics(metrics_pb2.PodMetricsRequest(all_namespaces=True))
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await cluster.metrics.PodMetrics(metrics_pb2.PodMetricsRequest(name="nope"))
        store = cluster.store
        assert store is not None

        async def web_rate() -> float | None:
            return store.pod_requests_per_second("default", "web", now=time.monotonic())

        rate = await cluster.until(web_rate, lambda r: r is not None and r > 0, "a connection rate")

    web = items[0]
    assert (web.namespace, web.name) == ("default", "web")
    # The sampler stamps a sample just after the runtime read its counter: a rate of 250
    # millicores can come out at 249 or 251 (as with Docker's stats).
    assert [(c.name, c.memory_bytes) for c in web.usage.containers] == [("main", 32 << 20), ("side", 4 << 20)]
    assert [c.cpu_millis for c in web.usage.containers][1] == 0
    assert abs(web.usage.containers[0].cpu_millis - 250) <= 3, web.usage.containers[0].cpu_millis
    assert (web.request_cpu_millis, web.request_memory_bytes) == (600, 64 << 20), "requests, or limits without"
    assert web.usage.window_seconds >= 1.0
    assert [(i.name, i.allocatable_cpu_millis, i.allocatable_memory_bytes) for i in nodes.items] == [
        (NODE, 4000, 8 << 30)
    ]
    assert nodes.items[0].usage.memory_bytes > 0
    assert sorted(i.name for i in everywhere.items) == ["db", "web"]
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert rate is not None and 0 < rate <= 3.01, "three more connections per report, at most one report a second"


async def test_a_control_plane_without_metrics_is_left_alone(tmp_path: Path) -> None:
    with capture_logs() as logs:
        async with running_cluster(tmp_path, keep_metrics=False) as cluster:

            async def seen_events() -> list[str]:
                return [e["event"] for e in logs]

            await cluster.until(
                seen_events, lambda seen: "metrics_unsupported" in seen, "the agent to give up on metrics"
            )
            await cluster.api.create(bound_pod("web", "busy:1", labels={"app": "web"}))
            await cluster.until(
                lambda: cluster.api.get("Pod", "default", "web"),
                lambda p: isinstance(p, pod_pb2.Pod) and p.status.phase == "Running",
                "the pod running: the session goes on",
            )

    events = [e["event"] for e in logs]
    assert events.count("metrics_unsupported") == 1
    assert "session_lost" not in events
