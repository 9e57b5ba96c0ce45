"""The scheduler controller over the in-memory store: spreading, capacity, reasons."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.runner import ControllerManager
from controlplane.controllers.scheduling import SchedulerController
from controlplane.informer import CacheEvent
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import meta_pb2, node_pb2, pod_pb2
from protos.kinds import by_kind

POD = by_kind("Pod")


def node(name: str) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    n.status.allocatable.update({"cpu": "1", "memory": "1Gi"})
    n.status.runtimes.append("docker")
    n.status.conditions.add(type="Ready", status="True")
    return n


def pod(name: str, cpu: str, owner: str = "") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    if owner:
        p.metadata.owner_references.append(
            meta_pb2.OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="rs", uid=owner, controller=True)
        )
    c = p.spec.containers.add(name="main", image="busybox:1")
    c.resources.requests["cpu"] = cpu
    return p


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[ObjectApi]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    for name in ("a", "b", "c"):
        await api.create(node(name))
    manager = ControllerManager(objects, [SchedulerController(api, EventRecorder(api, "scheduler"))])
    task = asyncio.create_task(manager.run())
    try:
        yield api
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def pods(api: ObjectApi) -> list[pod_pb2.Pod]:
    items = (await api.list("Pod")).items
    return [p for p in items if isinstance(p, pod_pb2.Pod)]


async def wait_for(api: ObjectApi, done: object, timeout: float = 10.0) -> list[pod_pb2.Pod]:
    async with asyncio.timeout(timeout):
        while True:
            current = await pods(api)
            if done(current):  # type: ignore[operator]
                return current
            await asyncio.sleep(0.02)


async def test_replicas_of_one_owner_spread_over_nodes() -> None:
    async with cluster() as api:
        for i in range(3):
            await api.create(pod(f"r{i}", "100m", owner="rs-uid"))
        placed = await wait_for(api, lambda ps: all(p.spec.node_name for p in ps))
        assert sorted(p.spec.node_name for p in placed) == ["a", "b", "c"]
        scheduled = next(c for c in placed[0].status.conditions if c.type == "PodScheduled")
        assert scheduled.status == "True"


@pytest.mark.parametrize("batch", [pytest.param(12, id="burst")])
async def test_capacity_is_never_exceeded_and_the_rest_is_explained(batch: int) -> None:
    async with cluster() as api:
        await asyncio.gather(*(api.create(pod(f"p{i:02d}", "300m")) for i in range(batch)))

        def settled(ps: list[pod_pb2.Pod]) -> bool:
            return all(
                p.spec.node_name or any(c.type == "PodScheduled" and c.status == "False" for c in p.status.conditions)
                for p in ps
            )

        final = await wait_for(api, settled)
        per_node = Counter(p.spec.node_name for p in final if p.spec.node_name)
        assert per_node == {"a": 3, "b": 3, "c": 3}
        waiting = [p for p in final if not p.spec.node_name]
        assert len(waiting) == 3
        message = next(c.message for c in waiting[0].status.conditions if c.type == "PodScheduled")
        assert message == "0/3 nodes available: 3 insufficient cpu."
        events = (await api.list("Event")).items
        assert any(e.reason == "FailedScheduling" for e in events)
        # Freeing room schedules a waiting pod at once (no back-off wait).
        bound = next(p for p in final if p.spec.node_name == "a")
        await api.delete("pod", "default", bound.metadata.name)
        await wait_for(
            api,
            lambda ps: (
                sum(1 for p in ps if p.spec.node_name) == 9
                and Counter(p.spec.node_name for p in ps if p.spec.node_name)["a"] == 3
            ),
        )


def test_heartbeats_do_not_trigger_passes_but_node_changes_do() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    scheduler = SchedulerController(api, EventRecorder(api, "scheduler"))
    before = node("a")
    beat = node_pb2.Node()
    beat.CopyFrom(before)
    beat.status.conditions[0].last_heartbeat_time.seconds = 1_800_000_000
    assert list(scheduler.keys_for("Node", CacheEvent(Change.MODIFIED, beat, before, 2))) == []
    cordoned = node_pb2.Node()
    cordoned.CopyFrom(beat)
    cordoned.spec.unschedulable = True
    assert list(scheduler.keys_for("Node", CacheEvent(Change.MODIFIED, cordoned, beat, 3))) == ["pass"]
    not_ready = node_pb2.Node()
    not_ready.CopyFrom(beat)
    not_ready.status.conditions[0].status = "Unknown"
    assert list(scheduler.keys_for("Node", CacheEvent(Change.MODIFIED, not_ready, beat, 4))) == ["pass"]
