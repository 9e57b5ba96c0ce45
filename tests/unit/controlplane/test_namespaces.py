"""Namespaces as Kubernetes keeps them: the delete plan (mark Terminating, refuse
while finalizing, delete once finalized), and through ObjectApi: the kubernetes
finalizer, no new content in a Terminating namespace, the immortal namespaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.deletion import STILL_FINALIZING, DeletePlan, plan_deletion
from controlplane.apiserver.handlers import ObjectApi
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import configmap_pb2, namespace_pb2, pod_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def namespace(*, finalizers: tuple[str, ...] = ("kubernetes",), terminating: bool = False) -> namespace_pb2.Namespace:
    ns = namespace_pb2.Namespace()
    ns.metadata.name = "team"
    ns.spec.finalizers.extend(finalizers)
    ns.status.phase = "Active"
    if terminating:
        ns.metadata.deletion_timestamp.FromDatetime(NOW - timedelta(seconds=5))
        ns.status.phase = "Terminating"
    return ns


def marked(ns: namespace_pb2.Namespace) -> namespace_pb2.Namespace:
    out = namespace_pb2.Namespace()
    out.CopyFrom(ns)
    out.metadata.deletion_timestamp.FromDatetime(NOW)
    out.status.phase = "Terminating"
    return out


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        pytest.param(namespace(), DeletePlan(now=False, update=marked(namespace())), id="first-delete-marks"),
        pytest.param(
            namespace(finalizers=()),
            DeletePlan(now=False, update=marked(namespace(finalizers=()))),
            id="first-delete-marks-without-finalizers",
        ),
        pytest.param(
            namespace(terminating=True), DeletePlan(now=False, refused=STILL_FINALIZING), id="finalizing-refused"
        ),
        pytest.param(namespace(finalizers=(), terminating=True), DeletePlan(now=True), id="finalized-deleted"),
    ],
)
def test_plan_namespace_deletion(ns: namespace_pb2.Namespace, expected: DeletePlan) -> None:
    assert plan_deletion(ns, None, NOW + timedelta(microseconds=300)) == expected


def api() -> ObjectApi:
    return ObjectApi(ObjectStore(MemoryStore()), now=lambda: NOW)


def new_namespace(name: str, *finalizers: str) -> namespace_pb2.Namespace:
    ns = namespace_pb2.Namespace()
    ns.metadata.name = name
    ns.spec.finalizers.extend(finalizers)
    return ns


def config_map(name: str, namespace: str = "team") -> configmap_pb2.ConfigMap:
    cm = configmap_pb2.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = name, namespace
    cm.data["k"] = "v"
    return cm


async def test_a_new_namespace_is_active_with_the_kubernetes_finalizer() -> None:
    objects = api()
    created = await objects.create(new_namespace("team"))
    assert isinstance(created, namespace_pb2.Namespace)
    assert list(created.spec.finalizers) == ["kubernetes"] and created.status.phase == "Active"
    applied, _ = await objects.apply(new_namespace("team"))
    assert isinstance(applied, namespace_pb2.Namespace)
    assert list(applied.spec.finalizers) == ["kubernetes"]


async def test_a_finalizer_corral_cannot_remove_is_refused_with_its_path() -> None:
    with pytest.raises(errors.InvalidError) as refused:
        await api().create(new_namespace("team", "kubernetes", "example.com/keep"))
    assert [c.field for c in refused.value.causes] == ["spec.finalizers[1]"]
    assert 'unsupported value "example.com/keep"' in str(refused.value)


async def test_deleting_marks_terminating_and_a_second_delete_is_a_conflict() -> None:
    objects = api()
    await objects.create(new_namespace("team"))
    deleted = await objects.delete("ns", "", "team")
    assert isinstance(deleted, namespace_pb2.Namespace)
    assert deleted.status.phase == "Terminating"
    assert deleted.metadata.deletion_timestamp.ToDatetime(tzinfo=UTC) == NOW
    stored = await objects.get("namespace", "", "team")
    assert stored == deleted
    with pytest.raises(errors.ConflictError) as again:
        await objects.delete("ns", "", "team")
    assert str(again.value) == f'Operation cannot be fulfilled on namespaces "team": {STILL_FINALIZING}'


async def test_no_new_content_in_a_terminating_namespace_but_updates_go_on() -> None:
    objects = api()
    await objects.create(new_namespace("team"))
    await objects.create(config_map("before"))
    await objects.delete("ns", "", "team")
    message = "unable to create new content in namespace team because it is being terminated"
    with pytest.raises(errors.ForbiddenError) as created:
        await objects.create(config_map("after"))
    assert str(created.value) == f'configmaps "after" is forbidden: {message}'
    with pytest.raises(errors.ForbiddenError):
        await objects.apply(config_map("applied"))
    pod = pod_pb2.Pod()
    pod.metadata.generate_name, pod.metadata.namespace = "web-", "team"
    pod.spec.containers.add(name="main", image="busybox:1")
    with pytest.raises(errors.ForbiddenError, match=message):
        await objects.create(pod)
    changed = config_map("before")
    changed.data["k"] = "w"
    updated, _ = await objects.apply(changed)
    assert isinstance(updated, configmap_pb2.ConfigMap) and updated.data["k"] == "w"
    assert await objects.find(by_kind("ConfigMap"), "team", "after") is None


async def test_objects_may_live_in_a_namespace_without_a_namespace_object() -> None:
    created = await api().create(config_map("free", namespace="nowhere"))
    assert isinstance(created, configmap_pb2.ConfigMap)


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public"])
async def test_the_immortal_namespaces_cannot_be_deleted(name: str) -> None:
    objects = api()
    await objects.create(new_namespace(name))
    with pytest.raises(errors.ForbiddenError) as refused:
        await objects.delete("namespaces", "", name)
    assert str(refused.value) == f'namespaces "{name}" is forbidden: this namespace may not be deleted'
    stored = await objects.get("namespaces", "", name)
    assert isinstance(stored, namespace_pb2.Namespace) and stored.status.phase == "Active"
