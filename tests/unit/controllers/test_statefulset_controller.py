"""The StatefulSet controller run by the ControllerManager over a MemoryStore, with the
garbage collector: pods and claims made in order, a deleted pod made again under its name
with the same claim, status written, and claims collected with the set under whenDeleted: Delete."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.runner import Controller
from controlplane.controllers.statefulset import identity
from controlplane.controllers.statefulset.controller import StatefulSetController
from protos import statefulsets
from protos.corral.v1 import pod_pb2, storage_pb2, workloads_pb2
from protos.kinds import by_kind
from tests.unit.controllers.manager_harness import running, wait_for

pytestmark = pytest.mark.timeout(30)


def stateful_set(when_deleted: str) -> workloads_pb2.StatefulSet:
    sts = workloads_pb2.StatefulSet()
    sts.metadata.name = "db"
    spec = sts.spec
    spec.replicas, spec.service_name = 2, "db"
    spec.selector.match_labels["app"] = "db"
    spec.template.metadata.labels["app"] = "db"
    container = spec.template.spec.containers.add(name="db", image="redis:7")
    container.volume_mounts.add(name="data", mount_path="/data")
    claim = spec.volume_claim_templates.add()
    claim.metadata.name = "data"
    claim.spec.access_modes.append("ReadWriteOnce")
    claim.spec.resources.requests["storage"] = "1Gi"
    spec.persistent_volume_claim_retention_policy.when_deleted = when_deleted
    return sts


@pytest.fixture
async def api() -> AsyncIterator[ObjectApi]:
    def controllers(api: ObjectApi) -> list[Controller]:
        return [
            StatefulSetController(api, EventRecorder(api, "statefulset-controller")),
            GarbageCollector(api),
        ]

    async with running(controllers) as api:
        yield api


async def find(api: ObjectApi, kind: str, name: str) -> object | None:
    return await api.find(by_kind(kind), "default", name)


async def make_ready(api: ObjectApi, name: str) -> None:
    pod = await api.get("Pod", "default", name)
    assert isinstance(pod, pod_pb2.Pod)
    pod.status.phase = "Running"
    pod.status.conditions.add(type="Ready", status="True")
    await api.update_status(pod)


async def test_pods_and_claims_in_order_a_deleted_pod_comes_back_and_claims_go_with_the_set(api: ObjectApi) -> None:
    await api.create(stateful_set("Delete"))

    async def first() -> bool:
        return (
            await find(api, "Pod", "db-0") is not None
            and await find(api, "PersistentVolumeClaim", "data-db-0") is not None
        )

    await wait_for(first, "db-0 and its claim")
    assert await find(api, "Pod", "db-1") is None
    claim = await api.get("PersistentVolumeClaim", "default", "data-db-0")
    pod = await api.get("Pod", "default", "db-0")
    assert isinstance(pod, pod_pb2.Pod)
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == "data-db-0"
    assert (pod.spec.hostname, pod.spec.subdomain) == ("db-0", "db")

    # The template a pod was made from can be rebuilt from the stored pod (for re-creation below a partition).
    stored_set = await api.get("StatefulSet", "default", "db")
    assert isinstance(stored_set, workloads_pb2.StatefulSet)
    pod.spec.node_name = "n1"
    rebuilt = identity.template_of(stored_set, pod, statefulsets.revision(stored_set))
    assert rebuilt is not None and rebuilt == stored_set.spec.template

    await make_ready(api, "db-0")

    async def second() -> bool:
        return (
            await find(api, "Pod", "db-1") is not None
            and await find(api, "PersistentVolumeClaim", "data-db-1") is not None
        )

    await wait_for(second, "db-1 after db-0 is ready")

    old_uid = pod.metadata.uid
    await api.delete("Pod", "default", "db-0")

    async def back() -> bool:
        again = await find(api, "Pod", "db-0")
        return isinstance(again, pod_pb2.Pod) and again.metadata.uid != old_uid

    await wait_for(back, "db-0 made again")
    same = await api.get("PersistentVolumeClaim", "default", "data-db-0")
    assert isinstance(same, storage_pb2.PersistentVolumeClaim)
    assert isinstance(claim, storage_pb2.PersistentVolumeClaim)
    assert same.metadata.uid == claim.metadata.uid

    async def status_written() -> bool:
        sts = await api.get("StatefulSet", "default", "db")
        assert isinstance(sts, workloads_pb2.StatefulSet)
        return sts.status.replicas == 2 and sts.status.update_revision.startswith("db-")

    await wait_for(status_written, "the status")

    await api.delete("StatefulSet", "default", "db")

    async def collected() -> bool:
        """Deleted, or (while their pods still use them: nothing stops those here) marked so, as
        Kubernetes' pvc-protection does; the volume controller removes them once unused."""
        names = ("data-db-0", "data-db-1")
        found = [await find(api, "PersistentVolumeClaim", n) for n in names]
        return all(c is None or c.metadata.HasField("deletion_timestamp") for c in found)

    await wait_for(collected, "the claims deleted with the set")


async def test_retained_claims_outlive_the_set(api: ObjectApi) -> None:
    await api.create(stateful_set("Retain"))

    async def first() -> bool:
        return await find(api, "Pod", "db-0") is not None

    await wait_for(first, "db-0")
    await api.delete("StatefulSet", "default", "db")

    async def pods_gone() -> bool:
        return await find(api, "Pod", "db-0") is None

    await wait_for(pods_gone, "db-0 collected")
    assert await find(api, "PersistentVolumeClaim", "data-db-0") is not None
