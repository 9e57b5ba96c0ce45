"""The namespace controller run by the ControllerManager over a MemoryStore, beside
the Deployment and ReplicaSet controllers: deleting a namespace deletes its
Deployment, ReplicaSet and pods (a running pod gracefully: the namespace waits,
Terminating, for its node), Services, Secrets and ConfigMaps, then the
namespace itself; another namespace is left alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.deployment.controller import DeploymentController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.namespace.controller import NamespaceController
from controlplane.controllers.namespace.reconcile import content_kinds, plan_namespace
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.runner import ControllerManager
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import (
    configmap_pb2,
    namespace_pb2,
    pod_pb2,
    secret_pb2,
    service_pb2,
    workloads_pb2,
)
from protos.kinds import KINDS, by_kind, meta
from tests.unit.controllers.manager_harness import wait_for

pytestmark = pytest.mark.timeout(30)


def in_namespace(obj: Message, name: str, namespace: str = "team") -> Message:
    meta(obj).name, meta(obj).namespace = name, namespace
    return obj


def deployment(namespace: str = "team") -> Message:
    d = workloads_pb2.Deployment()
    d.spec.replicas = 2
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="web", image="httpd:2.4")
    return in_namespace(d, "web", namespace)


def service() -> Message:
    s = service_pb2.Service()
    s.spec.selector["app"] = "web"
    s.spec.ports.add(port=8080, target_port={"int_val": 80})
    return in_namespace(s, "web")


def running_pod() -> Message:
    p = pod_pb2.Pod()
    p.spec.node_name = "n1"
    p.spec.containers.add(name="main", image="busybox:1")
    return in_namespace(p, "bare")


def content() -> list[Message]:
    secret = secret_pb2.Secret()
    secret.data["password"] = b"s3cret"
    config = configmap_pb2.ConfigMap()
    config.data["site.conf"] = "listen 80"
    return [deployment(), service(), in_namespace(secret, "db"), in_namespace(config, "site"), running_pod()]


class Cluster:
    def __init__(self, api: ObjectApi) -> None:
        self.api = api

    async def count(self, namespace: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for info in content_kinds():
            items = (await self.api.list(info.kind, namespace)).items
            if items:
                counts[info.kind] = len(items)
        return counts

    async def namespace(self, name: str = "team") -> namespace_pb2.Namespace | None:
        found = await self.api.find(by_kind("Namespace"), "", name)
        assert found is None or isinstance(found, namespace_pb2.Namespace)
        return found


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    controllers = [
        DeploymentController(api, EventRecorder(api, "deployment-controller")),
        ReplicaSetController(api, EventRecorder(api, "replicaset-controller")),
        NamespaceController(api, recheck=0.05),
    ]
    manager = ControllerManager(objects, controllers)  # type: ignore[arg-type]
    task = asyncio.create_task(manager.run())
    try:
        yield Cluster(api)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for queue in manager.queues.values():
            queue.close()


def test_every_namespaced_kind_is_emptied_pods_last() -> None:
    kinds = content_kinds()
    assert {k.kind for k in kinds} == {k.kind for k in KINDS if k.namespaced}
    assert kinds[-1].kind == "Pod"


async def test_deleting_a_namespace_deletes_its_contents_then_itself(cluster: Cluster) -> None:
    api = cluster.api
    for name in ("team", "other"):
        await api.create(in_namespace(namespace_pb2.Namespace(), name, ""))
    for obj in content():
        await api.create(obj)
    await api.create(deployment("other"))

    async def pods_made() -> bool:
        counts = await cluster.count("team")
        return counts.get("Pod") == 3 and counts.get("ReplicaSet") == 1

    await wait_for(pods_made, "the Deployment's pods")
    await api.delete("ns", "", "team")

    async def only_the_running_pod_left() -> bool:
        ns = await cluster.namespace()
        conditions = {c.type: c for c in ns.status.conditions} if ns is not None else {}
        remaining = conditions.get("NamespaceContentRemaining")
        return (
            await cluster.count("team") == {"Pod": 1}
            and remaining is not None
            and remaining.message == "Some resources are remaining: pods. has 1 resource instances"
        )

    await wait_for(only_the_running_pod_left, "everything but the pod its node is stopping to go")
    marked = await cluster.namespace()
    assert marked is not None and marked.status.phase == "Terminating"
    stopping = await api.find(by_kind("Pod"), "team", "bare")
    assert stopping is not None and meta(stopping).HasField("deletion_timestamp")
    await api.remove(stopping)  # its node confirms the containers stopped

    async def namespace_gone() -> bool:
        return await cluster.namespace() is None

    await wait_for(namespace_gone, "the namespace to go")
    assert await cluster.count("team") == {}
    other = await cluster.count("other")
    assert other.get("Deployment") == 1 and other.get("Pod") == 2


def test_the_conditions_say_what_is_left_in_kubernetes_words() -> None:
    ns = namespace_pb2.Namespace()
    ns.metadata.name = "team"
    at = datetime(2026, 12, 7, 12, 0, 0, 500_000, tzinfo=UTC)
    left = plan_namespace(ns, {by_kind("Pod"): 2, by_kind("Deployment"): 1}, ['pods "x": boom'], at)
    assert not left.finalize
    conditions = {c.type: c for c in left.status.conditions}
    remaining = conditions["NamespaceContentRemaining"]
    assert (remaining.status, remaining.reason) == ("True", "SomeResourcesRemain")
    assert remaining.message == (
        "Some resources are remaining: deployments.apps has 1 resource instances, pods. has 2 resource instances"
    )
    assert remaining.last_transition_time.ToDatetime(tzinfo=UTC) == at.replace(microsecond=0)
    failure = conditions["NamespaceDeletionContentFailure"]
    assert (failure.status, failure.reason) == ("True", "ContentDeletionFailed")
    assert failure.message == 'Failed to delete all resource types, 1 remaining: pods "x": boom'
    done = plan_namespace(ns, {}, [], at)
    assert done.finalize
    assert {c.type: c.reason for c in done.status.conditions} == {
        "NamespaceDeletionContentFailure": "ContentDeleted",
        "NamespaceContentRemaining": "ContentRemoved",
    }
