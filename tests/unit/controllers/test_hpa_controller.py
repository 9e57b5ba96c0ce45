"""The HPA controller's shell: which events wake an HPA, and how the target's scale is written."""

from __future__ import annotations

from datetime import timedelta

from structlog.testing import capture_logs

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.autoscaler.controller import RACED_RETRY, HorizontalPodAutoscalerController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer, object_key
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import metrics_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind
from tests.unit.controllers.hpa_builders import NOW, deployment, hpa, pods

KINDS = ("HorizontalPodAutoscaler", "Deployment", "ReplicaSet", "StatefulSet", "Pod")
CPU_REASON = "cpu resource utilization (percentage of request) above target"


class Metrics:
    def __init__(self, cpu_millis: int) -> None:
        self.cpu_millis = cpu_millis

    def pod_usage(self, namespace: str, name: str, *, now: float) -> metrics_pb2.PodUsage | None:
        usage = metrics_pb2.PodUsage(namespace=namespace, name=name)
        usage.containers.add(name="web", cpu_millis=self.cpu_millis)
        return usage

    def pod_requests_per_second(self, namespace: str, name: str, *, now: float) -> float | None:
        return None


class Harness:
    """A controller bound to informers the test fills from the store (none of them runs)."""

    def __init__(self, cpu_millis: int = 100) -> None:
        objects = ObjectStore(MemoryStore())
        self.api = ObjectApi(objects)
        self.informers = {k: Informer(objects, by_kind(k)) for k in KINDS}
        self.controller = HorizontalPodAutoscalerController(
            self.api,
            EventRecorder(self.api, "horizontal-pod-autoscaler"),
            Metrics(cpu_millis),
            now=lambda: NOW + timedelta(minutes=20),
        )
        self.controller.bind(self.informers, WorkQueue())

    def cache(self, obj: object) -> None:
        assert isinstance(
            obj,
            metrics_pb2.HorizontalPodAutoscaler | workloads_pb2.Deployment | workloads_pb2.StatefulSet | pod_pb2.Pod,
        )
        informer = self.informers[type(obj).__name__]
        prev = informer.items.get(object_key(obj))
        informer.items[object_key(obj)] = obj
        informer._emit(CacheEvent(Change.MODIFIED if prev is not None else Change.ADDED, obj, prev, 1))

    async def setup(self, replicas: int) -> workloads_pb2.Deployment:
        d = await self.api.create(deployment(replicas))
        h = await self.api.create(hpa())
        self.cache(d)
        self.cache(h)
        for p in pods(replicas):
            self.cache(p)
        assert isinstance(d, workloads_pb2.Deployment)
        return d

    async def stored(self) -> workloads_pb2.Deployment:
        d = await self.api.get("Deployment", "default", "web")
        assert isinstance(d, workloads_pb2.Deployment)
        return d


def changed(obj: object, prev: object) -> CacheEvent:
    assert isinstance(obj, metrics_pb2.HorizontalPodAutoscaler | workloads_pb2.Deployment)
    return CacheEvent(Change.MODIFIED, obj, prev, 2)  # type: ignore[arg-type]


async def test_which_changes_wake_the_hpa() -> None:
    harness = Harness()
    d = await harness.setup(2)
    h = harness.informers["HorizontalPodAutoscaler"].items["default/web"]
    assert isinstance(h, metrics_pb2.HorizontalPodAutoscaler)
    keys = harness.controller.keys_for
    status_only = metrics_pb2.HorizontalPodAutoscaler()
    status_only.CopyFrom(h)
    status_only.status.current_replicas = 2
    assert list(keys("HorizontalPodAutoscaler", changed(status_only, h))) == []
    new_spec = metrics_pb2.HorizontalPodAutoscaler()
    new_spec.CopyFrom(h)
    new_spec.spec.max_replicas = 3
    assert list(keys("HorizontalPodAutoscaler", changed(new_spec, h))) == ["default/web"]
    busy = workloads_pb2.Deployment()
    busy.CopyFrom(d)
    busy.status.ready_replicas = 2
    assert list(keys("Deployment", changed(busy, d))) == []
    scaled = workloads_pb2.Deployment()
    scaled.CopyFrom(d)
    scaled.spec.replicas = 5
    assert list(keys("Deployment", changed(scaled, d))) == ["default/web"]
    other = workloads_pb2.Deployment()
    other.CopyFrom(scaled)
    other.metadata.name = "api"
    assert list(keys("Deployment", CacheEvent(Change.ADDED, other, None, 3))) == []
    assert list(keys("Pod", CacheEvent(Change.ADDED, pods(1)[0], None, 3))) == []


