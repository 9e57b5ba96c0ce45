"""The volume controller's decisions: binding, provisioning, reclaim."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.controllers.volumes.reconcile import WAITING, Consumer, best_match, plan_claim, plan_volume
from protos import storage as st
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NODE = Consumer("n1", {}, "/data/storage")


def claim(
    size: str = "1Gi", *, modes: tuple[str, ...] = (st.RWO,), class_name: str = ""
) -> storage_pb2.PersistentVolumeClaim:
    c = storage_pb2.PersistentVolumeClaim(metadata=meta_pb2.ObjectMeta(name="data", namespace="default", uid="c-uid"))
    c.spec.access_modes.extend(modes)
    c.spec.resources.requests["storage"] = size
    c.spec.storage_class_name = class_name
    c.status.phase = st.PENDING
    return c


def volume(
    name: str, size: str, *, modes: tuple[str, ...] = (st.RWO,), node: str = "", labels: dict[str, str] | None = None
) -> storage_pb2.PersistentVolume:
    v = storage_pb2.PersistentVolume(metadata=meta_pb2.ObjectMeta(name=name, uid=f"{name}-uid", labels=labels or {}))
    v.spec.capacity["storage"] = size
    v.spec.access_modes.extend(modes)
    v.spec.host_path.path = f"/srv/{name}"
    v.spec.persistent_volume_reclaim_policy = st.RETAIN
    if node:
        term = v.spec.node_affinity.required.node_selector_terms.add()
        term.match_expressions.add(key="kubernetes.io/hostname", operator="In", values=[node])
    v.status.phase = st.AVAILABLE
    return v


def wffc(provisioner: str = st.LOCAL_PATH_PROVISIONER) -> storage_pb2.StorageClass:
    sc = st.default_class()
    sc.provisioner = provisioner
    return sc


@pytest.mark.parametrize(
    ("volumes", "expected"),
    [
        pytest.param(
            [volume("big", "10Gi"), volume("small", "2Gi"), volume("tiny", "500Mi")], "small", id="smallest-that-fits"
        ),
        pytest.param([volume("rox", "5Gi", modes=(st.ROX,))], None, id="access-modes"),
        pytest.param([volume("both", "5Gi", modes=(st.RWO, st.ROX))], "both", id="superset-of-modes"),
        pytest.param([volume("tiny", "500Mi")], None, id="too-small"),
    ],
)
def test_the_binder_picks_the_smallest_matching_volume(
    volumes: list[storage_pb2.PersistentVolume], expected: str | None
) -> None:
    found = best_match(claim(), volumes)
    assert (found.metadata.name if found else None) == expected


def test_the_binder_honours_class_selector_and_node() -> None:
    c = claim()
    c.spec.selector.match_labels["disk"] = "ssd"
    classed = volume("classed", "5Gi", labels={"disk": "ssd"})
    classed.spec.storage_class_name = "fast"
    other = volume("hdd", "5Gi", labels={"disk": "hdd"})
    there = volume("there", "5Gi", labels={"disk": "ssd"}, node="n2")
    here = volume("here", "5Gi", labels={"disk": "ssd"}, node="n1")
    assert best_match(c, [classed, other, there]) is not None  # no node asked: "there" fits
    found = best_match(c, [classed, other, there, here], NODE)
    assert found is not None and found.metadata.name == "here"


def test_an_immediate_claim_binds_volume_first_then_claim() -> None:
    plan = plan_claim(claim(), volumes=[volume("pv1", "5Gi")], classes={}, users=[], consumer=None, now=NOW)
    assert plan.bind_volume is not None and plan.bind_volume.spec.claim_ref.uid == "c-uid"
    assert plan.bind_volume.status.phase == st.BOUND
    assert plan.claim is not None and plan.claim.spec.volume_name == "pv1" and plan.claim.status.phase == st.BOUND
    assert plan.claim.status.capacity["storage"] == "5Gi"


def test_a_wait_for_first_consumer_claim_waits_then_provisions_on_the_consumers_node() -> None:
    c = claim(class_name=st.DEFAULT_CLASS_NAME)
    classes = {st.DEFAULT_CLASS_NAME: wffc()}
    waiting = plan_claim(c, volumes=[], classes=classes, users=[], consumer=None, now=NOW)
    assert [e.message for e in waiting.events] == [WAITING] and waiting.create is None
    user = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace="default"))
    made = plan_claim(c, volumes=[], classes=classes, users=[user], consumer=NODE, now=NOW).create
    assert made is not None
    assert made.metadata.name == "pvc-c-uid"
    assert made.spec.host_path.path == "/data/storage/pvc-c-uid_default_data"
    assert st.volume_node(made) == "n1"
    assert made.spec.persistent_volume_reclaim_policy == st.DELETE
    assert made.spec.claim_ref.uid == "c-uid"
    assert made.metadata.annotations[st.PROVISIONED_BY] == st.LOCAL_PATH_PROVISIONER
    # Once it exists, the claim binds to it.
    bound = plan_claim(c, volumes=[made], classes=classes, users=[user], consumer=NODE, now=NOW)
    assert bound.claim is not None and bound.claim.spec.volume_name == "pvc-c-uid"
    assert bound.claim.metadata.annotations[st.SELECTED_NODE] == "n1"


@pytest.mark.parametrize(
    ("class_name", "classes", "consumer", "reason"),
    [
        pytest.param("nosuch", {}, None, "ProvisioningFailed", id="missing-class"),
        pytest.param("", {}, None, "FailedBinding", id="no-class-no-volume"),
        pytest.param("ext", {"ext": wffc("ebs.csi.aws.com")}, NODE, "ExternalProvisioning", id="external"),
        pytest.param("lp", {"lp": wffc()}, Consumer("n1", {}, ""), "Provisioning", id="no-volume-root-yet"),
    ],
)
def test_a_claim_that_cannot_bind_says_why(
    class_name: str, classes: dict[str, storage_pb2.StorageClass], consumer: Consumer | None, reason: str
) -> None:
    user = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace="default"))
    c = claim(class_name=class_name)
    plan = plan_claim(c, volumes=[], classes=classes, users=[user], consumer=consumer, now=NOW)
    assert [e.reason for e in plan.events] == [reason]
    assert plan.create is None and plan.claim is None


@pytest.mark.parametrize(
    ("users", "deleted"),
    [pytest.param(["web"], False, id="in-use"), pytest.param([], True, id="unused")],
)
def test_a_terminating_claim_goes_once_no_pod_uses_it(users: list[str], deleted: bool) -> None:
    c = claim()
    c.metadata.deletion_timestamp.FromDatetime(NOW)
    pods = [pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=n)) for n in users]
    assert plan_claim(c, volumes=[], classes={}, users=pods, consumer=None, now=NOW).delete is deleted


def _bound_volume(policy: str, *, provisioned: bool) -> storage_pb2.PersistentVolume:
    v = volume("pv1", "1Gi", node="n1")
    v.spec.persistent_volume_reclaim_policy = policy
    v.spec.claim_ref.namespace, v.spec.claim_ref.name, v.spec.claim_ref.uid = "default", "data", "c-uid"
    v.status.phase = st.BOUND
    if provisioned:
        v.metadata.annotations[st.PROVISIONED_BY] = st.LOCAL_PATH_PROVISIONER
    return v


@pytest.mark.parametrize(
    ("policy", "provisioned", "phase", "deletes"),
    [
        pytest.param(st.DELETE, True, st.RELEASED, True, id="delete-provisioned"),
        pytest.param(st.RETAIN, True, st.RELEASED, False, id="retain"),
        pytest.param(st.DELETE, False, st.FAILED, False, id="delete-made-by-hand"),
    ],
)
def test_a_volume_whose_claim_is_gone_is_reclaimed_by_its_policy(
    policy: str, provisioned: bool, phase: str, deletes: bool
) -> None:
    v = _bound_volume(policy, provisioned=provisioned)
    released = plan_volume(v, None, now=NOW).status
    assert released is not None and released.status.phase == st.RELEASED
    final = plan_volume(released, None, now=NOW).status or released
    assert final.status.phase == phase
    assert st.pending_deletion(final) is deletes


def test_a_volume_bound_to_a_live_claim_stays_and_a_new_one_becomes_available() -> None:
    v = _bound_volume(st.DELETE, provisioned=True)
    live = claim()
    assert plan_volume(v, live, now=NOW).status is None
    fresh = volume("pv2", "1Gi")
    fresh.status.phase = st.PENDING
    made = plan_volume(fresh, None, now=NOW).status
    assert made is not None and made.status.phase == st.AVAILABLE


def test_the_beta_class_annotation_is_the_claims_class() -> None:
    c = claim()
    c.spec.ClearField("storage_class_name")
    c.metadata.annotations[st.BETA_CLASS_ANNOTATION] = "nosuch"
    plan = plan_claim(c, volumes=[], classes={"local-path": wffc()}, users=[], consumer=None, now=NOW)
    assert plan.claim is None  # no retroactive default: it names a class
    assert [e.message for e in plan.events] == ['storageclass.storage.k8s.io "nosuch" not found']
