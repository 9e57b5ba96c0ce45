"""Indexes keyed by node or owner uid hold nothing for a node or owner with no
objects left: after pods come and go (churn), their entries are gone, so the
control plane's memory does not grow with every node and owner ever seen.
Entries are counted, not bytes."""

from __future__ import annotations

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.index import discard_from
from controlplane.controllers.nodelifecycle.controller import NodeLifecycleController
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import meta_pb2, pod_pb2
from protos.kinds import by_kind


def pod(name: str, node: str = "", owner: str = "") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.spec.node_name = node
    if owner:
        p.metadata.owner_references.append(meta_pb2.OwnerReference(kind="ReplicaSet", uid=owner, controller=True))
    return p


def churn(informer: Informer, rounds: int = 3, pods: int = 20, nodes: int = 5) -> None:
    """Pods created on nodes under owners, moved, then deleted, a few times, as events."""
    for r in range(rounds):
        made = [pod(f"p{r}-{i}", f"n{i % nodes}", f"rs-{r}-{i % 2}") for i in range(pods)]
        for p in made:
            informer._emit(CacheEvent(Change.ADDED, p, None, 1))
        for i, p in enumerate(made):
            moved = pod_pb2.Pod()
            moved.CopyFrom(p)
            moved.spec.node_name = f"n{(i + 1) % nodes}"
            informer._emit(CacheEvent(Change.MODIFIED, moved, p, 2))
            informer._emit(CacheEvent(Change.DELETED, moved, moved, 3))


@pytest.fixture
def objects() -> ObjectStore:
    return ObjectStore(MemoryStore())


def test_node_lifecycle_keeps_no_set_for_a_node_without_pods(objects: ObjectStore) -> None:
    api = ObjectApi(objects)
    controller = NodeLifecycleController(api, EventRecorder(api, "node-lifecycle-controller"))
    pods = Informer(objects, by_kind("Pod"))
    controller.bind({"Node": Informer(objects, by_kind("Node")), "Pod": pods}, WorkQueue())
    pods._emit(CacheEvent(Change.ADDED, pod("kept", "n9"), None, 1))
    churn(pods)
    assert controller._pods_by_node == {"n9": {"default/kept"}}
    assert controller._node_of_pod == {"default/kept": "n9"}


def test_garbage_collector_keeps_no_set_for_an_owner_without_dependents(objects: ObjectStore) -> None:
    gc = GarbageCollector(ObjectApi(objects))
    informers = {kind: Informer(objects, by_kind(kind)) for kind in gc.kinds}
    gc.bind(informers, WorkQueue())
    informers["Pod"]._emit(CacheEvent(Change.ADDED, pod("kept", owner="rs-kept"), None, 1))
    churn(informers["Pod"])
    assert gc._dependents == {"rs-kept": {"Pod/default/kept"}}
    assert list(gc._owners_of) == ["Pod/default/kept"]


@pytest.mark.parametrize(
    ("table", "bucket", "value", "after"),
    [
        pytest.param({"a": {1, 2}}, "a", 1, {"a": {2}}, id="others-left"),
        pytest.param({"a": {1}}, "a", 1, {}, id="last-one-removes-the-bucket"),
        pytest.param({"a": {1}}, "b", 1, {"a": {1}}, id="unknown-bucket"),
        pytest.param({"a": {1}}, "a", 2, {"a": {1}}, id="unknown-value"),
    ],
)
def test_discard_from(table: dict[str, set[int]], bucket: str, value: int, after: dict[str, set[int]]) -> None:
    discard_from(table, bucket, value)
    assert table == after
