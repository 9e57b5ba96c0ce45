"""The DaemonSet controller run by the ControllerManager over a MemoryStore, with the garbage
collector: one pod per node (never a second while the cache catches up), a pod for a node that
joins, a pod deleted from a node that stops matching, status written, and the pods collected with
the set; a Failed pod replaced with a back-off per node. Which node changes queue the sets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.daemonset.controller import DaemonSetController, _node_changed
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.runner import Controller
from controlplane.informer import CacheEvent, Change
from protos import daemonsets
from protos.corral.v1 import node_pb2, pod_pb2, workloads_pb2
from tests.unit.controllers.manager_harness import running, wait_for

pytestmark = pytest.mark.timeout(30)


def daemon_set() -> workloads_pb2.DaemonSet:
    ds = workloads_pb2.DaemonSet()
    ds.metadata.name = "exporter"
    ds.spec.selector.match_labels["app"] = "exporter"
    ds.spec.template.metadata.labels["app"] = "exporter"
    ds.spec.template.spec.node_selector["exporter"] = "yes"
    ds.spec.template.spec.containers.add(name="exporter", image="busybox:1")
    return ds


def node(name: str) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    n.metadata.labels["exporter"] = "yes"
    return n


@pytest.fixture
async def api() -> AsyncIterator[ObjectApi]:
    def controllers(api: ObjectApi) -> list[Controller]:
        return [
            DaemonSetController(api, EventRecorder(api, "daemonset-controller")),
            GarbageCollector(api),
        ]

    async with running(controllers) as api:
        yield api


async def pods_by_node(api: ObjectApi) -> dict[str, int]:
    items = (await api.list("Pod", "default")).items
    counts: dict[str, int] = {}
    for p in items:
        assert isinstance(p, pod_pb2.Pod)
        if not p.metadata.HasField("deletion_timestamp"):
            counts[daemonsets.node_of(p)] = counts.get(daemonsets.node_of(p), 0) + 1
    return counts


async def test_one_pod_per_node_as_nodes_come_and_change(api: ObjectApi) -> None:
    for name in ("n1", "n2"):
        await api.create(node(name))
    await api.create(daemon_set())

    async def on_both() -> bool:
        return await pods_by_node(api) == {"n1": 1, "n2": 1}

    await wait_for(on_both, "a pod for each node")
    for _ in range(20):  # later syncs (status writes, pod events) make no second pod
        await asyncio.sleep(0.01)
        assert await pods_by_node(api) == {"n1": 1, "n2": 1}

    await api.create(node("n3"))

    async def on_three() -> bool:
        return await pods_by_node(api) == {"n1": 1, "n2": 1, "n3": 1}

    await wait_for(on_three, "a pod for the node that joined")

    n2 = await api.get("Node", "", "n2")
    assert isinstance(n2, node_pb2.Node)
    n2.metadata.labels["exporter"] = "no"
    await api.write(n2)

    async def left_n2() -> bool:
        return await pods_by_node(api) == {"n1": 1, "n3": 1}

    await wait_for(left_n2, "the pod deleted from the node that no longer matches")

    async def status_written() -> bool:
        ds = await api.get("DaemonSet", "default", "exporter")
        assert isinstance(ds, workloads_pb2.DaemonSet)
        st = ds.status
        return (st.desired_number_scheduled, st.current_number_scheduled, st.observed_generation) == (2, 2, 1)

    await wait_for(status_written, "the status")

    await api.delete("DaemonSet", "default", "exporter")

    async def collected() -> bool:
        return await pods_by_node(api) == {}

    await wait_for(collected, "the pods collected with the set")


def _event(change: Change, old: node_pb2.Node | None, new: node_pb2.Node) -> CacheEvent:
    return CacheEvent(change, new, old, 1)


def _changed(**edit: object) -> node_pb2.Node:
    n = node("n1")
    if "label" in edit:
        n.metadata.labels["zone"] = "b"
    if "taint" in edit:
        n.spec.taints.add(key="dedicated", effect="NoSchedule")
    if "cordon" in edit:
        n.spec.unschedulable = True
    if "heartbeat" in edit:
        n.status.conditions.add(type="Ready", status="True")
    return n


@pytest.mark.parametrize(
    ("event", "queues"),
    [
        pytest.param(_event(Change.ADDED, None, node("n1")), True, id="joined"),
        pytest.param(_event(Change.DELETED, None, node("n1")), True, id="left"),
        pytest.param(_event(Change.MODIFIED, node("n1"), _changed(label=1)), True, id="labels"),
        pytest.param(_event(Change.MODIFIED, node("n1"), _changed(taint=1)), True, id="taints"),
        pytest.param(_event(Change.MODIFIED, node("n1"), _changed(cordon=1)), True, id="cordoned"),
        pytest.param(_event(Change.MODIFIED, node("n1"), _changed(heartbeat=1)), False, id="heartbeat"),
    ],
)
def test_which_node_changes_queue_the_sets(event: CacheEvent, queues: bool) -> None:
    assert _node_changed(event) is queues


async def test_failed_pods_are_replaced_with_a_back_off_per_node() -> None:
    clock = [datetime(2026, 3, 1, 12, 0, tzinfo=UTC)]

    def controllers(api: ObjectApi) -> list[Controller]:
        return [DaemonSetController(api, EventRecorder(api, "daemonset-controller"), now=lambda: clock[0])]

    async with running(controllers) as api:
        await api.create(node("n1"))
        await api.create(daemon_set())

        async def fail_the_pod() -> str:
            async def one() -> bool:
                return await pods_by_node(api) == {"n1": 1}

            await wait_for(one, "a pod")
            (current,) = [p for p in (await api.list("Pod", "default")).items if isinstance(p, pod_pb2.Pod)]
            current.status.phase = "Failed"
            await api.update_status(current)
            return current.metadata.uid

        async def replaced(uid: str) -> bool:
            items = [p for p in (await api.list("Pod", "default")).items if isinstance(p, pod_pb2.Pod)]
            return len(items) == 1 and items[0].metadata.uid != uid

        first = await fail_the_pod()
        await wait_for(lambda: replaced(first), "the first failed pod replaced at once")
        second = await fail_the_pod()
        for _ in range(20):  # within the 1 s back-off (the clock stands still): kept
            await asyncio.sleep(0.01)
            assert not await replaced(second)
        clock[0] += timedelta(seconds=1)
        await wait_for(lambda: replaced(second), "the second replaced once the back-off passed")
