"""DaemonSet and StatefulSet history, run by the ControllerManager over a MemoryStore with the
garbage collector: each template the set takes is recorded as a ControllerRevision `<set>-<hash>`
numbered 1, 2, …; writing an earlier revision's template back (what `rollout undo` does) rolls the
pods back and renumbers that revision newest; the revisions are collected with the set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.daemonset.controller import DaemonSetController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.runner import Controller
from controlplane.controllers.statefulset.controller import StatefulSetController
from protos import daemonsets, statefulsets
from protos.corral.v1 import node_pb2, pod_pb2, workloads_pb2
from protos.wellknown import CONTROLLER_REVISION_HASH
from tests.unit.controllers.manager_harness import running, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def api() -> AsyncIterator[ObjectApi]:
    def controllers(api: ObjectApi) -> list[Controller]:
        return [
            DaemonSetController(api, EventRecorder(api, "daemonset-controller")),
            StatefulSetController(api, EventRecorder(api, "statefulset-controller")),
            GarbageCollector(api),
        ]

    async with running(controllers) as api:
        yield api


def daemon_set() -> workloads_pb2.DaemonSet:
    ds = workloads_pb2.DaemonSet()
    ds.metadata.name = "exporter"
    ds.spec.selector.match_labels["app"] = "exporter"
    ds.spec.template.metadata.labels["app"] = "exporter"
    ds.spec.template.spec.containers.add(name="exporter", image="busybox:1")
    return ds


def stateful_set() -> workloads_pb2.StatefulSet:
    sts = workloads_pb2.StatefulSet()
    sts.metadata.name = "db"
    sts.spec.replicas, sts.spec.service_name = 1, "db"
    sts.spec.selector.match_labels["app"] = "db"
    sts.spec.template.metadata.labels["app"] = "db"
    sts.spec.template.spec.containers.add(name="db", image="redis:7")
    return sts


async def history(api: ObjectApi) -> dict[str, int]:
    """Revision name -> number."""
    items = (await api.list("ControllerRevision", "default")).items
    return {r.metadata.name: r.revision for r in items if isinstance(r, workloads_pb2.ControllerRevision)}


async def pod_hashes(api: ObjectApi) -> set[str]:
    items = (await api.list("Pod", "default")).items
    return {
        p.metadata.labels[CONTROLLER_REVISION_HASH]
        for p in items
        if isinstance(p, pod_pb2.Pod) and not p.metadata.HasField("deletion_timestamp")
    }


async def change_image(api: ObjectApi, kind: str, name: str, image: str) -> Message:
    obj = await api.get(kind, "default", name)
    assert isinstance(obj, workloads_pb2.DaemonSet | workloads_pb2.StatefulSet)
    obj.spec.template.spec.containers[0].image = image
    return await api.write(obj)


async def undo_to(api: ObjectApi, kind: str, name: str, revision: str) -> Message:
    """What `corral rollout undo` writes: the revision's template as the set's."""
    rev = await api.get("ControllerRevision", "default", revision)
    obj = await api.get(kind, "default", name)
    assert isinstance(rev, workloads_pb2.ControllerRevision)
    assert isinstance(obj, workloads_pb2.DaemonSet | workloads_pb2.StatefulSet)
    obj.spec.template.CopyFrom(rev.data)
    return await api.write(obj)


async def test_daemon_set_history_and_undo(api: ObjectApi) -> None:
    n = node_pb2.Node()
    n.metadata.name = "n1"
    await api.create(n)
    v1 = await api.create(daemon_set())
    assert isinstance(v1, workloads_pb2.DaemonSet)
    h1 = daemonsets.revision(v1)

    async def first() -> bool:
        return await history(api) == {f"exporter-{h1}": 1} and await pod_hashes(api) == {h1}

    await wait_for(first, "revision 1 and its pod")
    v2 = await change_image(api, "DaemonSet", "exporter", "busybox:2")
    assert isinstance(v2, workloads_pb2.DaemonSet)
    h2 = daemonsets.revision(v2)

    async def second() -> bool:
        return await history(api) == {f"exporter-{h1}": 1, f"exporter-{h2}": 2} and await pod_hashes(api) == {h2}

    await wait_for(second, "revision 2 rolled out")
    await undo_to(api, "DaemonSet", "exporter", f"exporter-{h1}")

    async def undone() -> bool:
        return await history(api) == {f"exporter-{h1}": 3, f"exporter-{h2}": 2} and await pod_hashes(api) == {h1}

    await wait_for(undone, "revision 1 back as revision 3, its pod running")
    got = await api.get("DaemonSet", "default", "exporter")
    assert isinstance(got, workloads_pb2.DaemonSet)
    assert got.spec.template == v1.spec.template

    await api.delete("DaemonSet", "default", "exporter")

    async def collected() -> bool:
        return await history(api) == {}

    await wait_for(collected, "the revisions collected with the set")


async def test_stateful_set_history_and_undo(api: ObjectApi) -> None:
    v1 = await api.create(stateful_set())
    assert isinstance(v1, workloads_pb2.StatefulSet)
    r1 = statefulsets.revision(v1)

    async def first() -> bool:
        return await history(api) == {r1: 1} and await pod_hashes(api) == {r1}

    await wait_for(first, "revision 1 and db-0")
    v2 = await change_image(api, "StatefulSet", "db", "redis:8")
    assert isinstance(v2, workloads_pb2.StatefulSet)
    r2 = statefulsets.revision(v2)

    async def second() -> bool:
        return await history(api) == {r1: 1, r2: 2}

    await wait_for(second, "revision 2 recorded")
    await undo_to(api, "StatefulSet", "db", r1)

    async def undone() -> bool:
        sts = await api.get("StatefulSet", "default", "db")
        assert isinstance(sts, workloads_pb2.StatefulSet)
        return await history(api) == {r1: 3, r2: 2} and sts.status.update_revision == r1

    await wait_for(undone, "revision 1 back as revision 3 and the update revision")
    await api.delete("StatefulSet", "default", "db")

    async def collected() -> bool:
        return await history(api) == {}

    await wait_for(collected, "the revisions collected with the set")


async def test_a_daemon_set_with_a_long_name_gets_its_pods_and_history(api: ObjectApi) -> None:
    """`<set>-<hash>` would pass the 253 characters of a name: the set's name is cut to 223 first,
    as Kubernetes' ControllerRevisionName does (else every sync failed and no pod was made)."""
    n = node_pb2.Node()
    n.metadata.name = "n1"
    await api.create(n)
    ds = daemon_set()
    ds.metadata.name = "x" * 250
    created = await api.create(ds)
    assert isinstance(created, workloads_pb2.DaemonSet)
    h1 = daemonsets.revision(created)

    async def made() -> bool:
        return await history(api) == {f"{'x' * 223}-{h1}": 1} and await pod_hashes(api) == {h1}

    await wait_for(made, "the revision and the pod of a set with a 250-character name")
