"""Defaults and validation of claims, volumes and classes: each malformed form refused by field path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.deletion import plan_deletion
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.storage import default_class_name
from controlplane.apiserver.validation import validate, validate_update
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import codec
from protos import storage as st
from protos.corral.v1 import storage_pb2
from protos.kinds import by_kind


def parsed(doc: dict[str, Any]) -> Any:
    info = by_kind(doc["kind"])
    msg, errors = codec.from_dict(doc, info.message)
    assert errors == []
    apply_defaults(info, msg)
    return msg


def causes(doc: dict[str, Any]) -> list[str]:
    msg = parsed(doc)
    return [str(c) for c in validate(by_kind(doc["kind"]), msg)]


def claim(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}, "spec": base}


def volume(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "capacity": {"storage": "5Gi"},
        "accessModes": ["ReadWriteOnce"],
        "hostPath": {"path": "/srv/data"},
    }
    base.update(spec)
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"}, "spec": base}


def storage_class(**fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": "fast"},
        "provisioner": "corral.io/local-path",
        **fields,
    }


HOST_AFFINITY = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}
]}]}}  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(claim(accessModes=[]), "spec.accessModes: required", id="no-access-modes"),
        pytest.param(claim(accessModes=["RWO"]), "spec.accessModes[0]: must be one of", id="unknown-mode"),
        pytest.param(
            claim(accessModes=["ReadWriteOncePod", "ReadWriteOnce"]),
            "spec.accessModes: may not use ReadWriteOncePod with other access modes",
            id="rwop-with-others",
        ),
        pytest.param(claim(resources={}), "spec.resources.requests.storage: required", id="no-size"),
        pytest.param(claim(resources={"requests": {"storage": "0"}}), "must be greater than zero", id="zero-size"),
        pytest.param(
            claim(resources={"requests": {"storage": "1Gi", "cpu": "1"}}),
            "spec.resources.requests.cpu: unknown resource",
            id="other-resource",
        ),
        pytest.param(claim(volumeMode="Block"), 'spec.volumeMode: "Block" is not supported', id="block"),
        pytest.param(
            claim(dataSource={"kind": "PersistentVolumeClaim", "name": "other"}),
            "spec.dataSource: not supported",
            id="data-source",
        ),
        pytest.param(
            claim(dataSourceRef={"kind": "VolumeSnapshot", "name": "snap"}),
            "spec.dataSourceRef: not supported",
            id="data-source-ref",
        ),
        pytest.param(claim(storageClassName="Fast_SSD"), "spec.storageClassName: must be a DNS-1123", id="bad-class"),
        pytest.param(volume(capacity={}), "spec.capacity.storage: required", id="pv-no-capacity"),
        pytest.param(
            volume(persistentVolumeReclaimPolicy="Recycle"),
            'spec.persistentVolumeReclaimPolicy: "Recycle" is deprecated',
            id="recycle",
        ),
        pytest.param(volume(hostPath=None), "spec: must set one volume source", id="pv-no-source"),
        pytest.param(volume(hostPath={"path": "data"}), "spec.hostPath.path: must be an absolute path", id="relative"),
        pytest.param(
            volume(hostPath=None, local={"path": "/srv/x"}), "spec.nodeAffinity: required", id="local-no-affinity"
        ),
        pytest.param(
            volume(local={"path": "/srv/x"}, nodeAffinity=HOST_AFFINITY),
            "spec: must set exactly one of hostPath, local",
            id="two-sources",
        ),
        pytest.param(volume(volumeMode="Block"), 'spec.volumeMode: "Block" is not supported', id="pv-block"),
        pytest.param(storage_class(provisioner=""), "provisioner: required", id="no-provisioner"),
        pytest.param(storage_class(reclaimPolicy="Recycle"), 'reclaimPolicy: "Recycle" is deprecated', id="sc-recycle"),
        pytest.param(storage_class(volumeBindingMode="Later"), "volumeBindingMode: must be one of", id="bad-mode"),
        pytest.param(
            storage_class(parameters={"nodePath": "/x"}), "parameters.nodePath: unknown parameter", id="param"
        ),
    ],
)
def test_malformed_storage_objects_are_refused_with_their_field_path(doc: dict[str, Any], expected: str) -> None:
    found = causes(doc)
    assert any(expected in c for c in found), found


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(claim(), id="claim"),
        pytest.param(claim(storageClassName="", selector={"matchLabels": {"disk": "ssd"}}), id="claim-no-class"),
        pytest.param(volume(), id="host-path-volume"),
        pytest.param(volume(hostPath=None, local={"path": "/srv/x"}, nodeAffinity=HOST_AFFINITY), id="local"),
        pytest.param(storage_class(provisioner="rancher.io/local-path"), id="k3s-class"),
        pytest.param(storage_class(provisioner="ebs.csi.aws.com", parameters={"type": "gp3"}), id="other-class"),
    ],
)
def test_well_formed_storage_objects_pass(doc: dict[str, Any]) -> None:
    assert causes(doc) == []


def test_defaults_are_kubernetes_ones() -> None:
    c, v, sc = parsed(claim()), parsed(volume()), parsed(storage_class())
    assert c.spec.volume_mode == "Filesystem" and not c.spec.HasField("storage_class_name")
    assert v.spec.persistent_volume_reclaim_policy == "Retain" and v.spec.volume_mode == "Filesystem"
    assert sc.reclaim_policy == "Delete" and sc.volume_binding_mode == "Immediate"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(lambda s: s.access_modes.append("ReadOnlyMany"), "spec: is immutable", id="modes"),
        pytest.param(lambda s: s.resources.requests.update(storage="500Mi"), "may not be less", id="shrink"),
        pytest.param(lambda s: s.resources.requests.update(storage="2Gi"), None, id="grow"),
        pytest.param(lambda s: setattr(s, "volume_name", "pv1"), None, id="bind"),
        pytest.param(lambda s: setattr(s, "storage_class_name", "fast"), None, id="class-set-once"),
    ],
)
def test_a_claim_spec_is_immutable_but_for_growth_and_binding(change: Any, expected: str | None) -> None:
    old = parsed(claim())
    new = storage_pb2.PersistentVolumeClaim()
    new.CopyFrom(old)
    change(new.spec)
    found = [str(c) for c in validate_update(by_kind("PersistentVolumeClaim"), old, new)]
    assert (expected is None and found == []) or any(expected in c for c in found if expected), found


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("provisioner", "other.io/x", id="provisioner"),
        pytest.param("reclaim_policy", "Retain", id="reclaim"),
        pytest.param("volume_binding_mode", "WaitForFirstConsumer", id="binding"),
    ],
)
def test_a_class_keeps_its_provisioner_policy_and_binding_mode(field: str, value: str) -> None:
    old = parsed(storage_class())
    new = storage_pb2.StorageClass()
    new.CopyFrom(old)
    setattr(new, field, value)
    assert [c.message for c in validate_update(by_kind("StorageClass"), old, new)] == ["field is immutable"]


def test_the_default_class_is_the_newest_marked_one() -> None:
    old, new, plain = st.default_class(), st.default_class(), storage_pb2.StorageClass()
    old.metadata.name, new.metadata.name, plain.metadata.name = "old", "new", "plain"
    old.metadata.creation_timestamp.seconds, new.metadata.creation_timestamp.seconds = 10, 20
    assert default_class_name([old, new, plain]) == "new"
    assert default_class_name([plain]) is None


@pytest.mark.parametrize(
    ("obj", "in_use", "now_deleted"),
    [
        pytest.param(storage_pb2.PersistentVolumeClaim(), True, False, id="claim-in-use"),
        pytest.param(storage_pb2.PersistentVolumeClaim(), False, True, id="claim-unused"),
        pytest.param(
            storage_pb2.PersistentVolume(status=storage_pb2.PersistentVolumeStatus(phase="Bound")),
            False,
            False,
            id="bound-volume",
        ),
        pytest.param(
            storage_pb2.PersistentVolume(status=storage_pb2.PersistentVolumeStatus(phase="Released")),
            False,
            True,
            id="released-volume",
        ),
    ],
)
def test_claims_in_use_and_bound_volumes_are_only_marked_terminating(obj: Any, in_use: bool, now_deleted: bool) -> None:
    plan = plan_deletion(obj, None, datetime(2026, 12, 7, tzinfo=UTC), in_use=in_use)
    assert plan.now is now_deleted
    if not now_deleted:
        assert plan.update is not None and plan.update.metadata.HasField("deletion_timestamp")


async def test_the_default_class_is_given_at_create_only() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    first = st.default_class()
    await api.create(first)
    pvc = parsed(claim())
    created, _ = await api.apply(pvc)
    assert created.spec.storage_class_name == st.DEFAULT_CLASS_NAME
    second = st.default_class()
    second.metadata.name = "newer"
    await api.create(second)
    again, outcome = await api.apply(parsed(claim()))  # the same manifest, a newer default: unchanged
    assert again.spec.storage_class_name == st.DEFAULT_CLASS_NAME
    assert outcome.value == "unchanged"
    classless = claim(storageClassName="")
    classless["metadata"]["name"] = "classless"
    none = await api.create(parsed(classless))
    assert none.spec.HasField("storage_class_name") and none.spec.storage_class_name == ""
