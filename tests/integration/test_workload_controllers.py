"""The ReplicaSet and Deployment controllers together, over the memory store.

A `ControllerManager` runs both controllers; a tiny in-test "kubelet" marks
every new pod Running and Ready. The store is polled every 20 ms while a
rollout runs, and the rollout bounds (total pods <= replicas + maxSurge,
ready pods >= replicas - maxUnavailable) are asserted at every poll. A pod
informer also checks them at every store revision (`BoundsMonitor`), which no
poll can miss.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.deployment.controller import DeploymentController
from controlplane.controllers.deployment.expectations import WriteExpectations
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.replicaset.expectations import Expectations
from controlplane.controllers.runner import ControllerManager
from controlplane.informer import CacheEvent, Change, Informer
from controlplane.store import errors as store_errors
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import event_pb2, meta_pb2, pod_pb2, workloads_pb2
from protos.deployments import without_hash
from protos.kinds import KindInfo, by_kind, meta
from protos.wellknown import POD_TEMPLATE_HASH, REVISION

POD, RS, DEPLOYMENT, EVENT = (by_kind(k) for k in ("Pod", "ReplicaSet", "Deployment", "Event"))
POLL = 0.02
WAIT = 5.0


def deployment(image: str, *, replicas: int, surge: int | str, unavailable: int | str) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = "web", "default"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="web", image=image)
    for field, value in (
        (d.spec.strategy.rolling_update.max_surge, surge),
        (d.spec.strategy.rolling_update.max_unavailable, unavailable),
    ):
        if isinstance(value, int):
            field.int_val = value
        else:
            field.str_val = value
    return d


@dataclass(frozen=True)
class Snapshot:
    deployment: workloads_pb2.Deployment
    replica_sets: list[workloads_pb2.ReplicaSet]
    pods: list[pod_pb2.Pod]

    @property
    def ready(self) -> list[pod_pb2.Pod]:
        return [p for p in self.pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]

    def rs_running(self, image: str) -> workloads_pb2.ReplicaSet:
        found = [rs for rs in self.replica_sets if rs.spec.template.spec.containers[0].image == image]
        assert len(found) == 1, f"{len(found)} ReplicaSets run {image}"
        return found[0]

    def pods_of(self, rs: workloads_pb2.ReplicaSet) -> list[pod_pb2.Pod]:
        return [
            p for p in self.pods if any(r.controller and r.uid == rs.metadata.uid for r in p.metadata.owner_references)
        ]

    def summary(self) -> str:
        sets = ", ".join(f"{rs.metadata.name}={rs.spec.replicas}" for rs in self.replica_sets)
        return f"sets [{sets}], {len(self.pods)} pods, {len(self.ready)} ready, status {self.deployment.status}"


class BoundsMonitor:
    """Pod counts at every store revision, from a pod informer of its own."""

    def __init__(self, informer: Informer) -> None:
        self.informer = informer
        self.max_total = 0
        self.min_ready = 1 << 30
        self.revisions = 0
        informer.add_listener(self._on_event)

    def reset(self) -> None:
        self.max_total, self.min_ready, self.revisions = 0, 1 << 30, 0

    def _on_event(self, event: CacheEvent) -> None:
        if not self.informer.synced.is_set():
            return  # the first list arrives one ADDED at a time: not a state of the store
        pods = [
            p
            for p in self.informer.items.values()
            if isinstance(p, pod_pb2.Pod) and p.status.phase not in ("Failed", "Succeeded")
        ]
        ready = sum(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods)
        self.max_total = max(self.max_total, len(pods))
        self.min_ready = min(self.min_ready, ready)
        self.revisions += 1


class Cluster:
    def __init__(self, api: ObjectApi, objects: ObjectStore, monitor: BoundsMonitor) -> None:
        self.api = api
        self.objects = objects
        self.monitor = monitor
        self.polls = 0

    async def snapshot(self) -> Snapshot:
        d = await self.objects.get(DEPLOYMENT, "default", "web")
        assert isinstance(d, workloads_pb2.Deployment)
        sets, _ = await self.objects.list_all(RS, "default")
        pods, _ = await self.objects.list_all(POD, "default")
        running = [p for p in pods if isinstance(p, pod_pb2.Pod) and p.status.phase not in ("Failed", "Succeeded")]
        return Snapshot(d, [s for s in sets if isinstance(s, workloads_pb2.ReplicaSet)], running)

    async def wait_for(
        self,
        what: str,
        done: Callable[[Snapshot], bool],
        *,
        max_total: int | None = None,
        min_ready: int | None = None,
    ) -> Snapshot:
        """Poll until `done`, asserting the bounds at every poll; fail after WAIT seconds."""
        snap: Snapshot | None = None
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    snap = await self.snapshot()
                    self.polls += 1
                    if max_total is not None:
                        assert len(snap.pods) <= max_total, f"surge bound broken: {snap.summary()}"
                    if min_ready is not None:
                        assert len(snap.ready) >= min_ready, f"availability bound broken: {snap.summary()}"
                    if done(snap):
                        return snap
                    await asyncio.sleep(POLL)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {snap.summary() if snap else '-'}") from None


async def kubelet(objects: ObjectStore) -> None:
    """Marks every pod that is not yet ready Running and Ready (a node that starts pods at once),
    and deletes every terminating pod (a node that stops pods at once and says so)."""
    while True:
        pods, _ = await objects.list_all(POD, "default")
        for pod in pods:
            assert isinstance(pod, pod_pb2.Pod)
            if pod.metadata.HasField("deletion_timestamp"):
                with contextlib.suppress(store_errors.ConflictError, store_errors.NotFoundError):
                    await objects.delete(pod)
                continue
            if pod.status.phase == "Running":
                continue
            pod.spec.node_name = "node-1"
            pod.status.phase = "Running"
            ready = pod.status.conditions.add(type="Ready", status="True")
            ready.last_transition_time.FromDatetime(datetime.now(UTC))
            with contextlib.suppress(store_errors.ConflictError, store_errors.NotFoundError):
                await objects.update(pod)
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_cluster() -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    recorder = EventRecorder(api, "controller-manager")
    manager = ControllerManager(objects, [ReplicaSetController(api, recorder), DeploymentController(api, recorder)])
    monitor = BoundsMonitor(Informer(objects, POD))
    tasks = [
        asyncio.create_task(monitor.informer.run(), name="monitor"),
        asyncio.create_task(manager.run(), name="controllers"),
        asyncio.create_task(kubelet(objects), name="kubelet"),
    ]
    try:
        async with asyncio.timeout(WAIT):
            await monitor.informer.synced.wait()
        yield Cluster(api, objects, monitor)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in manager.queues.values():
            queue.close()


def rolled_out(image: str, replicas: int) -> Callable[[Snapshot], bool]:
    def done(snap: Snapshot) -> bool:
        d = snap.deployment
        status = d.status
        new = [rs for rs in snap.replica_sets if rs.spec.template.spec.containers[0].image == image]
        return (
            len(new) == 1
            and new[0].spec.replicas == replicas
            and all(p.spec.containers[0].image == image for p in snap.pods)
            and len(snap.pods) == len(snap.ready) == replicas
            and all(rs.spec.replicas == 0 for rs in snap.replica_sets if rs is not new[0])
            and (status.replicas, status.updated_replicas, status.available_replicas) == (replicas,) * 3
            and status.observed_generation == d.metadata.generation
        )

    return done


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "max_total", "min_ready"),
    [
        pytest.param(3, 3, 0, 6, 3, id="appendix-surge-3-unavailable-0"),
        pytest.param(5, "25%", "25%", 7, 4, id="defaults-on-5"),
    ],
)
async def test_rollout_and_rollback(
    replicas: int,
    surge: int | str,
    unavailable: int | str,
    max_total: int,
    min_ready: int,
) -> None:
    async with running_cluster() as cluster:
        api = cluster.api
        spec = {"replicas": replicas, "surge": surge, "unavailable": unavailable}
        await api.apply(deployment("httpd:1", **spec))  # type: ignore[arg-type]

        snap = await cluster.wait_for("the first rollout", rolled_out("httpd:1", replicas))
        v1 = snap.rs_running("httpd:1")
        _assert_owned(snap, v1)

        cluster.monitor.reset()
        await api.apply(deployment("httpd:2", **spec))  # type: ignore[arg-type]
        snap = await cluster.wait_for(
            "the rollout to httpd:2", rolled_out("httpd:2", replicas), max_total=max_total, min_ready=min_ready
        )
        _assert_bounds_held(cluster.monitor, max_total, min_ready)
        assert snap.rs_running("httpd:1").spec.replicas == 0
        assert snap.deployment.metadata.annotations[REVISION] == "2"

        # Rollback as the CLI does it: the old ReplicaSet's template goes back into the Deployment.
        current = snap.deployment
        current.spec.template.CopyFrom(without_hash(v1.spec.template))
        cluster.monitor.reset()
        await api.update(current)
        snap = await cluster.wait_for(
            "the rollback to httpd:1", rolled_out("httpd:1", replicas), max_total=max_total, min_ready=min_ready
        )
        _assert_bounds_held(cluster.monitor, max_total, min_ready)
        reused = snap.rs_running("httpd:1")
        assert reused.metadata.uid == v1.metadata.uid and len(snap.replica_sets) == 2
        assert reused.metadata.annotations[REVISION] == "3"
        assert snap.deployment.metadata.annotations[REVISION] == "3"
        assert cluster.polls > 3
        await _assert_scaling_events(cluster.objects)


def _assert_bounds_held(monitor: BoundsMonitor, max_total: int, min_ready: int) -> None:
    assert monitor.revisions > 0
    assert monitor.max_total <= max_total, f"{monitor.max_total} pods at once, bound {max_total}"
    assert monitor.min_ready >= min_ready, f"only {monitor.min_ready} ready at once, bound {min_ready}"


def _assert_owned(snap: Snapshot, rs: workloads_pb2.ReplicaSet) -> None:
    pod_hash = rs.spec.template.metadata.labels[POD_TEMPLATE_HASH]
    assert rs.metadata.name == f"web-{pod_hash}"
    assert [(r.kind, r.name, r.uid, r.controller) for r in rs.metadata.owner_references] == [
        ("Deployment", "web", snap.deployment.metadata.uid, True)
    ]
    pods = snap.pods_of(rs)
    assert len(pods) == len(snap.pods) == rs.spec.replicas
    for pod in pods:
        assert dict(pod.metadata.labels) == {"app": "web", POD_TEMPLATE_HASH: pod_hash}
        assert pod.metadata.name.startswith(f"web-{pod_hash}-")
        assert list(pod.metadata.owner_references) == [
            meta_pb2.OwnerReference(
                api_version="apps/v1",
                kind="ReplicaSet",
                name=rs.metadata.name,
                uid=rs.metadata.uid,
                controller=True,
                block_owner_deletion=True,
            )
        ]


async def _assert_scaling_events(objects: ObjectStore) -> None:
    events, _ = await objects.list_all(EVENT, "default")
    reasons = {(e.involved_object.kind, e.reason) for e in events if isinstance(e, event_pb2.Event)}
    assert ("Deployment", "ScalingReplicaSet") in reasons
    assert ("ReplicaSet", "SuccessfulCreate") in reasons
    assert ("ReplicaSet", "SuccessfulDelete") in reasons


async def test_scaling_a_deployment_up_and_down() -> None:
    async with running_cluster() as cluster:
        await cluster.api.apply(deployment("httpd:1", replicas=2, surge="25%", unavailable="25%"))
        await cluster.wait_for("2 pods", rolled_out("httpd:1", 2))
        await cluster.api.apply(deployment("httpd:1", replicas=6, surge="25%", unavailable="25%"))
        await cluster.wait_for("6 pods", rolled_out("httpd:1", 6), max_total=8)
        await cluster.api.apply(deployment("httpd:1", replicas=1, surge="25%", unavailable="25%"))
        snap = await cluster.wait_for("1 pod", rolled_out("httpd:1", 1), max_total=8)
        assert len(snap.replica_sets) == 1


# -- the shells on a stale cache ----------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _idle_informers(objects: ObjectStore, *kinds: str) -> dict[str, Informer]:
    """Informers that are not running: their caches hold only what a test puts there."""
    return {kind: Informer(objects, by_kind(kind)) for kind in kinds}


async def test_a_stale_cache_does_not_make_the_replica_set_controller_create_twice() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    rs = workloads_pb2.ReplicaSet()
    rs.metadata.name = "web-1"
    rs.spec.replicas = 3
    rs.spec.selector.match_labels["app"] = "web"
    rs.spec.template.metadata.labels["app"] = "web"
    rs.spec.template.spec.containers.add(name="web", image="httpd:1")
    created = await api.create(rs)
    clock = FakeClock()
    controller = ReplicaSetController(
        api, EventRecorder(api, "test"), expectations=Expectations(timeout=30, clock=clock)
    )
    informers = _idle_informers(objects, "ReplicaSet", "Pod")
    controller.bind(informers, WorkQueue())
    informers["ReplicaSet"].items["default/web-1"] = created

    async def pods() -> int:
        return len((await objects.list_all(POD, "default"))[0])

    assert await controller.sync("default/web-1") is None
    assert await pods() == 3
    # The cache has not seen the 3 pods: without expectations this would create 3 more.
    assert await controller.sync("default/web-1") == 30
    assert await pods() == 3
    task = asyncio.create_task(informers["Pod"].run())
    try:
        async with asyncio.timeout(WAIT):
            await informers["Pod"].synced.wait()
        assert controller.expectations.satisfied("default/web-1")
        await controller.sync("default/web-1")
        assert await pods() == 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class SteppingTimer:
    """A timer whose every reading is `step` seconds after the last: each count takes `step`."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


