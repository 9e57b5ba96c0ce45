"""Which updates wake the garbage collector: only those that change a dependent's ownerReferences
or its deletion state (or a terminating pod's node). A Lease renewal (the Lease is owned by its
Node) or a pod's status report does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Change, Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import coordination_pb2, meta_pb2, pod_pb2
from protos.kinds import by_kind

NODE_OWNER = meta_pb2.OwnerReference(api_version="v1", kind="Node", name="n1", uid="node-uid")
RS_OWNER = meta_pb2.OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="web", uid="rs-uid")
OTHER_OWNER = meta_pb2.OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="web-2", uid="rs-2-uid")


def collector() -> GarbageCollector:
    objects = ObjectStore(MemoryStore())
    gc = GarbageCollector(ObjectApi(objects))
    gc.bind({kind: Informer(objects, by_kind(kind)) for kind in gc.kinds}, WorkQueue())
    return gc


def lease(renewed: int, *, owned: bool = True) -> coordination_pb2.Lease:
    obj = coordination_pb2.Lease()
    obj.metadata.namespace, obj.metadata.name = "kube-node-lease", "n1"
    if owned:
        obj.metadata.owner_references.append(NODE_OWNER)
    obj.spec.renew_time.seconds = renewed
    return obj


def pod(
    *,
    phase: str = "Running",
    node: str = "n1",
    terminating: bool = False,
    owners: tuple[meta_pb2.OwnerReference, ...] = (RS_OWNER,),
) -> pod_pb2.Pod:
    obj = pod_pb2.Pod()
    obj.metadata.namespace, obj.metadata.name = "default", "web-1"
    obj.metadata.owner_references.extend(owners)
    obj.spec.node_name = node
    obj.status.phase = phase
    if terminating:
        obj.metadata.deletion_timestamp.seconds = 100
    return obj


def update(kind: str, prev: Callable[[], Message], obj: Callable[[], Message]) -> tuple[str, CacheEvent]:
    return kind, CacheEvent(Change.MODIFIED, obj(), prev(), 7)


@pytest.mark.parametrize(
    ("kind_event", "keys"),
    [
        pytest.param(update("Lease", lambda: lease(1), lambda: lease(2)), [], id="lease-renewal"),
        pytest.param(
            update("Lease", lambda: lease(1, owned=False), lambda: lease(2)),
            ["Lease/kube-node-lease/n1"],
            id="lease-gets-its-owner",
        ),
        pytest.param(update("Pod", lambda: pod(phase="Pending"), lambda: pod()), [], id="pod-status-report"),
        pytest.param(
            update("Pod", lambda: pod(), lambda: pod(owners=(OTHER_OWNER,))),
            ["Pod/default/web-1"],
            id="pod-owner-replaced",
        ),
        pytest.param(
            update("Pod", lambda: pod(), lambda: pod(terminating=True)),
            ["Pod/default/web-1"],
            id="pod-starts-terminating",
        ),
        pytest.param(
            update("Pod", lambda: pod(terminating=True), lambda: pod(terminating=True, phase="Succeeded")),
            [],
            id="terminating-pod-status-report",
        ),
        pytest.param(
            update("Pod", lambda: pod(terminating=True, node=""), lambda: pod(terminating=True)),
            ["Pod/default/web-1"],
            id="terminating-pod-bound",
        ),
    ],
)
def test_only_updates_the_collector_looks_at_queue_a_sync(kind_event: tuple[str, CacheEvent], keys: list[str]) -> None:
    kind, event = kind_event
    assert list(collector().keys_for(kind, event)) == keys


def test_a_new_lease_is_looked_at() -> None:
    assert list(collector().keys_for("Lease", CacheEvent(Change.ADDED, lease(1), None, 7))) == [
        "Lease/kube-node-lease/n1"
    ]
