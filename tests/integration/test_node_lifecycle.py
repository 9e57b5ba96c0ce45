"""The node lifecycle controller run by the ControllerManager over a MemoryStore,
with real (short) timers: a 0.5 s grace period, heartbeats every 0.1 s and a
0.6 s default toleration for owned pods."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.nodelifecycle.controller import NodeLifecycleController
from controlplane.controllers.nodelifecycle.zones import EvictionRates
from controlplane.controllers.runner import ControllerManager
from controlplane.nodeapi.service import set_ready
from controlplane.store import errors as store_errors
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import event_pb2, meta_pb2, node_pb2, pod_pb2
from protos.kinds import by_kind

pytestmark = pytest.mark.timeout(30)

GRACE = 0.5
HEARTBEAT = 0.1
OWNED_TOLERATION = 0.6
WAIT = 5.0
NODE, POD, EVENT = by_kind("Node"), by_kind("Pod"), by_kind("Event")
UNREACHABLE = "node.kubernetes.io/unreachable"


def now() -> datetime:
    return datetime.now(UTC)


async def wait_for(check: Callable[[], Awaitable[object]], what: str, timeout: float = WAIT) -> object:
    """Poll `check` until it returns something truthy, or fail after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Cluster:
    api: ObjectApi
    objects: ObjectStore
    beating: set[str] = field(default_factory=set)

    async def add_node(self, name: str) -> None:
        node = node_pb2.Node()
        node.metadata.name = name
        set_ready(node, now())
        await self.api.create(node)
        self.beating.add(name)

    async def add_pod(self, name: str, node: str, *, owned: bool = True) -> pod_pb2.Pod:
        pod = pod_pb2.Pod()
        pod.metadata.name = name
        if owned:
            pod.metadata.owner_references.append(
                meta_pb2.OwnerReference(
                    api_version="apps/v1", kind="ReplicaSet", name="web-abc", uid="rs-uid", controller=True
                )
            )
        pod.spec.node_name = node
        pod.spec.containers.add(name="app", image="busybox:1.36")
        created = await self.api.create(pod)
        assert isinstance(created, pod_pb2.Pod)
        created.status.phase = "Running"
        for kind in ("Ready", "ContainersReady"):
            created.status.conditions.add(type=kind, status="True")
        written = await self.objects.update(created)
        assert isinstance(written, pod_pb2.Pod)
        return written

    async def heartbeats(self) -> None:
        """One loop for every node, so silenced nodes stop at the same moment."""
        while True:
            for name in sorted(self.beating):
                await self._beat(name)
            await asyncio.sleep(HEARTBEAT)

    async def _beat(self, name: str) -> None:
        for _ in range(8):
            node = await self.node(name)
            set_ready(node, now())
            try:
                await self.objects.update(node)
                return
            except store_errors.ConflictError:
                continue

    async def node(self, name: str) -> node_pb2.Node:
        node = await self.objects.get(NODE, "", name)
        assert isinstance(node, node_pb2.Node)
        return node

    async def pod(self, name: str) -> pod_pb2.Pod | None:
        pod = await self.objects.get(POD, "default", name)
        assert pod is None or isinstance(pod, pod_pb2.Pod)
        return pod

    async def ready_status(self, node: str) -> str:
        n = await self.node(node)
        return next((c.status for c in n.status.conditions if c.type == "Ready"), "")

    async def taints(self, node: str) -> set[str]:
        return {f"{t.key}:{t.effect}" for t in (await self.node(node)).spec.taints}

    async def pod_ready(self, name: str) -> str | None:
        pod = await self.pod(name)
        if pod is None:
            return None
        return next((c.status for c in pod.status.conditions if c.type == "Ready"), "")

    async def event_reasons(self) -> set[str]:
        events, _ = await self.objects.list_all(EVENT)
        return {e.reason for e in events if isinstance(e, event_pb2.Event)}


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    controller = NodeLifecycleController(
        api,
        EventRecorder(api, "node-lifecycle-controller"),
        grace=GRACE,
        rates=EvictionRates(node_eviction_rate=50.0),
        owned_toleration=OWNED_TOLERATION,
    )
    manager = ControllerManager(objects, [controller])
    c = Cluster(api, objects)
    await c.add_node("n1")
    await c.add_node("n2")
    tasks = [asyncio.create_task(c.heartbeats()), asyncio.create_task(manager.run())]
    try:
        yield c
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in manager.queues.values():
            queue.close()