async def _paced_controller(
    step: float,
) -> tuple[ReplicaSetController, WorkQueue, dict[str, Informer], ObjectStore]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    rs = workloads_pb2.ReplicaSet()
    rs.metadata.name = "web-1"
    rs.spec.replicas = 3
    rs.spec.selector.match_labels["app"] = "web"
    rs.spec.template.metadata.labels["app"] = "web"
    rs.spec.template.spec.containers.add(name="web", image="httpd:1")
    created = await api.create(rs)
    controller = ReplicaSetController(
        api, EventRecorder(api, "test"), expectations=Expectations(timeout=30, clock=FakeClock())
    )
    controller.timer = SteppingTimer(step)
    informers = _idle_informers(objects, "ReplicaSet", "Pod")
    queue = WorkQueue(coalesce=0.1)
    controller.bind(informers, queue)
    informers["ReplicaSet"].items["default/web-1"] = created
    return controller, queue, informers, objects


@pytest.mark.parametrize(
    ("step", "window"),
    [
        pytest.param(0.004, 0.2, id="fifty-times-the-count"),
        pytest.param(0.001, 0.1, id="never-below-the-common-window"),
        pytest.param(0.1, 1.0, id="at-most-a-second"),
    ],
)
async def test_a_settled_replica_set_is_paced_by_its_count(step: float, window: float) -> None:
    controller, queue, informers, objects = await _paced_controller(step)
    await controller.sync("default/web-1")  # creates its 3 pods: not settled
    assert queue.window("default/web-1") == 0.1
    informers["Pod"]._replace(*await objects.list_all(POD, "default"))  # the cache shows the 3 pods
    await controller.sync("default/web-1")  # nothing to create or delete: settled
    assert queue.window("default/web-1") == pytest.approx(window)