async def test_scale_written_over_a_stale_cache() -> None:
    harness = Harness()
    cached = await harness.setup(2)
    # A status write the cache has not seen yet: the scale's first CAS conflicts, the re-read wins.
    fresh = await harness.stored()
    fresh.status.ready_replicas = 2
    await harness.api.update_status(fresh)
    with capture_logs() as logs:
        assert await harness.controller.sync("default/web") == harness.controller.sync_period
    rescaled = [e for e in logs if e["event"] == "hpa_rescaled"]
    assert [(e["hpa"], e["current"], e["replicas"], e["reason"]) for e in rescaled] == [
        ("default/web", 2, 4, CPU_REASON)
    ]
    stored = await harness.stored()
    assert (stored.spec.replicas, stored.metadata.generation) == (4, cached.metadata.generation + 1)
    h = await harness.api.get("HorizontalPodAutoscaler", "default", "web")
    assert isinstance(h, metrics_pb2.HorizontalPodAutoscaler)
    assert (h.status.current_replicas, h.status.desired_replicas) == (2, 4)
    events = (await harness.api.list("Event", "default")).items
    assert [(e.reason, e.message) for e in events] == [("SuccessfulRescale", f"New size: 4; reason: {CPU_REASON}")]


async def test_a_scale_by_someone_else_wins() -> None:
    harness = Harness()
    await harness.setup(2)
    by_hand = await harness.stored()
    by_hand.spec.replicas = 3
    await harness.api.update(by_hand)
    assert await harness.controller.sync("default/web") == RACED_RETRY
    assert (await harness.stored()).spec.replicas == 3
    events = (await harness.api.list("Event", "default")).items
    assert events == []


async def test_read_your_own_status_write() -> None:
    harness = Harness(cpu_millis=50)
    await harness.setup(2)
    assert await harness.controller.sync("default/web") == harness.controller.sync_period
    written = await harness.api.get("HorizontalPodAutoscaler", "default", "web")
    assert isinstance(written, metrics_pb2.HorizontalPodAutoscaler) and written.status.recommendations
    # The cache still has the HPA without status; the next sync starts from the written one
    # and, nothing having changed, writes nothing.
    assert await harness.controller.sync("default/web") == harness.controller.sync_period
    again = await harness.api.get("HorizontalPodAutoscaler", "default", "web")
    assert again.metadata.resource_version == written.metadata.resource_version


async def test_deleted_hpa() -> None:
    harness = Harness()
    assert await harness.controller.sync("default/gone") is None


async def test_a_statefulset_is_scaled_like_a_deployment() -> None:
    """Kubernetes' HPA scales anything with a scale subresource: a StatefulSet too."""
    harness = Harness()
    sts = workloads_pb2.StatefulSet()
    sts.metadata.name, sts.metadata.namespace = "web", "default"
    sts.spec.replicas, sts.spec.service_name = 2, "web"
    sts.spec.selector.match_labels["app"] = "web"
    sts.spec.template.metadata.labels["app"] = "web"
    sts.spec.template.spec.containers.add(name="web", image="httpd:2").resources.requests["cpu"] = "100m"
    created = await harness.api.create(sts)
    h = await harness.api.create(hpa(kind="StatefulSet"))
    harness.cache(created)
    harness.cache(h)
    for p in pods(2):
        harness.cache(p)
    assert list(harness.controller.keys_for("StatefulSet", CacheEvent(Change.ADDED, created, None, 3))) == [
        "default/web"
    ]

    assert await harness.controller.sync("default/web") == harness.controller.sync_period

    stored = await harness.api.get("StatefulSet", "default", "web")
    assert isinstance(stored, workloads_pb2.StatefulSet)
    assert stored.spec.replicas == 4
