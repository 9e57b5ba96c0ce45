"""The VolumeBinding filter and the volume needs it reads."""

from __future__ import annotations

import pytest

from controlplane.scheduler.plugins.volume_binding import VolumeBinding
from controlplane.scheduler.snapshot import VolumeNeeds
from controlplane.scheduler.volumes import UNBOUND_IMMEDIATE, Users, on_node, volume_needs
from protos import storage as st
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2
from tests.unit.scheduler.builders import GI, node, pod


def _claim(
    name: str, *, class_name: str | None = None, volume: str = "", rwop: bool = False
) -> storage_pb2.PersistentVolumeClaim:
    c = storage_pb2.PersistentVolumeClaim(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    c.spec.access_modes.append(st.RWOP if rwop else st.RWO)
    c.spec.resources.requests["storage"] = "2Gi"
    if class_name is not None:
        c.spec.storage_class_name = class_name
    c.spec.volume_name = volume
    return c


def _volume(name: str, node_name: str) -> storage_pb2.PersistentVolume:
    v = storage_pb2.PersistentVolume(metadata=meta_pb2.ObjectMeta(name=name))
    term = v.spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key="kubernetes.io/hostname", operator="In", values=[node_name])
    return v


def _pod(claim_name: str, uid: str = "me") -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace="default", uid=uid))
    p.spec.volumes.add(name="data").persistent_volume_claim.claim_name = claim_name
    return p


def _anywhere() -> storage_pb2.PersistentVolume:
    return storage_pb2.PersistentVolume(metadata=meta_pb2.ObjectMeta(name="pv2"))


CLAIMS = {
    "static": _claim("static", class_name="static"),
    "shared-rwo": _claim("shared-rwo", class_name="", volume="pv2"),
    "bound": _claim("bound", class_name="local-path", volume="pv1"),
    "wffc": _claim("wffc", class_name="local-path"),
    "immediate": _claim("immediate", class_name="now"),
    "no-class": _claim("no-class", class_name=""),
    "lost-class": _claim("lost-class", class_name="nosuch"),
    "dangling": _claim("dangling", class_name="local-path", volume="gone"),
    "rwop": _claim("rwop", class_name="local-path", rwop=True),
}
STATIC = storage_pb2.StorageClass(
    provisioner="kubernetes.io/no-provisioner", volume_binding_mode=st.WAIT_FOR_FIRST_CONSUMER
)
CLASSES = {
    "local-path": st.default_class(),
    "now": storage_pb2.StorageClass(volume_binding_mode=st.IMMEDIATE),
    "static": STATIC,
}
VOLUMES = {"pv1": _volume("pv1", "n1"), "pv2": _anywhere()}


def needs(
    claim_name: str, users: Users | None = None, candidates: list[storage_pb2.PersistentVolume] | None = None
) -> VolumeNeeds:
    return volume_needs(
        _pod(claim_name), lambda ns, n: CLAIMS.get(n), VOLUMES.get, CLASSES.get, users or {}, lambda c: candidates or []
    )


def test_a_claim_of_a_class_without_provisioner_goes_where_a_fitting_volume_is() -> None:
    reason = 'didn\'t find available persistent volumes to bind (persistentvolumeclaim "static")'
    assert needs("static") == VolumeNeeds(problem=reason)
    found = needs("static", candidates=[_volume("a", "n1"), _volume("b", "n2")])
    assert found.node_terms == ((reason, on_node("n1") + on_node("n2")),)
    binding = VolumeBinding()
    assert binding.filter(pod(volumes=found), node("n2")).ok
    assert binding.filter(pod(volumes=found), node("n3")).reasons == (f"had volume node affinity conflict: {reason}",)


@pytest.mark.parametrize(
    ("claim_name", "users", "expected"),
    [
        pytest.param("missing", None, VolumeNeeds(problem='persistentvolumeclaim "missing" not found'), id="missing"),
        pytest.param("immediate", None, VolumeNeeds(problem=UNBOUND_IMMEDIATE), id="unbound-immediate"),
        pytest.param("no-class", None, VolumeNeeds(problem=UNBOUND_IMMEDIATE), id="no-class"),
        pytest.param(
            "lost-class", None, VolumeNeeds(problem='storageclass.storage.k8s.io "nosuch" not found'), id="lost-class"
        ),
        pytest.param("wffc", None, VolumeNeeds(storage_bytes=2 * GI), id="wffc-anywhere-that-fits"),
        pytest.param(
            "wffc",
            {("default", "wffc"): [("n2", "other")]},
            VolumeNeeds(
                node_terms=(('persistentvolumeclaim "wffc" is being provisioned on node "n2"', on_node("n2")),)
            ),
            id="wffc-follows-its-first-pod",
        ),
        pytest.param(
            "rwop",
            {("default", "rwop"): [("n2", "other")]},
            VolumeNeeds(problem='persistentvolumeclaim "rwop" is ReadWriteOncePod and another pod uses it'),
            id="rwop-taken",
        ),
        pytest.param("shared-rwo", None, VolumeNeeds(), id="rwo-without-affinity-anywhere"),
        pytest.param(
            "shared-rwo",
            {("default", "shared-rwo"): [("n3", "other")]},
            VolumeNeeds(
                node_terms=(
                    ('persistentvolumeclaim "shared-rwo" is ReadWriteOnce and in use on node "n3"', on_node("n3")),
                )
            ),
            id="rwo-without-affinity-follows-its-user",
        ),
        pytest.param(
            "dangling",
            None,
            VolumeNeeds(problem='persistentvolumeclaim "dangling" is bound to persistentvolume "gone", which is gone'),
            id="volume-gone",
        ),
    ],
)
def test_volume_needs(claim_name: str, users: Users | None, expected: VolumeNeeds) -> None:
    assert needs(claim_name, users) == expected


@pytest.mark.parametrize(
    ("claim_name", "node_name", "free", "reason"),
    [
        pytest.param("bound", "n1", None, None, id="the-volumes-node"),
        pytest.param(
            "bound",
            "n2",
            None,
            'had volume node affinity conflict: persistentvolumeclaim "bound" is on node "n1"',
            id="another-node",
        ),
        pytest.param("wffc", "n2", 3 * GI, None, id="room"),
        pytest.param("wffc", "n2", 1 * GI, "did not have enough free storage", id="no-room"),
        pytest.param("wffc", "n2", None, None, id="free-disk-not-reported"),
        pytest.param("missing", "n1", None, 'persistentvolumeclaim "missing" not found', id="problem"),
    ],
)
def test_the_filter(claim_name: str, node_name: str, free: int | None, reason: str | None) -> None:
    status = VolumeBinding().filter(pod(volumes=needs(claim_name)), node(node_name, storage_free=free))
    assert status.reasons == ((reason,) if reason else ())
