"""BlueGreen and Canary rollouts with the ReplicaSet and Deployment controllers
running over the memory store.

An in-test "kubelet" makes every pod Running and Ready, except pods whose
image starts with `crash`, which it shows crash-looping (CrashLoopBackOff, 4
restarts). `corral rollout promote | abort | undo` are played as the CLI does
them: a read-modify-write of the Deployment's annotations or template.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from controlplane.apiserver.errors import ConflictError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.deployment.controller import DeploymentController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.runner import ControllerManager
from controlplane.store import errors as store_errors
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import codec
from protos.corral.v1 import event_pb2, pod_pb2, workloads_pb2
from protos.deployments import without_hash
from protos.wellknown import ABORT, POD_TEMPLATE_HASH, PROMOTE, SCALE_DOWN_AT
from tests.integration.test_workload_controllers import DEPLOYMENT, EVENT, POD, RS, Snapshot

POLL = 0.02
WAIT = 8.0


def deployment(image: str, strategy: dict[str, Any], *, replicas: int = 3) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = "web", "default"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="web", image=image)
    parsed, errors = codec.from_dict(strategy, workloads_pb2.DeploymentStrategy)
    assert not errors
    d.spec.strategy.CopyFrom(parsed)
    return d


async def kubelet(objects: ObjectStore) -> None:
    """Pods start at once and become ready, unless their image crashes."""
    while True:
        pods, _ = await objects.list_all(POD, "default")
        for pod in pods:
            assert isinstance(pod, pod_pb2.Pod)
            if pod.metadata.HasField("deletion_timestamp") and pod.status.phase == "Running":
                pod.status.phase = "Succeeded"  # being deleted: its containers stop at once
            elif pod.status.phase in ("Running", "Succeeded", "Failed"):
                continue
            else:
                _start(pod)
            with contextlib.suppress(store_errors.ConflictError, store_errors.NotFoundError):
                await objects.update(pod)
        await asyncio.sleep(0.01)


def _start(pod: pod_pb2.Pod) -> None:
    pod.spec.node_name = "node-1"
    pod.status.phase = "Running"
    now = datetime.now(UTC)
    pod.status.start_time.FromDatetime(now)
    crashing = pod.spec.containers[0].image.startswith("crash")
    ready = pod.status.conditions.add(type="Ready", status="False" if crashing else "True")
    ready.last_transition_time.FromDatetime(now)
    if crashing:
        status = pod.status.container_statuses.add(name="web", restart_count=4)
        status.state.waiting.reason = "CrashLoopBackOff"


class Cluster:
    def __init__(self, api: ObjectApi, objects: ObjectStore) -> None:
        self.api = api
        self.objects = objects

    async def snapshot(self) -> Snapshot:
        d = await self.objects.get(DEPLOYMENT, "default", "web")
        assert isinstance(d, workloads_pb2.Deployment)
        sets, _ = await self.objects.list_all(RS, "default")
        pods, _ = await self.objects.list_all(POD, "default")
        # Pods being deleted (gracefully: their node removes them) no longer count.
        return Snapshot(
            d,
            [s for s in sets if isinstance(s, workloads_pb2.ReplicaSet)],
            [p for p in pods if isinstance(p, pod_pb2.Pod) and not p.metadata.HasField("deletion_timestamp")],
        )

    async def wait_for(
        self, what: str, done: Callable[[Snapshot], bool], check: Callable[[Snapshot], None] | None = None
    ) -> Snapshot:
        """Poll until `done`, calling `check` (assertions) at every poll."""
        snap: Snapshot | None = None
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    snap = await self.snapshot()
                    if check is not None:
                        check(snap)
                    if done(snap):
                        return snap
                    await asyncio.sleep(POLL)
        except TimeoutError:
            detail = f"{snap.summary()}; traffic {weights(snap)}" if snap else "-"
            raise AssertionError(f"timed out waiting for {what}: {detail}") from None

    async def change(self, edit: Callable[[workloads_pb2.Deployment], None]) -> None:
        """What the CLI does: read, change, compare-and-swap, again on a conflict."""
        for _ in range(20):
            d = await self.objects.get(DEPLOYMENT, "default", "web")
            assert isinstance(d, workloads_pb2.Deployment)
            edit(d)
            try:
                await self.api.update(d)
                return
            except ConflictError:
                continue
        raise AssertionError("conflicts all along")

    async def events(self, reason: str) -> list[event_pb2.Event]:
        events, _ = await self.objects.list_all(EVENT, "default")
        return [e for e in events if isinstance(e, event_pb2.Event) and e.reason == reason]


@contextlib.asynccontextmanager
async def running_cluster() -> AsyncIterator[Cluster]:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    recorder = EventRecorder(api, "controller-manager")
    manager = ControllerManager(objects, [ReplicaSetController(api, recorder), DeploymentController(api, recorder)])
    tasks = [
        asyncio.create_task(manager.run(), name="controllers"),
        asyncio.create_task(kubelet(objects), name="kubelet"),
    ]
    try:
        yield Cluster(api, objects)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in manager.queues.values():
            queue.close()


def image_of(snap: Snapshot, pod_hash: str) -> str:
    found = [rs for rs in snap.replica_sets if rs.spec.template.metadata.labels[POD_TEMPLATE_HASH] == pod_hash]
    return found[0].spec.template.spec.containers[0].image if found else f"?{pod_hash}"


def weights(snap: Snapshot) -> dict[str, int]:
    return {image_of(snap, t.pod_template_hash): t.weight for t in snap.deployment.status.traffic}


def hash_of(snap: Snapshot, image: str) -> str:
    return snap.rs_running(image).spec.template.metadata.labels[POD_TEMPLATE_HASH]


def available(snap: Snapshot, image: str) -> int:
    rs = snap.rs_running(image)
    return sum(1 for p in snap.pods_of(rs) if p in snap.ready)


def serving(image: str, replicas: int) -> Callable[[Snapshot], bool]:
    """`image` is stable, takes all traffic, has all its pods ready, and nothing else runs."""

    def done(snap: Snapshot) -> bool:
        others = [rs for rs in snap.replica_sets if rs.spec.template.spec.containers[0].image != image]
        return (
            weights(snap) == {image: 100}
            and image_of(snap, snap.deployment.status.stable_pod_template_hash) == image
            and available(snap, image) == replicas
            and all(rs.spec.replicas == 0 for rs in others)
            and len(snap.pods) == replicas
        )

    return done


def whole_traffic(snap: Snapshot) -> None:
    """Checked at every poll: the weights add up to 100 and point only at versions with ready pods."""
    traffic = snap.deployment.status.traffic
    assert sum(t.weight for t in traffic) == 100, weights(snap)
    for t in traffic:
        if t.weight > 0 and len(traffic) > 1:
            image = image_of(snap, t.pod_template_hash)
            assert available(snap, image) > 0, f"{image} gets {t.weight}% without a ready pod"


def one_version(snap: Snapshot) -> None:
    whole_traffic(snap)
    assert sorted(t.weight for t in snap.deployment.status.traffic)[-1] == 100, weights(snap)


# -- BlueGreen -----------------------------------------------------------------------


async def test_blue_green_switches_at_once_and_undo_switches_back() -> None:
    strategy = {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 30}}
    async with running_cluster() as cluster:
        await cluster.api.apply(deployment("httpd:1", strategy))
        v1 = (await cluster.wait_for("the first version", serving("httpd:1", 3))).rs_running("httpd:1")

        await cluster.api.apply(deployment("httpd:2", strategy))
        snap = await cluster.wait_for(
            "the switch to httpd:2", lambda s: weights(s).get("httpd:2") == 100, check=one_version
        )
        assert available(snap, "httpd:2") == 3
        switch = await cluster.events("TrafficSwitched")
        assert len(switch) == 1 and "(auto-promotion)" in switch[0].message
        snap = await cluster.wait_for(
            "the delayed scale-down to be recorded",
            lambda s: SCALE_DOWN_AT in s.rs_running("httpd:1").metadata.annotations,
        )
        assert snap.rs_running("httpd:1").spec.replicas == 3 and available(snap, "httpd:1") == 3

        # `corral rollout undo` within the delay: the old version is still fully up.
        await cluster.change(lambda d: d.spec.template.CopyFrom(without_hash(v1.spec.template)))
        snap = await cluster.wait_for(
            "the switch back to httpd:1", lambda s: weights(s).get("httpd:1") == 100, check=one_version
        )
        assert snap.rs_running("httpd:1").metadata.uid == v1.metadata.uid
        assert SCALE_DOWN_AT not in snap.rs_running("httpd:1").metadata.annotations
        assert len(await cluster.events("TrafficSwitched")) == 2


async def test_blue_green_without_auto_promotion_waits_for_promote() -> None:
    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": 0}}
    async with running_cluster() as cluster:
        await cluster.api.apply(deployment("httpd:1", strategy, replicas=2))
        await cluster.wait_for("the first version", serving("httpd:1", 2))
        await cluster.api.apply(deployment("httpd:2", strategy, replicas=2))
        snap = await cluster.wait_for(
            "the preview to wait",
            lambda s: any(c.reason == "RolloutPaused" for c in s.deployment.status.conditions),
            check=one_version,
        )
        assert weights(snap) == {"httpd:1": 100, "httpd:2": 0}
        preview = hash_of(snap, "httpd:2")
        await cluster.change(lambda d: d.metadata.annotations.__setitem__(PROMOTE, preview))
        snap = await cluster.wait_for("the promotion", serving("httpd:2", 2), check=one_version)
        assert PROMOTE not in snap.deployment.metadata.annotations


# -- Canary --------------------------------------------------------------------------

CANARY = {
    "type": "Canary",
    "canary": {"steps": [{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {}}]},
}


def at_step(index: int, weight: int) -> Callable[[Snapshot], bool]:
    def done(snap: Snapshot) -> bool:
        canary = snap.deployment.status.canary
        return (
            bool(canary.pod_template_hash)
            and canary.current_step_index == index
            and weight
            in {t.weight for t in snap.deployment.status.traffic if t.pod_template_hash == canary.pod_template_hash}
        )

    return done


async def _canary_at_pause(cluster: Cluster, image: str) -> Snapshot:
    await cluster.api.apply(deployment(image, CANARY, replicas=4))
    return await cluster.wait_for(f"{image} to pause at step 4", at_step(3, 50), check=whole_traffic)


async def test_canary_walks_its_steps_and_is_promoted() -> None:
    async with running_cluster() as cluster:
        await cluster.api.apply(deployment("httpd:1", CANARY, replicas=4))
        await cluster.wait_for("the first version", serving("httpd:1", 4))
        await cluster.api.apply(deployment("httpd:2", CANARY, replicas=4))
        snap = await cluster.wait_for("weight 25%", at_step(1, 25), check=whole_traffic)
        assert weights(snap) == {"httpd:1": 75, "httpd:2": 25}
        assert snap.rs_running("httpd:1").spec.replicas == 4 and snap.rs_running("httpd:2").spec.replicas == 1
        # The timed pause (1 s) passes by itself; the next one waits for a promotion.
        snap = await cluster.wait_for("weight 50%", at_step(3, 50), check=whole_traffic)
        assert weights(snap) == {"httpd:1": 50, "httpd:2": 50}
        assert snap.rs_running("httpd:2").spec.replicas == 2
        await cluster.change(lambda d: d.metadata.annotations.__setitem__(PROMOTE, "3"))
        snap = await cluster.wait_for("the promotion", serving("httpd:2", 4), check=whole_traffic)
        assert not snap.deployment.status.HasField("canary")
        assert PROMOTE not in snap.deployment.metadata.annotations
        assert len(await cluster.events("CanaryPromoted")) == 1
        assert len(await cluster.events("TrafficWeightSet")) == 2


async def test_aborting_a_canary_rolls_back() -> None:
    async with running_cluster() as cluster:
        await cluster.api.apply(deployment("httpd:1", CANARY, replicas=4))
        await cluster.wait_for("the first version", serving("httpd:1", 4))
        snap = await _canary_at_pause(cluster, "httpd:2")
        canary = snap.deployment.status.canary.pod_template_hash
        await cluster.change(lambda d: d.metadata.annotations.__setitem__(ABORT, canary))
        snap = await cluster.wait_for("the abort", serving("httpd:1", 4), check=whole_traffic)
        assert snap.deployment.spec.template.spec.containers[0].image == "httpd:1"
        assert snap.deployment.status.canary.aborted == "abort requested with `corral rollout abort`"
        progressing = next(c for c in snap.deployment.status.conditions if c.type == "Progressing")
        assert (progressing.status, progressing.reason) == ("False", "RolloutAborted")
        [event] = await cluster.events("RolloutAborted")
        assert event.type == "Warning" and "all traffic is back on" in event.message


async def test_a_crash_looping_canary_is_aborted_by_itself() -> None:
    async with running_cluster() as cluster:
        await cluster.api.apply(deployment("httpd:1", CANARY, replicas=4))
        await cluster.wait_for("the first version", serving("httpd:1", 4))
        await cluster.api.apply(deployment("crash:1", CANARY, replicas=4))
        snap = await cluster.wait_for(
            "the automatic abort", lambda s: bool(s.deployment.status.canary.aborted), check=whole_traffic
        )
        assert "crash-looping" in snap.deployment.status.canary.aborted
        assert weights(snap)["httpd:1"] == 100
        snap = await cluster.wait_for("the rollback", serving("httpd:1", 4), check=whole_traffic)
        assert snap.deployment.spec.template.spec.containers[0].image == "httpd:1"
        [event] = await cluster.events("RolloutAborted")
        assert "crash-looping" in event.message


# -- the shell: a rollback's template write --------------------------------------------


async def test_a_rollback_survives_a_concurrent_scale_but_not_a_new_template() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    controller = DeploymentController(api, EventRecorder(api, "test"))
    stale, _ = await api.apply(deployment("httpd:2", CANARY))
    assert isinstance(stale, workloads_pb2.Deployment)
    target = deployment("httpd:1", CANARY).spec.template

    scaled = workloads_pb2.Deployment()
    scaled.CopyFrom(stale)
    scaled.spec.replicas = 5
    await api.update(scaled)
    await controller._roll_back("default/web", stale, target)
    d = await api.find(DEPLOYMENT, "default", "web")
    assert isinstance(d, workloads_pb2.Deployment)
    assert (d.spec.template.spec.containers[0].image, d.spec.replicas) == ("httpd:1", 5)

    stale = d
    await api.apply(deployment("httpd:3", CANARY))
    await controller._roll_back("default/web", stale, deployment("httpd:2", CANARY).spec.template)
    d = await api.find(DEPLOYMENT, "default", "web")
    assert isinstance(d, workloads_pb2.Deployment)
    assert d.spec.template.spec.containers[0].image == "httpd:3"  # the user's new template wins