async def test_silent_node_goes_unknown_and_its_owned_pod_is_evicted(cluster: Cluster) -> None:
    await cluster.add_pod("web-1", "n1")
    await cluster.add_pod("web-2", "n2")
    cluster.beating.discard("n1")

    async def unknown() -> bool:
        return await cluster.ready_status("n1") == "Unknown"

    await wait_for(unknown, "n1 Ready Unknown")
    node = await cluster.node("n1")
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert (ready.reason, ready.message) == ("NodeStatusUnknown", "corral agent stopped posting node status.")

    async def tainted() -> bool:
        return await cluster.taints("n1") == {f"{UNREACHABLE}:NoSchedule", f"{UNREACHABLE}:NoExecute"}

    await wait_for(tainted, "n1 tainted unreachable")

    async def not_ready() -> bool:
        return await cluster.pod_ready("web-1") == "False"

    await wait_for(not_ready, "web-1 marked not ready")

    async def gone() -> bool:
        return await cluster.pod("web-1") is None

    await wait_for(gone, "web-1 evicted")
    assert await cluster.pod_ready("web-2") == "True"
    assert await cluster.ready_status("n2") == "True" and await cluster.taints("n2") == set()
    assert {"NodeNotReady", "TaintManagerEviction"} <= await cluster.event_reasons()


async def test_terminating_pod_of_a_silent_node_is_deleted_at_once(cluster: Cluster) -> None:
    await cluster.add_pod("stuck", "n1", owned=False)  # a bare pod: 300 s before it would be evicted
    await cluster.add_pod("web-2", "n2")
    marked = await cluster.api.delete("Pod", "default", "stuck")
    assert marked.metadata.HasField("deletion_timestamp"), "its node is alive: it finishes the deletion"
    await cluster.api.delete("Pod", "default", "web-2")
    cluster.beating.discard("n1")

    async def gone() -> bool:
        return await cluster.pod("stuck") is None

    await wait_for(gone, "the terminating pod of the silent node deleted")
    assert "ForceDeleted" in await cluster.event_reasons()
    web2 = await cluster.pod("web-2")
    assert web2 is not None and web2.metadata.HasField("deletion_timestamp"), "a Ready node's pods are left to it"


async def test_node_that_resumes_in_time_keeps_its_pods(cluster: Cluster) -> None:
    await cluster.add_pod("web-1", "n1")
    cluster.beating.discard("n1")

    async def not_ready() -> bool:
        return await cluster.pod_ready("web-1") == "False"

    await wait_for(not_ready, "web-1 marked not ready")
    tainted_at = min(t.time_added.ToDatetime(tzinfo=UTC) for t in (await cluster.node("n1")).spec.taints)
    cluster.beating.add("n1")

    async def healthy() -> bool:
        return await cluster.ready_status("n1") == "True" and not await cluster.taints("n1")

    await wait_for(healthy, "n1 Ready again without taints")
    # Past the moment the pod would have been evicted, with heartbeats (and so syncs) since.
    left = (tainted_at - now()).total_seconds() + OWNED_TOLERATION + 3 * HEARTBEAT
    await asyncio.sleep(max(0.0, left))
    assert await cluster.pod("web-1") is not None
    assert "TaintManagerEviction" not in await cluster.event_reasons()


async def test_all_nodes_silent_evicts_nothing_until_one_is_back(cluster: Cluster) -> None:
    await cluster.add_pod("web-1", "n1")
    await cluster.add_pod("web-2", "n2")
    cluster.beating.clear()

    async def all_unknown_and_marked() -> bool:
        statuses = [await cluster.ready_status(n) for n in ("n1", "n2")]
        pods = [await cluster.pod_ready(p) for p in ("web-1", "web-2")]
        return statuses == ["Unknown", "Unknown"] and pods == ["False", "False"]

    await wait_for(all_unknown_and_marked, "both nodes Unknown, both pods not ready")

    async def no_execute_withheld() -> bool:
        taints = [await cluster.taints(n) for n in ("n1", "n2")]
        return taints == [{f"{UNREACHABLE}:NoSchedule"}] * 2

    await wait_for(no_execute_withheld, "only NoSchedule taints in full disruption")
    assert "FullDisruption" in await cluster.event_reasons()
    await asyncio.sleep(OWNED_TOLERATION + 3 * HEARTBEAT)
    assert await cluster.pod("web-1") is not None and await cluster.pod("web-2") is not None

    cluster.beating.add("n2")

    async def web1_gone() -> bool:
        return await cluster.pod("web-1") is None

    await wait_for(web1_gone, "web-1 evicted once n2 is back")
    assert await cluster.pod("web-2") is not None
    assert f"{UNREACHABLE}:NoExecute" in await cluster.taints("n1")
