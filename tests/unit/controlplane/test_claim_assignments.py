"""A node's copy of a pod gets its claims' directories (only on the volume's node); a node's deletions."""

from __future__ import annotations

import json

import pytest

from controlplane.nodeapi.claims import deletions, resolve_claims
from protos import storage as st
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2
from protos.wellknown import CONFIG_ERRORS


def _volume(name: str, node: str, *, phase: str = st.BOUND, policy: str = st.DELETE) -> storage_pb2.PersistentVolume:
    v = storage_pb2.PersistentVolume(metadata=meta_pb2.ObjectMeta(name=name, uid=f"{name}-uid"))
    v.metadata.annotations[st.PROVISIONED_BY] = st.LOCAL_PATH_PROVISIONER
    v.spec.host_path.path = f"/data/storage/{name}"
    v.spec.persistent_volume_reclaim_policy = policy
    term = v.spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key="kubernetes.io/hostname", operator="In", values=[node])
    v.status.phase = phase
    return v


def _claim(volume: str) -> storage_pb2.PersistentVolumeClaim:
    c = storage_pb2.PersistentVolumeClaim(metadata=meta_pb2.ObjectMeta(name="data", namespace="default"))
    c.spec.volume_name = volume
    c.status.phase = st.BOUND if volume else st.PENDING
    return c


def _pod(annotation: str = "") -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace="default"))
    if annotation:
        p.metadata.annotations[st.CLAIM_PATHS] = annotation
    c = p.spec.containers.add(name="main", image="busybox:1")
    c.volume_mounts.add(name="data", mount_path="/data")
    p.spec.volumes.add(name="data").persistent_volume_claim.claim_name = "data"
    return p


VOLUMES = {"pv1": _volume("pv1", "n1")}


@pytest.mark.parametrize(
    ("claim", "node", "paths", "error"),
    [
        pytest.param(_claim("pv1"), "n1", {"data": "/data/storage/pv1"}, None, id="bound-here"),
        pytest.param(
            _claim("pv1"), "n2", None, 'persistentvolumeclaim "data" is on node "n1", not on this node', id="elsewhere"
        ),
        pytest.param(_claim(""), "n1", None, 'persistentvolumeclaim "data" is not bound yet', id="unbound"),
        pytest.param(None, "n1", None, 'persistentvolumeclaim "data" not found', id="missing"),
    ],
)
def test_a_pods_claims_resolve_only_on_the_volumes_node(
    claim: storage_pb2.PersistentVolumeClaim | None, node: str, paths: dict[str, str] | None, error: str | None
) -> None:
    sent, _ = resolve_claims(_pod('{"data": "/etc"}'), node, lambda ns, n: claim, VOLUMES.get)
    annotations = sent.metadata.annotations
    assert json.loads(annotations[st.CLAIM_PATHS]) == paths if paths else st.CLAIM_PATHS not in annotations
    assert (json.loads(annotations[CONFIG_ERRORS]) == {"main": error}) if error else CONFIG_ERRORS not in annotations


def test_a_user_written_claim_paths_annotation_is_never_sent() -> None:
    plain = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", annotations={st.CLAIM_PATHS: '{"x": "/"}'}))
    sent, _ = resolve_claims(plain, "n1", lambda ns, n: None, VOLUMES.get)
    assert st.CLAIM_PATHS not in sent.metadata.annotations


def test_a_node_deletes_only_its_own_released_delete_volumes() -> None:
    volumes = [
        _volume("mine", "n1", phase=st.RELEASED),
        _volume("kept", "n1", phase=st.RELEASED, policy=st.RETAIN),
        _volume("bound", "n1"),
        _volume("theirs", "n2", phase=st.RELEASED),
    ]
    assert [(d.name, d.path) for d in deletions("n1", volumes)] == [("mine", "/data/storage/mine")]