async def test_a_scaled_replica_set_leaves_its_settled_window() -> None:
    controller, queue, _, _ = await _paced_controller(0.01)
    queue.pace("default/web-1", 0.5)
    rs = controller._informer().items["default/web-1"]
    assert isinstance(rs, workloads_pb2.ReplicaSet)
    scaled = workloads_pb2.ReplicaSet()
    scaled.CopyFrom(rs)
    scaled.spec.replicas = 5
    scaled.metadata.generation += 1
    assert list(controller.keys_for("ReplicaSet", CacheEvent(Change.MODIFIED, rs, rs, 2))) == ["default/web-1"]
    assert queue.window("default/web-1") == 0.5  # a status write keeps the window
    assert list(controller.keys_for("ReplicaSet", CacheEvent(Change.MODIFIED, scaled, rs, 3))) == ["default/web-1"]
    assert queue.window("default/web-1") == 0.1


async def test_a_replica_set_waiting_for_its_expectations_is_paced_until_they_are_met() -> None:
    controller, queue, informers, objects = await _paced_controller(0.004)
    await controller.sync("default/web-1")  # creates its 3 pods
    assert queue.window("default/web-1") == 0.1
    await controller.sync("default/web-1")  # the cache shows none yet: only counting
    assert queue.window("default/web-1") == pytest.approx(0.2)
    informers["Pod"]._replace(*await objects.list_all(POD, "default"))  # the third creation meets them
    assert queue.window("default/web-1") == 0.1


