"""The HPA controller with the ReplicaSet and Deployment controllers, over the memory store.

A tiny in-test "kubelet" runs every pod at once (Running, Ready, started ten
minutes ago); a fake `MetricsSource` says how much cpu each pod uses; the HPA
controller's wall clock is a fake the test moves past the scale-down window.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.autoscaler.controller import HorizontalPodAutoscalerController
from controlplane.controllers.deployment.controller import DeploymentController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.runner import ControllerManager
from controlplane.store import errors as store_errors
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import event_pb2, metrics_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind

POD, DEPLOYMENT, HPA, EVENT = (by_kind(k) for k in ("Pod", "Deployment", "HorizontalPodAutoscaler", "Event"))
WAIT = 10.0
POLL = 0.02
CPU_REASON = "cpu resource utilization (percentage of request) above target"


class FakeMetrics:
    """Every running pod uses `cpu_millis` (None: no samples at all)."""

    def __init__(self) -> None:
        self.cpu_millis: int | None = None
        self.asked: set[str] = set()

    def pod_usage(self, namespace: str, name: str, *, now: float) -> metrics_pb2.PodUsage | None:
        self.asked.add(name)
        if self.cpu_millis is None:
            return None
        usage = metrics_pb2.PodUsage(namespace=namespace, name=name)
        usage.containers.add(name="web", cpu_millis=self.cpu_millis, memory_bytes=50 << 20)
        return usage

    def pod_requests_per_second(self, namespace: str, name: str, *, now: float) -> float | None:
        return None


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


async def kubelet(objects: ObjectStore) -> None:
    """Starts every pod at once (as if ten minutes ago) and removes terminating ones."""
    while True:
        listed, _ = await objects.list_all(POD, "default")
        for pod in listed:
            assert isinstance(pod, pod_pb2.Pod)
            if pod.metadata.HasField("deletion_timestamp"):
                with contextlib.suppress(store_errors.ConflictError, store_errors.NotFoundError):
                    await objects.delete(pod)
                continue
            if pod.status.phase == "Running":
                continue
            started = datetime.now(UTC) - timedelta(minutes=10)
            pod.spec.node_name = "node-1"
            pod.status.phase = "Running"
            pod.status.start_time.FromDatetime(started)
            ready = pod.status.conditions.add(type="Ready", status="True")
            ready.last_transition_time.FromDatetime(started + timedelta(seconds=5))
            with contextlib.suppress(store_errors.ConflictError, store_errors.NotFoundError):
                await objects.update(pod)
        await asyncio.sleep(0.01)


@dataclass
class Cluster:
    api: ObjectApi
    objects: ObjectStore
    metrics: FakeMetrics
    clock: Clock

    async def deployment(self) -> workloads_pb2.Deployment:
        d = await self.objects.get(DEPLOYMENT, "default", "web")
        assert isinstance(d, workloads_pb2.Deployment)
        return d

    async def hpa(self) -> metrics_pb2.HorizontalPodAutoscaler:
        h = await self.objects.get(HPA, "default", "web")
        assert isinstance(h, metrics_pb2.HorizontalPodAutoscaler)
        return h

    async def running(self) -> int:
        listed, _ = await self.objects.list_all(POD, "default")
        return sum(
            1
            for p in listed
            if isinstance(p, pod_pb2.Pod)
            and p.status.phase == "Running"
            and not p.metadata.HasField("deletion_timestamp")
        )

    async def events(self) -> list[tuple[str, str]]:
        listed, _ = await self.objects.list_all(EVENT, "default")
        found = [
            e for e in listed if isinstance(e, event_pb2.Event) and e.involved_object.kind == "HorizontalPodAutoscaler"
        ]
        found.sort(key=lambda e: (e.first_timestamp.seconds, e.first_timestamp.nanos, e.metadata.name))
        return [(e.reason, e.message) for e in found]

    async def wait_for(self, what: str, done: Callable[[], object]) -> None:
        try:
            async with asyncio.timeout(WAIT):
                while not await done():  # type: ignore[misc]
                    await asyncio.sleep(POLL)
        except TimeoutError:
            d, h = await self.deployment(), await self.hpa()
            raise AssertionError(
                f"timed out waiting for {what}: replicas {d.spec.replicas}, "
                f"running {await self.running()}, hpa status {h.status}, "
                f"events {await self.events()}"
            ) from None


@contextlib.asynccontextmanager
async def running_cluster() -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    metrics = FakeMetrics()
    clock = Clock(datetime.now(UTC))
    autoscaler = HorizontalPodAutoscalerController(
        api, EventRecorder(api, "horizontal-pod-autoscaler"), metrics, sync_period=0.05, now=clock
    )
    manager = ControllerManager(
        objects,
        [
            ReplicaSetController(api, EventRecorder(api, "replicaset-controller")),
            DeploymentController(api, EventRecorder(api, "deployment-controller")),
            autoscaler,
        ],
    )
    tasks = [
        asyncio.create_task(manager.run(), name="controllers"),
        asyncio.create_task(kubelet(objects), name="kubelet"),
    ]
    try:
        yield Cluster(api, objects, metrics, clock)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in manager.queues.values():
            queue.close()


def web(replicas: int) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = "web", "default"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    container = d.spec.template.spec.containers.add(name="web", image="httpd:2")
    container.resources.requests["cpu"] = "100m"
    return d


def autoscaler(*, low: int, high: int, percent: int) -> metrics_pb2.HorizontalPodAutoscaler:
    h = metrics_pb2.HorizontalPodAutoscaler()
    h.metadata.name, h.metadata.namespace = "web", "default"
    ref = h.spec.scale_target_ref
    ref.api_version, ref.kind, ref.name = "apps/v1", "Deployment", "web"
    h.spec.min_replicas, h.spec.max_replicas = low, high
    metric = h.spec.metrics.add(type="Resource")
    metric.resource.name = "cpu"
    metric.resource.target.type = "Utilization"
    metric.resource.target.average_utilization = percent
    return h


async def test_deployment_scales_up_with_load_and_down_after_the_window() -> None:
    async with running_cluster() as cluster:
        await cluster.api.create(web(2))
        await cluster.api.create(autoscaler(low=1, high=6, percent=50))

        async def two_running() -> bool:
            return await cluster.running() == 2

        await cluster.wait_for("two pods", two_running)

        async def metrics_unknown() -> bool:
            h = await cluster.hpa()
            return any(c.type == "ScalingActive" and c.reason == "FailedGetResourceMetric" for c in h.status.conditions)

        await cluster.wait_for("the HPA to say it has no metrics", metrics_unknown)
        assert (await cluster.deployment()).spec.replicas == 2

        # Every pod at 100% of its request, twice the target: 2 → 4, then (4 pods at 100%) → 6 (max).
        cluster.metrics.cpu_millis = 100

        async def six_running() -> bool:
            h = await cluster.hpa()
            return await cluster.running() == 6 and h.status.current_replicas == 6

        await cluster.wait_for("the scale-up to 6", six_running)
        assert ("SuccessfulRescale", f"New size: 4; reason: {CPU_REASON}") in await cluster.events()
        assert ("SuccessfulRescale", f"New size: 6; reason: {CPU_REASON}") in await cluster.events()
        h = await cluster.hpa()
        assert h.status.current_metrics[0].resource.current.average_utilization == 100
        assert any(
            c.type == "ScalingLimited" and c.status == "True" and c.reason == "TooManyReplicas"
            for c in h.status.conditions
        )

        # Load drops to 10%: the recommendation is 2, but not before the 300 s window has passed.
        cluster.metrics.cpu_millis = 10

        async def stabilized() -> bool:
            h = await cluster.hpa()
            return any(c.type == "AbleToScale" and c.reason == "ScaleDownStabilized" for c in h.status.conditions)

        await cluster.wait_for("the scale-down to be held back", stabilized)
        assert (await cluster.deployment()).spec.replicas == 6

        cluster.clock.now += timedelta(seconds=301)

        async def two_again() -> bool:
            return (await cluster.deployment()).spec.replicas == 2 and await cluster.running() == 2

        await cluster.wait_for("the scale-down to 2", two_again)
        assert ("SuccessfulRescale", "New size: 2; reason: All metrics below target") in await cluster.events()
        h = await cluster.hpa()
        assert h.status.desired_replicas == 2
        assert len(h.status.scale_events) <= 3
        assert len(h.status.recommendations) <= 4


async def test_target_scaled_to_zero_is_left_alone() -> None:
    async with running_cluster() as cluster:
        await cluster.api.create(web(0))
        cluster.metrics.cpu_millis = 100
        await cluster.api.create(autoscaler(low=1, high=6, percent=50))

        async def disabled() -> bool:
            h = await cluster.hpa()
            return any(c.type == "ScalingActive" and c.reason == "ScalingDisabled" for c in h.status.conditions)

        await cluster.wait_for("the HPA to stand aside", disabled)
        assert (await cluster.deployment()).spec.replicas == 0
