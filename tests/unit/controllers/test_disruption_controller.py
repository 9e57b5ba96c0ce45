"""The disruption controller run by the ControllerManager over a MemoryStore, with
the Deployment and ReplicaSet controllers and a tiny "kubelet" that makes every
pod Running and Ready: a budget's status follows its pods, an eviction takes its
one allowed disruption, and the replacement's readiness gives it back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.deployment.controller import DeploymentController
from controlplane.controllers.disruption.controller import SCALE_KINDS, DisruptionController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.runner import ControllerManager
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import pod_pb2, policy_pb2, workloads_pb2
from protos.kinds import by_kind
from tests.unit.controllers.manager_harness import wait_for

pytestmark = pytest.mark.timeout(30)


async def kubelet(api: ObjectApi, ready: asyncio.Event) -> None:
    """Mark every pod Running and Ready while `ready` is set."""
    while True:
        await ready.wait()
        for p in (await api.list("Pod", "default")).items:
            assert isinstance(p, pod_pb2.Pod)
            if p.status.phase != "Running" and not p.metadata.HasField("deletion_timestamp"):
                p.status.phase = "Running"
                p.status.conditions.add(type="Ready", status="True")
                with contextlib.suppress(errors.ConflictError, errors.NotFoundError):
                    await api.update_status(p)
        await asyncio.sleep(0.02)


def deployment(replicas: int) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name = "web"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="web", image="httpd:2.4")
    return d


def budget(**spec: int | str) -> policy_pb2.PodDisruptionBudget:
    b = policy_pb2.PodDisruptionBudget()
    b.metadata.name = "web"
    b.spec.selector.match_labels["app"] = "web"
    for field, value in spec.items():
        if isinstance(value, int):
            getattr(b.spec, field).int_val = value
        else:
            getattr(b.spec, field).str_val = value
    return b


class Cluster:
    def __init__(self, api: ObjectApi, ready: asyncio.Event) -> None:
        self.api = api
        self.ready = ready

    async def status(self) -> tuple[int, int, int, int]:
        b = await self.api.find(by_kind("PodDisruptionBudget"), "default", "web")
        assert isinstance(b, policy_pb2.PodDisruptionBudget)
        s = b.status
        return s.expected_pods, s.desired_healthy, s.current_healthy, s.disruptions_allowed

    async def wait_status(self, expected: tuple[int, int, int, int], what: str) -> None:
        async def reached() -> bool:
            return await self.status() == expected

        await wait_for(reached, f"{what}: (expected, desired, healthy, allowed) == {expected}")


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    controllers = [
        DeploymentController(api, EventRecorder(api, "deployment-controller")),
        ReplicaSetController(api, EventRecorder(api, "replicaset-controller")),
        DisruptionController(api, EventRecorder(api, "disruption-controller")),
    ]
    ready = asyncio.Event()
    ready.set()
    manager = ControllerManager(objects, controllers)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(manager.run()), asyncio.create_task(kubelet(api, ready))]
    try:
        yield Cluster(api, ready)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in manager.queues.values():
            queue.close()


def test_the_workload_kinds_come_from_the_kinds_table() -> None:
    assert {"Deployment", "ReplicaSet"} <= set(SCALE_KINDS)
    assert "Pod" not in SCALE_KINDS and "HorizontalPodAutoscaler" not in SCALE_KINDS


async def test_an_eviction_takes_the_budget_until_the_replacement_is_ready(cluster: Cluster) -> None:
    api = cluster.api
    await api.create(deployment(2))
    await api.create(budget(min_available=1))
    await cluster.wait_status((2, 1, 2, 1), "both pods ready")

    cluster.ready.clear()
    first, second = (p.metadata.name for p in (await api.list("Pod", "default")).items)
    await api.evict("default", first)
    with pytest.raises(errors.TooManyRequestsError):
        await api.evict("default", second)
    await cluster.wait_status((2, 1, 1, 0), "the replacement not ready yet")

    cluster.ready.set()
    await cluster.wait_status((2, 1, 2, 1), "the replacement ready")


async def test_a_percentage_counts_the_deployments_replicas(cluster: Cluster) -> None:
    await cluster.api.create(deployment(3))
    await cluster.api.create(budget(max_unavailable="50%"))
    await cluster.wait_status((3, 1, 3, 2), "50% of 3 unavailable rounds up to 2")
    d = await cluster.api.get("deploy", "default", "web")
    assert isinstance(d, workloads_pb2.Deployment)
    d.spec.replicas = 4
    await cluster.api.update(d)
    await cluster.wait_status((4, 2, 4, 2), "the scaled Deployment")
