"""Which cache events make the volume controller look at which claims and volumes."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.controllers.volumes.controller import VolumeController
from controlplane.informer import CacheEvent, Informer
from controlplane.store.objects import Change
from protos import storage as st
from protos.corral.v1 import meta_pb2, node_pb2, pod_pb2, storage_pb2
from protos.kinds import by_kind


def _node(root: str | None) -> node_pb2.Node:
    n = node_pb2.Node(metadata=meta_pb2.ObjectMeta(name="n1"))
    if root is not None:
        n.metadata.annotations[st.VOLUME_ROOT] = root
    return n


def _controller() -> VolumeController:
    pending = storage_pb2.PersistentVolumeClaim(metadata=meta_pb2.ObjectMeta(name="data", namespace="default"))
    informers: dict[str, Any] = {k: Informer(None, by_kind(k)) for k in (  # type: ignore[arg-type]
        "PersistentVolumeClaim", "PersistentVolume", "StorageClass", "Pod", "Node"
    )}  # fmt: skip
    informers["PersistentVolumeClaim"].items["default/data"] = pending
    controller = VolumeController(None, None)  # type: ignore[arg-type]
    controller.bind(informers, None)  # type: ignore[arg-type]
    return controller


@pytest.mark.parametrize(
    ("before", "after", "keys"),
    [
        pytest.param(None, "/srv", ["claim/default/data"], id="root-reported"),
        pytest.param("/srv", "/srv", [], id="heartbeat"),
        pytest.param("/srv", "/data", ["claim/default/data"], id="root-moved"),
        pytest.param(None, None, [], id="no-root"),
    ],
)
def test_a_node_wakes_pending_claims_only_when_its_volume_root_changes(
    before: str | None, after: str | None, keys: list[str]
) -> None:
    event = CacheEvent(Change.MODIFIED, _node(after), _node(before), 2)
    assert list(_controller().keys_for("Node", event)) == keys


def test_a_pod_wakes_its_claims_and_a_claim_its_volume() -> None:
    controller = _controller()
    pod = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace="default"))
    pod.spec.volumes.add(name="v").persistent_volume_claim.claim_name = "data"
    assert list(controller.keys_for("Pod", CacheEvent(Change.ADDED, pod, None, 2))) == ["claim/default/data"]
    bound = storage_pb2.PersistentVolumeClaim(metadata=meta_pb2.ObjectMeta(name="data", namespace="default"))
    bound.spec.volume_name = "pvc-1"
    keys = controller.keys_for("PersistentVolumeClaim", CacheEvent(Change.DELETED, bound, None, 3))
    assert list(keys) == ["claim/default/data", "volume/pvc-1"]
