"""The garbage collector run by the ControllerManager over a MemoryStore:
cascading deletion Deployment → ReplicaSets → Pods (graceful for running
pods), expiring Events, and terminating pods whose node is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.gc.controller import NOT_SYNCED_RETRY, GarbageCollector
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import event_pb2, meta_pb2, node_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind, meta
from tests.unit.controllers import manager_harness as harness
from tests.unit.controllers.manager_harness import wait_for

pytestmark = pytest.mark.timeout(30)


def ref(kind: str, name: str, uid: str) -> meta_pb2.OwnerReference:
    return meta_pb2.OwnerReference(
        api_version="apps/v1" if kind != "Pod" else "v1",
        kind=kind,
        name=name,
        uid=uid,
        controller=True,
        block_owner_deletion=True,
    )


def template(spec: workloads_pb2.DeploymentSpec | workloads_pb2.ReplicaSetSpec) -> None:
    spec.selector.match_labels["app"] = "web"
    spec.template.metadata.labels["app"] = "web"
    spec.template.spec.containers.add(name="web", image="httpd:2.4")


def deployment(name: str) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name = name
    template(d.spec)
    return d


def replica_set(name: str, *owners: meta_pb2.OwnerReference) -> workloads_pb2.ReplicaSet:
    rs = workloads_pb2.ReplicaSet()
    rs.metadata.name = name
    rs.metadata.owner_references.extend(owners)
    template(rs.spec)
    return rs


def pod(name: str, *owners: meta_pb2.OwnerReference) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.owner_references.extend(owners)
    p.spec.containers.add(name="web", image="httpd:2.4")
    return p


def event(name: str, last_seen: datetime) -> event_pb2.Event:
    e = event_pb2.Event(reason="Test", message="something happened", type="Normal", count=1)
    e.metadata.name = name
    e.involved_object.kind, e.involved_object.name = "Pod", "web-1"
    e.last_timestamp.FromDatetime(last_seen)
    return e


class Api:
    def __init__(self, api: ObjectApi) -> None:
        self.api = api

    async def create(self, obj: Message) -> str:
        created = await self.api.create(obj)
        return meta(created).uid

    async def exists(self, kind: str, name: str) -> bool:
        return await self.api.find(by_kind(kind), "default", name) is not None

    async def gone(self, kind: str, name: str) -> bool:
        return not await self.exists(kind, name)


@pytest.fixture
async def running() -> AsyncIterator[Api]:
    async with harness.running(lambda api: [GarbageCollector(api, event_ttl=3600)]) as api:
        yield Api(api)


async def test_deleting_a_deployment_deletes_its_replica_sets_then_their_pods(running: Api) -> None:
    d_uid = await running.create(deployment("web"))
    rs_uid = await running.create(replica_set("web-abc", ref("Deployment", "web", d_uid)))
    await running.create(pod("web-abc-1", ref("ReplicaSet", "web-abc", rs_uid)))
    await running.create(pod("web-abc-2", ref("ReplicaSet", "web-abc", rs_uid)))
    other_uid = await running.create(deployment("api"))
    await running.create(replica_set("api-xyz", ref("Deployment", "api", other_uid)))
    await running.create(pod("bare"))

    await running.api.delete("Deployment", "default", "web")

    async def cascaded() -> bool:
        names = ("web-abc-1", "web-abc-2")
        return await running.gone("ReplicaSet", "web-abc") and all([await running.gone("Pod", n) for n in names])

    await wait_for(cascaded, "web's ReplicaSet and pods deleted")
    assert await running.exists("ReplicaSet", "api-xyz")
    assert await running.exists("Pod", "bare")


async def test_owner_recreated_with_the_same_name_is_not_the_owner(running: Api) -> None:
    await running.create(deployment("web"))
    await running.create(replica_set("web-old", ref("Deployment", "web", "uid-of-an-earlier-web")))
    await running.create(pod("stray", ref("ReplicaSet", "never-existed", "rs-gone")))

    async def collected() -> bool:
        return await running.gone("ReplicaSet", "web-old") and await running.gone("Pod", "stray")

    await wait_for(collected, "dependents of vanished owners deleted")
    assert await running.exists("Deployment", "web")


async def test_events_older_than_the_ttl_are_deleted(running: Api) -> None:
    now = datetime.now(UTC)
    await running.create(event("old", now - timedelta(hours=2)))
    await running.create(event("fresh", now - timedelta(minutes=5)))

    async def old_gone() -> bool:
        return await running.gone("Event", "old")

    await wait_for(old_gone, "the old event deleted")
    assert await running.exists("Event", "fresh")


async def test_nothing_is_deleted_before_the_caches_sync() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    await api.create(replica_set("orphan", ref("Deployment", "web", "gone")))
    gc = GarbageCollector(api)
    gc.bind({kind: Informer(objects, by_kind(kind)) for kind in gc.kinds}, WorkQueue())
    assert await gc.sync("ReplicaSet/default/orphan") == NOT_SYNCED_RETRY
    assert await objects.get(by_kind("ReplicaSet"), "default", "orphan") is not None


def node(name: str) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    return n


def running_on(name: str, node_name: str, *owners: meta_pb2.OwnerReference) -> pod_pb2.Pod:
    p = pod(name, *owners)
    p.spec.node_name = node_name
    return p


async def test_orphaned_running_pods_are_deleted_gracefully(running: Api) -> None:
    await running.create(node("n1"))
    rs_uid = await running.create(replica_set("web-abc"))
    await running.create(running_on("web-abc-1", "n1", ref("ReplicaSet", "web-abc", rs_uid)))
    await running.api.delete("ReplicaSet", "default", "web-abc")

    async def marked() -> bool:
        found = await running.api.find(by_kind("Pod"), "default", "web-abc-1")
        return found is not None and found.metadata.HasField("deletion_timestamp")

    await wait_for(marked, "the orphaned pod marked terminating, left to its node")


async def test_terminating_pods_whose_node_is_gone_are_deleted_at_once(running: Api) -> None:
    await running.create(node("n1"))
    await running.create(running_on("stranded", "ghost"))
    await running.create(running_on("stays", "n1"))
    await running.create(running_on("later", "n1"))
    for name in ("stranded", "stays", "later"):
        await running.api.delete("Pod", "default", name)

    async def stranded_gone() -> bool:
        return await running.gone("Pod", "stranded")

    await wait_for(stranded_gone, "the terminating pod on a node that never existed deleted")
    assert await running.exists("Pod", "stays") and await running.exists("Pod", "later")
    await running.api.delete("Node", "", "n1")

    async def both_gone() -> bool:
        return await running.gone("Pod", "stays") and await running.gone("Pod", "later")

    await wait_for(both_gone, "the terminating pods of a deleted node deleted")
