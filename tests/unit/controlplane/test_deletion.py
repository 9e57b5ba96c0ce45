"""Graceful pod deletion: the pure plan, and ObjectApi.delete over the memory store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message

from controlplane.apiserver import errors
from controlplane.apiserver.deletion import DeletePlan, plan_deletion
from controlplane.apiserver.handlers import ObjectApi
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def pod(
    *,
    node: str = "n1",
    phase: str = "Running",
    grace: int | None = 30,
    deadline_in: int | None = None,
    recorded_grace: int = 30,
) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    p.spec.node_name = node
    p.spec.containers.add(name="main", image="busybox:1")
    if grace is not None:
        p.spec.termination_grace_period_seconds = grace
    p.status.phase = phase
    if deadline_in is not None:
        p.metadata.deletion_timestamp.FromDatetime(NOW + timedelta(seconds=deadline_in))
        p.metadata.deletion_grace_period_seconds = recorded_grace
    return p


def marked(deadline_in: int, grace: int, *, phase: str = "Running", spec_grace: int | None = 30) -> pod_pb2.Pod:
    """The pod as a delete marks it: deadline `deadline_in` s from NOW, with `grace`."""
    return pod(deadline_in=deadline_in, recorded_grace=grace, phase=phase, grace=spec_grace)


@pytest.mark.parametrize(
    ("obj", "requested", "expected"),
    [
        pytest.param(pod(), None, DeletePlan(now=False, update=marked(30, 30)), id="bound-running-default-grace"),
        pytest.param(pod(), 5, DeletePlan(now=False, update=marked(5, 5)), id="bound-running-asked-grace"),
        pytest.param(
            pod(phase="Pending"),
            None,
            DeletePlan(now=False, update=marked(30, 30, phase="Pending")),
            id="bound-pending-may-be-starting",
        ),
        pytest.param(
            pod(grace=None),
            None,
            DeletePlan(now=False, update=marked(30, 30, spec_grace=None)),
            id="unset-grace-is-the-default",
        ),
        pytest.param(pod(node=""), None, DeletePlan(now=True), id="unbound-at-once"),
        pytest.param(pod(phase="Succeeded"), None, DeletePlan(now=True), id="succeeded-at-once"),
        pytest.param(pod(phase="Failed"), 10, DeletePlan(now=True), id="failed-at-once"),
        pytest.param(pod(), 0, DeletePlan(now=True), id="grace-zero-at-once"),
        pytest.param(pod(grace=0), None, DeletePlan(now=True), id="pod-grace-zero-at-once"),
        pytest.param(pod(deadline_in=20), 5, DeletePlan(now=False, update=marked(5, 5)), id="second-delete-shortens"),
        pytest.param(pod(deadline_in=20), None, DeletePlan(now=False), id="second-delete-never-lengthens"),
        pytest.param(pod(deadline_in=20), 20, DeletePlan(now=False), id="second-delete-same-deadline"),
        pytest.param(pod(deadline_in=20), 0, DeletePlan(now=True), id="force-delete-of-terminating"),
        pytest.param(
            pod(deadline_in=20, phase="Failed"), None, DeletePlan(now=True), id="terminating-and-finished-at-once"
        ),
        pytest.param(workloads_pb2.Deployment(), 30, DeletePlan(now=True), id="not-a-pod-at-once"),
    ],
)
def test_plan_deletion(obj: Message, requested: int | None, expected: DeletePlan) -> None:
    assert plan_deletion(obj, requested, NOW) == expected


def test_plan_deletion_keeps_second_precision() -> None:
    plan = plan_deletion(pod(), 2, NOW + timedelta(microseconds=700_000))
    assert plan.update is not None
    assert plan.update.metadata.deletion_timestamp.ToDatetime(tzinfo=UTC) == NOW + timedelta(seconds=2)


# -- through ObjectApi ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def created(api: ObjectApi, *, node: str = "n1") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = "web"
    p.spec.node_name = node
    p.spec.termination_grace_period_seconds = 20
    p.spec.containers.add(name="main", image="busybox:1")
    result = await api.create(p)
    assert isinstance(result, pod_pb2.Pod)
    return result


async def stored(api: ObjectApi) -> pod_pb2.Pod | None:
    found = await api.find(by_kind("Pod"), "default", "web")
    assert found is None or isinstance(found, pod_pb2.Pod)
    return found


async def test_delete_of_a_bound_pod_marks_it_and_a_second_one_can_only_shorten() -> None:
    clock = Clock()
    api = ObjectApi(ObjectStore(MemoryStore()), now=clock)
    await created(api)
    first = await api.delete("pods", "default", "web")
    assert isinstance(first, pod_pb2.Pod)
    assert first.metadata.deletion_timestamp.ToDatetime(tzinfo=UTC) == NOW + timedelta(seconds=20)
    assert first.metadata.deletion_grace_period_seconds == 20
    assert await stored(api) == first
    clock.now = NOW + timedelta(seconds=5)
    again = await api.delete("pods", "default", "web", grace_period_seconds=60)
    assert again == first, "a longer grace changes nothing"
    shorter = await api.delete("pods", "default", "web", grace_period_seconds=1)
    assert isinstance(shorter, pod_pb2.Pod)
    assert shorter.metadata.deletion_timestamp.ToDatetime(tzinfo=UTC) == NOW + timedelta(seconds=6)
    assert shorter.metadata.deletion_grace_period_seconds == 1
    await api.delete("pods", "default", "web", grace_period_seconds=0)
    assert await stored(api) is None


async def test_delete_of_an_unbound_pod_is_immediate() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()), now=Clock())
    await created(api, node="")
    gone = await api.delete("pods", "default", "web")
    assert not gone.metadata.HasField("deletion_timestamp")
    assert await stored(api) is None


async def test_delete_keeps_the_uid_precondition_and_refuses_a_negative_grace() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()), now=Clock())
    await created(api)
    with pytest.raises(errors.ConflictError):
        await api.delete("pods", "default", "web", uid="another-incarnation")
    with pytest.raises(errors.BadRequestError, match="gracePeriodSeconds"):
        await api.delete("pods", "default", "web", grace_period_seconds=-1)
    assert await stored(api) is not None


async def test_a_terminating_pod_keeps_its_spec_and_deadline_through_apply() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()), now=Clock())
    original = await created(api)
    marked_pod = await api.delete("pods", "default", "web")
    changed = pod_pb2.Pod()
    changed.CopyFrom(original)
    changed.spec.containers[0].image = "busybox:2"
    with pytest.raises(errors.InvalidError) as info:
        await api.apply(changed)
    assert "being deleted" in str(info.value.causes[0])
    relabelled = pod_pb2.Pod()
    relabelled.CopyFrom(original)
    relabelled.metadata.labels["tier"] = "web"
    applied, _ = await api.apply(relabelled)
    assert applied.metadata.deletion_timestamp == marked_pod.metadata.deletion_timestamp
    assert applied.metadata.deletion_grace_period_seconds == 20


async def test_a_recreated_pod_does_not_inherit_a_deletion() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()), now=Clock())
    p = pod(deadline_in=10)
    p.metadata.uid = ""
    fresh = await api.create(p)
    assert not fresh.metadata.HasField("deletion_timestamp")
    assert not fresh.metadata.HasField("deletion_grace_period_seconds")