async def test_a_scale_down_deletes_the_cached_versions_and_rereads_only_a_stale_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller, _, informers, objects = await _paced_controller(0.001)
    await controller.sync("default/web-1")
    for created in (await objects.list_all(POD, "default"))[0]:
        assert isinstance(created, pod_pb2.Pod)
        created.spec.node_name = "node-1"  # bound: deleted gracefully
        await objects.update(created)
    informers["Pod"]._replace(*await objects.list_all(POD, "default"))
    pods, _ = await objects.list_all(POD, "default")
    assert isinstance(pods[0], pod_pb2.Pod)
    stale = pod_pb2.Pod()
    stale.CopyFrom(pods[0])
    stale.status.phase = "Running"
    await objects.update(stale)  # a status write the cache has not seen
    reads: list[str] = []
    real_get = objects.get

    async def get(info: KindInfo, namespace: str, name: str) -> Message | None:
        if info.kind == "Pod":
            reads.append(name)
        return await real_get(info, namespace, name)

    monkeypatch.setattr(objects, "get", get)
    scaled = await objects.get(RS, "default", "web-1")
    assert isinstance(scaled, workloads_pb2.ReplicaSet)
    scaled.spec.replicas = 0
    informers["ReplicaSet"].items["default/web-1"] = await objects.update(scaled)
    await controller.sync("default/web-1")
    left, _ = await objects.list_all(POD, "default")
    assert all(meta(p).HasField("deletion_timestamp") for p in left) and len(left) == 3
    assert reads == [meta(pods[0]).name]  # only the pod whose cached version was stale


async def test_the_deployment_controller_waits_for_its_own_writes() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    d, _ = await api.apply(deployment("httpd:1", replicas=3, surge="25%", unavailable="25%"))
    controller = DeploymentController(
        api, EventRecorder(api, "test"), expectations=WriteExpectations(timeout=30, clock=FakeClock())
    )
    informers = _idle_informers(objects, "Deployment", "ReplicaSet", "Pod")
    controller.bind(informers, WorkQueue())
    informers["Deployment"].items["default/web"] = d
    assert await controller.sync("default/web") == 601  # look again at the progress deadline (600 s)
    sets, _ = await objects.list_all(RS, "default")
    assert len(sets) == 1
    # Its cache shows neither the ReplicaSet nor the status it wrote: it waits rather than act on that.
    assert await controller.sync("default/web") == 30
    latest = await objects.get(DEPLOYMENT, "default", "web")
    assert latest is not None
    informers["ReplicaSet"].revision = informers["Deployment"].revision = int(meta(latest).resource_version)
    assert controller.expectations.satisfied("default/web", informers)
