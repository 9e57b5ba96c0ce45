"""Persistent volumes over the in-memory store: the scheduler, the volume controller and
the node API's side together (provision on the scheduled node, bind, keep the pod on
its volume's node, reclaim)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from controlplane.apiserver.errors import InvalidError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.runner import Controller, ControllerManager
from controlplane.controllers.scheduling import SchedulerController
from controlplane.controllers.volumes.controller import VolumeController
from controlplane.informer import Informer
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.volume_reports import VolumeReports
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import storage as st
from protos.corral.v1 import event_pb2, meta_pb2, node_pb2, node_service_pb2, pod_pb2, storage_pb2
from protos.kinds import by_kind
from protos.wellknown import CONFIG_ERRORS

T = TypeVar("T")
ROOT = "/var/lib/corral-agent/storage"


def node(name: str, *, root: bool = True) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    if root:
        n.metadata.annotations[st.VOLUME_ROOT] = f"{ROOT}-{name}"
    n.status.allocatable.update({"cpu": "2", "memory": "2Gi", "ephemeral-storage": "10Gi"})
    n.status.runtimes.append("docker")
    n.status.conditions.add(type="Ready", status="True")
    return n


def claim(name: str, *, size: str = "1Gi", class_name: str | None = None) -> storage_pb2.PersistentVolumeClaim:
    c = storage_pb2.PersistentVolumeClaim(metadata=meta_pb2.ObjectMeta(name=name))
    c.spec.access_modes.append(st.RWO)
    c.spec.resources.requests["storage"] = size
    if class_name is not None:
        c.spec.storage_class_name = class_name
    return c


def pod(name: str, claim_name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=name))
    c = p.spec.containers.add(name="main", image="busybox:1")
    c.volume_mounts.add(name="data", mount_path="/data")
    v = p.spec.volumes.add(name="data")
    v.persistent_volume_claim.claim_name = claim_name
    return p


@dataclass
class Cluster:
    api: ObjectApi
    assignments: AssignmentIndex
    reports: VolumeReports


@contextlib.asynccontextmanager
async def cluster(*nodes: node_pb2.Node) -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    for n in nodes:
        await api.create(n)
    controllers: list[Controller] = [
        SchedulerController(api, EventRecorder(api, "scheduler")),
        VolumeController(api, EventRecorder(api, "persistentvolume-controller")),
    ]
    serving = ControllerManager(objects, [])
    informers: dict[str, Informer] = {
        k: serving.informer(k) for k in ("Pod", "PersistentVolumeClaim", "PersistentVolume")
    }
    assignments = AssignmentIndex(
        informers["Pod"], claims=informers["PersistentVolumeClaim"], volumes=informers["PersistentVolume"]
    )
    manager = ControllerManager(objects, controllers)
    tasks = [asyncio.create_task(manager.run()), asyncio.create_task(serving.run())]
    try:
        yield Cluster(api, assignments, VolumeReports(api))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    async with asyncio.timeout(timeout):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.02)


async def get_pod(api: ObjectApi, name: str) -> pod_pb2.Pod:
    found = await api.get("Pod", "default", name)
    assert isinstance(found, pod_pb2.Pod)
    return found


async def get_claim(api: ObjectApi, name: str) -> storage_pb2.PersistentVolumeClaim | None:
    found = await api.find(by_kind("PersistentVolumeClaim"), "default", name)
    return found if isinstance(found, storage_pb2.PersistentVolumeClaim) else None


async def events_of(api: ObjectApi, name: str) -> list[str]:
    items = (await api.list("Event", "default")).items
    return [
        f"{e.reason}: {e.message}" for e in items if isinstance(e, event_pb2.Event) and e.involved_object.name == name
    ]


async def bound_claim(api: ObjectApi, name: str) -> storage_pb2.PersistentVolumeClaim | None:
    c = await get_claim(api, name)
    return c if c is not None and c.status.phase == st.BOUND else None


async def test_a_claim_is_provisioned_on_the_node_its_pod_is_scheduled_to_and_bound() -> None:
    async with cluster(node("a"), node("b")) as c:
        await until(lambda: c.api.find(by_kind("StorageClass"), "", st.DEFAULT_CLASS_NAME))
        await c.api.create(claim("data"))
        created = await get_claim(c.api, "data")
        assert created is not None and created.spec.storage_class_name == st.DEFAULT_CLASS_NAME
        waiting = await until(lambda: events_of(c.api, "data"))
        assert any("waiting for first consumer to be created before binding" in e for e in waiting)

        await c.api.create(pod("web", "data"))
        bound = await until(lambda: bound_claim(c.api, "data"))
        web = await get_pod(c.api, "web")
        pv = await c.api.get("PersistentVolume", "", bound.spec.volume_name)
        assert isinstance(pv, storage_pb2.PersistentVolume)
        assert pv.status.phase == st.BOUND
        assert st.volume_node(pv) == web.spec.node_name
        assert pv.spec.host_path.path.startswith(f"{ROOT}-{web.spec.node_name}/pvc-")
        assert pv.spec.claim_ref.uid == bound.metadata.uid
        assert bound.metadata.annotations[st.SELECTED_NODE] == web.spec.node_name

        # The node gets the directory in its copy of the pod.
        async def resolved() -> dict[str, str] | None:
            sent, _ = c.assignments.current(web.spec.node_name)
            paths = json.loads(sent.pods[0].metadata.annotations.get(st.CLAIM_PATHS, "{}")) if sent.pods else {}
            return paths or None

        assert (await until(resolved)) == {"data": pv.spec.host_path.path}


async def test_a_cordoned_volume_node_keeps_the_replacement_pod_pending_with_the_reason() -> None:
    async with cluster(node("a"), node("b")) as c:
        await c.api.create(claim("data"))
        await c.api.create(pod("web", "data"))
        bound = await until(lambda: bound_claim(c.api, "data"))
        first = await get_pod(c.api, "web")
        home = first.spec.node_name
        n = await c.api.get("Node", "", home)
        assert isinstance(n, node_pb2.Node)
        n.spec.unschedulable = True
        await c.api.write(n)
        await c.api.delete("Pod", "default", "web", grace_period_seconds=0)
        await c.api.create(pod("web2", "data"))

        async def reason() -> str | None:
            p = await get_pod(c.api, "web2")
            cond = next((x for x in p.status.conditions if x.type == "PodScheduled" and x.status == "False"), None)
            return cond.message if cond is not None else None

        message = await until(reason)
        assert f'persistentvolumeclaim "data" is on node "{home}"' in message
        assert not (await get_pod(c.api, "web2")).spec.node_name
        assert any(f'on node "{home}"' in e for e in await events_of(c.api, "web2"))
        assert bound.spec.volume_name


@pytest.mark.parametrize(
    ("policy", "kept"),
    [pytest.param(st.DELETE, False, id="delete"), pytest.param(st.RETAIN, True, id="retain")],
)
async def test_deleting_a_claim_releases_its_volume_and_reclaims_it(policy: str, kept: bool) -> None:
    async with cluster(node("a")) as c:
        sc = st.default_class()
        sc.metadata.name = "fast"
        sc.metadata.annotations.clear()
        sc.reclaim_policy = policy
        await c.api.create(sc)
        await c.api.create(claim("data", class_name="fast"))
        await c.api.create(pod("web", "data"))
        bound = await until(lambda: bound_claim(c.api, "data"))
        name = bound.spec.volume_name

        # In use: the claim is only marked terminating.
        await c.api.delete("PersistentVolumeClaim", "default", "data")
        marked = await get_claim(c.api, "data")
        assert marked is not None and marked.metadata.HasField("deletion_timestamp")
        await c.api.delete("Pod", "default", "web", grace_period_seconds=0)
        await until(lambda: _gone(c.api, "data"))

        async def released() -> storage_pb2.PersistentVolume | None:
            pv = await c.api.find(by_kind("PersistentVolume"), "", name)
            ok = isinstance(pv, storage_pb2.PersistentVolume) and pv.status.phase == st.RELEASED
            return pv if ok else None  # type: ignore[return-value]

        pv = await until(released)

        async def deletions() -> list[tuple[str, str]]:
            sent, _ = c.assignments.current("a")
            return [(d.name, d.path) for d in sent.volume_deletions]

        if kept:
            with pytest.raises(TimeoutError):
                await until(deletions, timeout=0.5)
            return
        assert await until(deletions) == [(name, pv.spec.host_path.path)]
        report = node_service_pb2.ReportStatusRequest(node_name="a")
        report.volume_deletions.add(name=name, uid=pv.metadata.uid)
        await c.reports.record(report, c.api.now())
        assert await c.api.find(by_kind("PersistentVolume"), "", name) is None


async def _gone(api: ObjectApi, name: str) -> bool:
    return await get_claim(api, name) is None


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        pytest.param(None, 'persistentvolumeclaim "data" not found', id="missing-claim"),
        pytest.param("nosuch", 'storageclass.storage.k8s.io "nosuch" not found', id="missing-class"),
        pytest.param("100Gi", "did not have enough free storage", id="too-big"),
    ],
)
async def test_a_pod_whose_volume_cannot_be_had_stays_pending_with_the_reason(made: str | None, expected: str) -> None:
    async with cluster(node("a")) as c:
        if made == "nosuch":
            await c.api.create(claim("data", class_name="nosuch"))
        elif made is not None:
            await until(lambda: c.api.find(by_kind("StorageClass"), "", st.DEFAULT_CLASS_NAME))
            await c.api.create(claim("data", size=made))
        await c.api.create(pod("web", "data"))

        async def reason() -> str | None:
            p = await get_pod(c.api, "web")
            cond = next((x for x in p.status.conditions if x.type == "PodScheduled" and x.status == "False"), None)
            return cond.message if cond is not None else None

        assert expected in await until(reason)


async def test_an_unbound_claim_leaves_the_container_waiting_with_its_reason() -> None:
    async with cluster(node("a", root=False)) as c:
        await c.api.create(claim("data"))
        await c.api.create(pod("web", "data"))
        await until(lambda: _bound_pod(c.api, "web"))

        async def waiting() -> str | None:
            sent, _ = c.assignments.current("a")
            return sent.pods[0].metadata.annotations.get(CONFIG_ERRORS) if sent.pods else None

        assert "is not bound yet" in await until(waiting)

        async def told() -> list[str]:
            return [e for e in await events_of(c.api, "data") if "to report where it keeps volumes" in e]

        assert await until(told)


async def _bound_pod(api: ObjectApi, name: str) -> bool:
    return bool((await get_pod(api, name)).spec.node_name)


async def test_a_claim_with_a_block_volume_mode_is_refused_by_field() -> None:
    async with cluster() as c:
        bad = claim("data")
        bad.spec.volume_mode = "Block"
        with pytest.raises(InvalidError, match="spec.volumeMode"):
            await c.api.create(bad)


async def test_a_nodes_reports_set_its_volume_root_and_a_failed_deletion_fails_the_volume() -> None:
    async with cluster(node("a", root=False)) as c:
        await c.reports.record(node_service_pb2.ReportStatusRequest(node_name="a", volume_root="/srv/a"), c.api.now())
        a = await c.api.get("Node", "", "a")
        assert a.metadata.annotations[st.VOLUME_ROOT] == "/srv/a"

        await c.api.create(claim("data"))
        await c.api.create(pod("web", "data"))
        bound = await until(lambda: bound_claim(c.api, "data"))
        assert bound.spec.volume_name
        pv = await c.api.get("PersistentVolume", "", bound.spec.volume_name)
        assert isinstance(pv, storage_pb2.PersistentVolume)
        assert pv.spec.host_path.path.startswith("/srv/a/pvc-")
        await c.api.delete("Pod", "default", "web", grace_period_seconds=0)
        await c.api.delete("PersistentVolumeClaim", "default", "data")

        async def released() -> storage_pb2.PersistentVolume | None:
            found = await c.api.find(by_kind("PersistentVolume"), "", pv.metadata.name)
            ok = isinstance(found, storage_pb2.PersistentVolume) and found.status.phase == st.RELEASED
            return found if ok else None  # type: ignore[return-value]

        await until(released)
        failed = node_service_pb2.ReportStatusRequest(node_name="b")  # another node cannot touch it
        failed.volume_deletions.add(name=pv.metadata.name, uid=pv.metadata.uid)
        await c.reports.record(failed, c.api.now())
        failed.node_name = "a"
        failed.volume_deletions[0].error = "Permission denied"
        await c.reports.record(failed, c.api.now())
        after = await c.api.get("PersistentVolume", "", pv.metadata.name)
        assert isinstance(after, storage_pb2.PersistentVolume)
        assert after.status.phase == st.FAILED and "Permission denied" in after.status.message


async def test_pods_sharing_an_unbound_claim_land_on_one_node() -> None:
    async with cluster(node("a"), node("b"), node("c")) as c:
        await c.api.create(claim("shared"))
        for i in range(3):
            await c.api.create(pod(f"web{i}", "shared"))

        async def placed() -> set[str] | None:
            nodes = {(await get_pod(c.api, f"web{i}")).spec.node_name for i in range(3)}
            return nodes if "" not in nodes else None

        nodes = await until(placed)
        assert len(nodes) == 1
        bound = await until(lambda: bound_claim(c.api, "shared"))
        assert bound.metadata.annotations[st.SELECTED_NODE] in nodes


async def test_a_local_volume_made_by_hand_draws_its_pod_to_its_node_and_binds() -> None:
    async with cluster(node("a"), node("b"), node("c")) as c:
        static = storage_pb2.StorageClass(metadata=meta_pb2.ObjectMeta(name="local-storage"))
        static.provisioner, static.volume_binding_mode = "kubernetes.io/no-provisioner", st.WAIT_FOR_FIRST_CONSUMER
        await c.api.create(static)
        pv = storage_pb2.PersistentVolume(metadata=meta_pb2.ObjectMeta(name="disk-b"))
        pv.spec.capacity["storage"] = "5Gi"
        pv.spec.access_modes.append(st.RWO)
        pv.spec.storage_class_name = "local-storage"
        pv.spec.local.path = f"{ROOT}-b/disk"
        term = pv.spec.node_affinity.required.node_selector_terms.add()
        term.match_expressions.add(key="kubernetes.io/hostname", operator="In", values=["b"])
        await c.api.create(pv)
        await c.api.create(claim("data", class_name="local-storage"))
        await c.api.create(pod("web", "data"))
        bound = await until(lambda: bound_claim(c.api, "data"))
        assert bound.spec.volume_name == "disk-b"
        assert (await get_pod(c.api, "web")).spec.node_name == "b"
