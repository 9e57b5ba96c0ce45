"""Which nodes the node lifecycle controller looks at again for a cache event:
a pod's change only matters to a node that is not Ready or carries a
NoExecute taint (or that the cache does not know)."""

from __future__ import annotations

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.nodelifecycle.controller import NodeLifecycleController
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind
from tests.unit.controllers.lifecycle_builders import node, pod

NODES = {
    "ready": node("ready"),
    "cordoned": node("cordoned", taints=(("node.kubernetes.io/unschedulable", "NoSchedule", None),)),
    "draining": node("draining", taints=(("maintenance", "NoExecute", 0),)),
    "not-ready": node("not-ready", ready="False"),
    "unknown": node("unknown", ready="Unknown"),
    "new": node("new", ready=None),
}


def controller() -> NodeLifecycleController:
    """A controller bound to caches holding NODES (not running: nothing is read from the store)."""
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    c = NodeLifecycleController(api, EventRecorder(api, "node-lifecycle-controller"))
    nodes, pods = Informer(objects, by_kind("Node")), Informer(objects, by_kind("Pod"))
    nodes.items.update(NODES)
    c.bind({"Node": nodes, "Pod": pods}, WorkQueue())
    return c


def pod_event(node_name: str, *, moved_from: str | None = None, change: Change = Change.MODIFIED) -> CacheEvent:
    obj = pod("p1", node_name=node_name)
    prev: pod_pb2.Pod | None = None
    if moved_from is not None:
        prev = pod("p1", node_name=moved_from)
    return CacheEvent(change, obj, prev, 7)


@pytest.mark.parametrize(
    ("event", "keys"),
    [
        pytest.param(pod_event("ready"), [], id="ready-node"),
        pytest.param(pod_event("ready", change=Change.ADDED), [], id="added-on-a-ready-node"),
        pytest.param(pod_event("ready", change=Change.DELETED), [], id="deleted-on-a-ready-node"),
        pytest.param(pod_event("cordoned"), [], id="ready-node-with-a-no-schedule-taint"),
        pytest.param(pod_event("draining"), ["draining"], id="ready-node-with-a-no-execute-taint"),
        pytest.param(pod_event("not-ready"), ["not-ready"], id="not-ready-node"),
        pytest.param(pod_event("unknown"), ["unknown"], id="unknown-node"),
        pytest.param(pod_event("new"), ["new"], id="node-without-a-ready-condition"),
        pytest.param(pod_event("nowhere"), ["nowhere"], id="node-not-in-the-cache"),
        pytest.param(pod_event(""), [], id="unbound-pod"),
        pytest.param(pod_event("ready", moved_from="not-ready"), ["not-ready"], id="moved-off-a-not-ready-node"),
        pytest.param(pod_event("unknown", moved_from="not-ready"), ["not-ready", "unknown"], id="between-two"),
    ],
)
def test_pod_changes_matter_only_to_nodes_whose_plan_they_can_change(event: CacheEvent, keys: list[str]) -> None:
    assert list(controller().keys_for("Pod", event)) == keys


def test_node_changes_always_queue_the_node() -> None:
    event = CacheEvent(Change.MODIFIED, NODES["ready"], NODES["ready"], 7)
    assert list(controller().keys_for("Node", event)) == ["ready"]


def lease_event(name: str, namespace: str = "kube-node-lease", change: Change = Change.MODIFIED) -> CacheEvent:
    from protos.corral.v1 import coordination_pb2

    lease = coordination_pb2.Lease()
    lease.metadata.name, lease.metadata.namespace = name, namespace
    return CacheEvent(change, lease, None, 7)


@pytest.mark.parametrize(
    ("event", "keys"),
    [
        pytest.param(lease_event("ready"), [], id="renewal-of-a-ready-node-waits-for-its-deadline"),
        pytest.param(lease_event("unknown"), ["unknown"], id="renewal-of-an-unknown-node"),
        pytest.param(lease_event("draining"), ["draining"], id="renewal-of-a-no-execute-tainted-node"),
        pytest.param(lease_event("unknown", namespace="default"), [], id="a-users-lease"),
        pytest.param(lease_event("unknown", change=Change.DELETED), [], id="deleted"),
    ],
)
def test_lease_renewals_queue_only_nodes_that_do_not_look_healthy(event: CacheEvent, keys: list[str]) -> None:
    assert list(controller().keys_for("Lease", event)) == keys
