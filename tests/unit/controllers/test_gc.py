"""The garbage collector's pure core: who lost their owners, which Events expired."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from google.protobuf.message import Message

from controlplane.controllers.gc.reconcile import OwnerKey, event_expires_at, is_orphan, is_stranded, owner_keys
from protos.corral.v1 import event_pb2, meta_pb2, pod_pb2
from tests.unit.controllers.lifecycle_builders import at, event, owner, pod, replica_set

DEPLOY = OwnerKey("Deployment", "default", "web")
RS = OwnerKey("ReplicaSet", "default", "web-abc")
HOUR = timedelta(hours=1)


def deployment_ref(uid: str = "d-uid", *, controller: bool = True) -> meta_pb2.OwnerReference:
    return owner("Deployment", "web", uid, controller=controller)


@pytest.mark.parametrize(
    ("owners", "live", "expected"),
    [
        pytest.param((), {}, False, id="no-owners-never-garbage"),
        pytest.param((deployment_ref(),), {DEPLOY: "d-uid"}, False, id="owner-exists"),
        pytest.param((deployment_ref(),), {}, True, id="owner-gone"),
        pytest.param((deployment_ref(),), {DEPLOY: "other-uid"}, True, id="owner-recreated-with-new-uid"),
        pytest.param(
            (deployment_ref(), owner("ReplicaSet", "web-abc", "rs-uid", controller=False)),
            {RS: "rs-uid"},
            False,
            id="another-owner-still-exists",
        ),
        pytest.param(
            (deployment_ref(), owner("ReplicaSet", "web-abc", "rs-uid", controller=False)),
            {},
            True,
            id="every-owner-gone",
        ),
        pytest.param((owner("Workflow", "nightly", "wf-uid"),), {}, False, id="unknown-owner-kind-kept"),
        pytest.param(
            (deployment_ref(), owner("Workflow", "nightly", "wf-uid")), {}, False, id="unknown-kind-among-others-kept"
        ),
    ],
)
def test_is_orphan(owners: tuple[meta_pb2.OwnerReference, ...], live: dict[OwnerKey, str], expected: bool) -> None:
    assert is_orphan(replica_set("web-abc", "rs-uid", owners=owners), live) is expected


def test_owner_keys_use_the_dependents_namespace_for_namespaced_owners() -> None:
    rs = replica_set("web-abc", "rs-uid", namespace="shop", owners=(deployment_ref(),))
    assert owner_keys(rs) == [OwnerKey("Deployment", "shop", "web")]


def test_owner_keys_of_cluster_scoped_owners_have_no_namespace() -> None:
    p = pod(owned=False)
    p.metadata.owner_references.append(meta_pb2.OwnerReference(kind="Node", name="n1", uid="n-uid"))
    assert owner_keys(p) == [OwnerKey("Node", "", "n1")]
    assert not is_orphan(p, {OwnerKey("Node", "", "n1"): "n-uid"})


def test_owner_keys_mark_unknown_kinds() -> None:
    assert owner_keys(replica_set("x", "u", owners=(owner("Workflow", "w", "w-uid"),))) == [None]


@pytest.mark.parametrize(
    ("e", "expected"),
    [
        pytest.param(event("a", last=100, first=0, created=0), at(100) + HOUR, id="from-last-timestamp"),
        pytest.param(event("a", last=None, first=50, created=0), at(50) + HOUR, id="from-first-timestamp"),
        pytest.param(event("a", last=None, created=20), at(20) + HOUR, id="from-creation"),
        pytest.param(event("a", last=None), None, id="no-time-at-all"),
    ],
)
def test_event_expiry(e: event_pb2.Event, expected: datetime | None) -> None:
    assert event_expires_at(e, HOUR) == expected


def _terminating(node_name: str = "n1") -> pod_pb2.Pod:
    p = pod(node_name=node_name)
    p.metadata.deletion_timestamp.FromDatetime(at(30))
    return p


@pytest.mark.parametrize(
    ("obj", "node_exists", "expected"),
    [
        pytest.param(_terminating(), False, True, id="terminating-on-a-vanished-node"),
        pytest.param(_terminating(), True, False, id="its-node-will-finish-it"),
        pytest.param(pod(), False, False, id="not-terminating"),
        pytest.param(_terminating(node_name=""), False, False, id="unbound"),
        pytest.param(replica_set("web-abc", "rs-uid"), False, False, id="not-a-pod"),
    ],
)
def test_is_stranded(obj: Message, node_exists: bool, expected: bool) -> None:
    assert is_stranded(obj, node_exists=node_exists) is expected
