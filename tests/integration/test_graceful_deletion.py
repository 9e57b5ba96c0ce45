"""Graceful pod deletion end to end, in one process: the control plane over
the memory store (ObjectApi, the scheduler, ReplicaSet, node lifecycle and
garbage collector controllers, the NodeService on a real gRPC port) and a
real agent (session, pod manager, workers) over the fake runtime.

delete → the pod is Terminating (a deletionTimestamp) and stays in its node's
assignment set → the agent turns it not ready, drains, stops its containers →
reports it terminated → the control plane deletes the object.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from structlog.testing import capture_logs

from agent.node.session import Session, SessionConfig
from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from agent.runtime import base
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.nodelifecycle.controller import NodeLifecycleController
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.runner import ControllerManager
from controlplane.controllers.scheduling import SchedulerController
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.service import NodeService
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from controlplane.tunnels import TunnelRegistry
from corral.common.backoff import CrashLoopBackoff
from protos.corral.v1 import node_pb2, node_service_pb2_grpc, pod_pb2, workloads_pb2
from protos.kinds import by_kind
from tests.pki import TestCluster, node_identity

pytestmark = pytest.mark.timeout(60)

NODE = "node-1"
POD, RS = by_kind("Pod"), by_kind("ReplicaSet")
DRAIN = 1.0
WAIT = 15.0


@dataclass(frozen=True)
class Stop:
    """One container stop as the runtime saw it, with the pod object at that moment."""

    pod_uid: str
    grace: float
    at: float
    stored: pod_pb2.Pod | None


class WatchedRuntime(FakeRuntime):
    """The fake runtime, recording every stop with the stored pod at that moment."""

    def __init__(self, objects: ObjectStore) -> None:
        super().__init__({"web:1": FakeBehaviour(term_exit_code=0, serve_ports=False)})
        self.objects = objects
        self.stops: list[Stop] = []

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        info = await self.inspect(container_id)
        labels = info.labels if info is not None else {}
        stored = await self.objects.get(POD, labels.get(base.LABEL_NAMESPACE, ""), labels.get(base.LABEL_POD_NAME, ""))
        assert stored is None or isinstance(stored, pod_pb2.Pod)
        self.stops.append(
            Stop(labels.get(base.LABEL_POD_UID, ""), grace_seconds, asyncio.get_running_loop().time(), stored)
        )
        await super().stop(container_id, grace_seconds=grace_seconds)


@dataclass
class Cluster:
    api: ObjectApi
    objects: ObjectStore
    runtime: WatchedRuntime
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def pod(self, name: str) -> pod_pb2.Pod | None:
        found = await self.objects.get(POD, "default", name)
        assert found is None or isinstance(found, pod_pb2.Pod)
        return found

    async def pods(self) -> list[pod_pb2.Pod]:
        items, _ = await self.objects.list_all(POD, "default")
        return [p for p in items if isinstance(p, pod_pb2.Pod)]

    async def wait_for(self, check: Callable[[], Awaitable[object]], what: str) -> object:
        try:
            async with asyncio.timeout(WAIT):
                while not (result := await check()):
                    await asyncio.sleep(0.02)
                return result
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


def is_ready(pod: pod_pb2.Pod | None) -> bool:
    return pod is not None and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)


def web_pod(name: str, grace: int = 10) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["app"] = "web"
    p.spec.termination_grace_period_seconds = grace
    p.spec.containers.add(name="web", image="web:1")
    return p


def node_status() -> node_pb2.NodeStatus:
    status = node_pb2.NodeStatus(runtimes=["docker"])
    status.capacity.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
    status.allocatable.update({"cpu": "4", "memory": "8Gi", "pods": "110"})
    return status


@contextlib.asynccontextmanager
async def running_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    controllers = ControllerManager(
        objects,
        [
            SchedulerController(api, EventRecorder(api, "scheduler")),
            NodeLifecycleController(api, EventRecorder(api, "node-lifecycle-controller")),
            ReplicaSetController(api, EventRecorder(api, "replicaset-controller")),
            GarbageCollector(api),
        ],
    )
    tunnels = TunnelRegistry()
    server = grpc.aio.server()
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(
        NodeService(api, AssignmentIndex(controllers.informer("Pod")), tunnels), server
    )
    pki = TestCluster()
    port = pki.add_port(server, "127.0.0.1:0")
    await server.start()
    runtime = WatchedRuntime(objects)
    settings = WorkerSettings(
        node_name=NODE,
        host_ip="127.0.0.1",
        poll_interval=0.05,
        backoff=CrashLoopBackoff(initial=0.1, cap=0.4),
        termination_drain=DRAIN,
    )
    manager = PodManager({"docker": runtime}, settings, tmp_path)
    session = Session(
        SessionConfig(server=f"127.0.0.1:{port}", node_name=NODE, labels={}),
        manager,
        node_status(),
        identity=node_identity(pki.node(NODE), tmp_path),
    )
    cluster = Cluster(api, objects, runtime)
    cluster.tasks = [
        asyncio.create_task(controllers.run(), name="controllers"),
        asyncio.create_task(manager.run(), name="pods"),
        asyncio.create_task(session.run(), name="session"),
    ]
    try:
        await cluster.wait_for(lambda: objects.get(by_kind("Node"), "", NODE), "the node registered")
        yield cluster
    finally:
        for task in cluster.tasks:
            task.cancel()
        for task in cluster.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in controllers.queues.values():
            queue.close()
        await server.stop(None)


async def test_delete_shows_terminating_until_the_agent_has_stopped_the_pod(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        await cluster.api.create(web_pod("web"))
        await cluster.wait_for(lambda: _ready(cluster, "web"), "web running and ready")
        with capture_logs() as logs:
            marked = await cluster.api.delete("Pod", "default", "web")
            deleted_at = asyncio.get_running_loop().time()
            assert isinstance(marked, pod_pb2.Pod)
            assert marked.metadata.HasField("deletion_timestamp")
            assert marked.metadata.deletion_grace_period_seconds == 10
            await cluster.wait_for(lambda: _gone(cluster, "web"), "the pod object deleted")
        assert len(cluster.runtime.stops) == 1
        stop = cluster.runtime.stops[0]
        assert stop.pod_uid == marked.metadata.uid
        assert stop.at - deleted_at >= DRAIN, "SIGTERM came after the endpoint drain"
        assert 10 - DRAIN - 5 < stop.grace <= 10 - DRAIN, "SIGKILL is due at the deletion deadline"
        assert stop.stored is not None, "the object outlived its containers"
        assert stop.stored.metadata.deletion_timestamp == marked.metadata.deletion_timestamp
        assert not is_ready(stop.stored), "not ready (out of the endpoints) before SIGTERM"
        events = [e["event"] for e in logs]
        assert events.index("pod_terminating") < events.index("pod_deleted_after_termination")
        await cluster.wait_for(lambda: _no_containers(cluster, marked.metadata.uid), "containers removed")


async def test_replica_set_scale_down_goes_through_termination(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        rs = workloads_pb2.ReplicaSet()
        rs.metadata.name = "web"
        rs.spec.replicas = 2
        rs.spec.selector.match_labels["app"] = "web"
        rs.spec.template.metadata.labels["app"] = "web"
        rs.spec.template.spec.containers.add(name="web", image="web:1")
        rs.spec.template.spec.termination_grace_period_seconds = 10
        await cluster.api.create(rs)

        async def all_ready(count: int) -> bool:
            pods = await cluster.pods()
            return len(pods) == count and all(is_ready(p) for p in pods)

        await cluster.wait_for(lambda: all_ready(2), "two ready replicas")
        stored = await cluster.objects.get(RS, "default", "web")
        assert isinstance(stored, workloads_pb2.ReplicaSet)
        stored.spec.replicas = 1
        await cluster.api.update(stored)

        async def one_terminating() -> list[pod_pb2.Pod]:
            return [p for p in await cluster.pods() if p.metadata.HasField("deletion_timestamp")]

        victim = (await cluster.wait_for(one_terminating, "a replica marked terminating"))[0]  # type: ignore[index]
        await cluster.wait_for(lambda: all_ready(1), "one replica left")
        stops = [s for s in cluster.runtime.stops if s.pod_uid == victim.metadata.uid]
        assert len(stops) == 1 and stops[0].stored is not None
        assert stops[0].stored.metadata.HasField("deletion_timestamp")
        assert {p.metadata.uid for p in await cluster.pods()}.isdisjoint({victim.metadata.uid})


async def test_force_delete_removes_the_object_at_once_and_the_node_stops_the_pod(tmp_path: Path) -> None:
    async with running_cluster(tmp_path) as cluster:
        await cluster.api.create(web_pod("web"))
        await cluster.wait_for(lambda: _ready(cluster, "web"), "web running and ready")
        gone = await cluster.api.delete("Pod", "default", "web", grace_period_seconds=0)
        assert not gone.metadata.HasField("deletion_timestamp")
        assert await cluster.pod("web") is None
        await cluster.wait_for(lambda: _no_containers(cluster, gone.metadata.uid), "containers stopped and removed")
        assert [s.stored for s in cluster.runtime.stops] == [None]


async def _ready(cluster: Cluster, name: str) -> bool:
    return is_ready(await cluster.pod(name))


async def _gone(cluster: Cluster, name: str) -> bool:
    return await cluster.pod(name) is None


async def _no_containers(cluster: Cluster, uid: str) -> bool:
    return not await cluster.runtime.list({base.LABEL_POD_UID: uid})
