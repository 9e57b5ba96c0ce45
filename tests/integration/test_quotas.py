"""ResourceQuotas and LimitRanges through `ObjectApi`, with the controllers running.

- concurrent creates racing for a quota's last pod slot: exactly one wins (the
  quota's status is charged by compare-and-swap before each write), on the
  memory store and on real etcd, reading the quota from the store or from the
  serving replica's watch-fed caches;
- a deleted pod frees its slot once the resource quota controller recounts;
- a Deployment scaled beyond its namespace's quota gets the pods that fit and
  FailedCreate events on its ReplicaSet naming the quota;
- a ReplicaSet's pods get their LimitRange's defaults;
- an update is charged for what it adds (a Service made NodePort), and a pod
  whose resources a LimitRange filled applies again unchanged;
- PersistentVolumeClaims: a LimitRange's storage bounds, and storage quotas.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest
from google.protobuf.message import Message

from controlplane.admission_cache import AdmissionCache
from controlplane.apiserver.admission_reads import LiveReads
from controlplane.apiserver.errors import ForbiddenError
from controlplane.apiserver.handlers import ApplyOutcome, ObjectApi
from controlplane.controllers.deployment.controller import DeploymentController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.resourcequota.controller import ResourceQuotaController
from controlplane.controllers.runner import ControllerManager
from controlplane.informer import Informer
from controlplane.store.base import Store
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import codec
from protos.corral.v1 import event_pb2, pod_pb2, quota_pb2, service_pb2, storage_pb2, workloads_pb2
from protos.kinds import meta
from protos.wellknown import LIMIT_RANGER

WAIT = 10.0
RACERS = 12
T = TypeVar("T")
M = TypeVar("M", bound=Message)


def parsed(data: dict[str, Any], cls: type[M]) -> M:
    message, errors = codec.from_dict(data, cls)
    assert not errors, errors
    return message


def pod(name: str) -> pod_pb2.Pod:
    return parsed(
        {"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
        pod_pb2.Pod,
    )


def resource_quota(**hard: Any) -> quota_pb2.ResourceQuota:
    data = {"metadata": {"name": "team", "namespace": "default"}, "spec": {"hard": hard}}
    return parsed(data, quota_pb2.ResourceQuota)


async def eventually(what: str, check: Callable[[], Awaitable[T | None]]) -> T:
    async with asyncio.timeout(WAIT):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.02)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


async def used(api: ObjectApi) -> dict[str, str]:
    found = await api.get("ResourceQuota", "default", "team")
    assert isinstance(found, quota_pb2.ResourceQuota)
    return dict(found.status.used)


@contextlib.asynccontextmanager
async def controllers(api: ObjectApi, objects: ObjectStore) -> AsyncIterator[None]:
    recorder = EventRecorder(api, "controller-manager")
    manager = ControllerManager(
        objects,
        [ReplicaSetController(api, recorder), DeploymentController(api, recorder), ResourceQuotaController(api)],
    )
    task = asyncio.create_task(manager.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for queue in manager.queues.values():
            queue.close()


@contextlib.asynccontextmanager
async def cached_api(objects: ObjectStore) -> AsyncIterator[tuple[ObjectApi, Informer]]:
    """An ObjectApi whose admission reads the server's caches (informers running), and its quota informer."""
    manager = ControllerManager(objects, [])
    kinds = ("Namespace", "LimitRange", "ResourceQuota")
    namespaces, ranges, quotas = (manager.informer(k) for k in kinds)
    cache = AdmissionCache(namespaces, ranges, quotas, LiveReads(objects))
    task = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(manager.informer(k).synced.wait() for k in kinds))
        yield ObjectApi(objects, admission_reads=cache), quotas
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_concurrent_creates_take_the_last_slot_once(store: Store, key_prefix: str) -> None:
    api = ObjectApi(ObjectStore(store, key_prefix))
    await api.create(resource_quota(pods=1))
    await _race_for_the_last_slot(api)


async def test_concurrent_creates_on_the_caches_take_the_last_slot_once(store: Store, key_prefix: str) -> None:
    async with cached_api(ObjectStore(store, key_prefix)) as (api, quotas):
        await api.create(resource_quota(pods=2))
        await api.create(pod("first"))  # counted and charged: pods=1
        charged = await api.get("ResourceQuota", "default", "team")

        async def cached() -> bool:
            found = quotas.items.get("default/team")
            return found is not None and meta(found).resource_version == charged.metadata.resource_version

        await eventually("the charged quota in the cache", cached)  # the racers decide on it, then conflict
        await _race_for_the_last_slot(api, before=["first"], limit=2)


async def _race_for_the_last_slot(api: ObjectApi, *, before: Sequence[str] = (), limit: int = 1) -> None:
    results = await asyncio.gather(*(api.create(pod(f"racer-{i}")) for i in range(RACERS)), return_exceptions=True)
    won = [r for r in results if isinstance(r, pod_pb2.Pod)]
    refused = [r for r in results if isinstance(r, ForbiddenError)]
    assert len(won) == 1 and len(refused) == RACERS - 1, results
    assert f"exceeded quota: team, requested: pods=1, used: pods={limit}, limited: pods={limit}" in str(refused[0])
    listed = await api.list("Pod", "default")
    assert sorted(p.metadata.name for p in listed.items) == sorted([*before, won[0].metadata.name])
    assert await used(api) == {"pods": str(limit)}


async def test_a_failed_write_gives_its_charge_back() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    await api.create(resource_quota(pods=2))
    await api.create(pod("a"))
    with pytest.raises(Exception, match="already exists"):
        await api.create(pod("a"))
    assert await used(api) == {"pods": "1"}


async def test_a_delete_frees_the_slot_after_the_recount() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    async with controllers(api, objects):
        await api.create(resource_quota(pods=1))
        await api.create(pod("first"))
        with pytest.raises(ForbiddenError, match="exceeded quota: team"):
            await api.create(pod("second"))
        await api.delete("Pod", "default", "first", grace_period_seconds=0)
        await eventually("the recount", lambda: _has(api, {"pods": "0"}))
        await api.create(pod("second"))
        assert await used(api) == {"pods": "1"}


async def _has(api: ObjectApi, expected: dict[str, str]) -> bool:
    return await used(api) == expected


async def test_a_finished_pod_frees_its_slot() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    async with controllers(api, objects):
        await api.create(resource_quota(pods=1))
        created = await api.create(pod("job"))
        assert isinstance(created, pod_pb2.Pod)
        created.status.phase = "Succeeded"
        await api.update_status(created)
        await eventually("the recount", lambda: _has(api, {"pods": "0"}))


async def test_a_deployment_beyond_its_quota_gets_failed_create_events() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    async with controllers(api, objects):
        await api.create(resource_quota(pods=2))
        await api.create(
            parsed(
                {
                    "metadata": {"name": "defaults", "namespace": "default"},
                    "spec": {"limits": [{"type": "Container", "default": {"cpu": "200m"}}]},
                },
                quota_pb2.LimitRange,
            )
        )
        await api.apply(
            parsed(
                {
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {
                        "replicas": 3,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": "httpd:1"}]},
                        },
                    },
                },
                workloads_pb2.Deployment,
            )
        )

        async def failed_create() -> event_pb2.Event | None:
            events = (await api.list("Event", "default")).items
            return next(
                (e for e in events if isinstance(e, event_pb2.Event) and e.reason == "FailedCreate"),
                None,
            )

        event = await eventually("a FailedCreate event", failed_create)
        assert event.involved_object.kind == "ReplicaSet"
        assert "is forbidden: exceeded quota: team, requested: pods=1, used: pods=2, limited: pods=2" in event.message
        pods = [p for p in (await api.list("Pod", "default")).items if isinstance(p, pod_pb2.Pod)]
        assert len(pods) == 2
        for p in pods:
            assert dict(p.spec.containers[0].resources.limits) == {"cpu": "200m"}
            assert p.metadata.annotations[LIMIT_RANGER] == (
                "LimitRanger plugin set: cpu request for container web; cpu limit for container web"
            )
        rs = (await api.list("ReplicaSet", "default")).items[0]
        assert isinstance(rs, workloads_pb2.ReplicaSet) and rs.spec.replicas == 3


async def test_an_update_is_charged_for_what_it_adds() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    await api.create(resource_quota(**{"services.nodeports": 1}))
    service = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 8443}]},
    }
    await api.apply(parsed(service, service_pb2.Service))
    service["spec"]["type"] = "NodePort"  # type: ignore[index]
    with pytest.raises(ForbiddenError, match="requested: services.nodeports=2, used: services.nodeports=0"):
        await api.apply(parsed(service, service_pb2.Service))
    stored = await api.get("Service", "default", "web")
    assert isinstance(stored, service_pb2.Service) and stored.spec.type == "ClusterIP"


async def test_a_pod_filled_by_a_limit_range_applies_again_unchanged() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    limits = {"type": "Container", "default": {"memory": "64Mi"}}
    data = {"metadata": {"name": "defaults", "namespace": "default"}, "spec": {"limits": [limits]}}
    await api.create(parsed(data, quota_pb2.LimitRange))
    created, outcome = await api.apply(pod("web"))
    assert outcome is ApplyOutcome.CREATED
    assert isinstance(created, pod_pb2.Pod) and dict(created.spec.containers[0].resources.limits) == {"memory": "64Mi"}
    _, again = await api.apply(pod("web"))
    assert again is ApplyOutcome.UNCHANGED


def claim(name: str, storage: str) -> storage_pb2.PersistentVolumeClaim:
    data = {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local-path",
            "resources": {"requests": {"storage": storage}},
        },
    }
    return parsed(data, storage_pb2.PersistentVolumeClaim)


async def test_claims_are_bounded_by_limit_ranges_and_counted_by_quotas() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    limits = {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}
    data = {"metadata": {"name": "storage", "namespace": "default"}, "spec": {"limits": [limits]}}
    await api.create(parsed(data, quota_pb2.LimitRange))
    await api.create(
        resource_quota(
            **{"requests.storage": "12Gi", "local-path.storageclass.storage.k8s.io/persistentvolumeclaims": 2}
        )
    )
    with pytest.raises(ForbiddenError) as caught:
        await api.create(claim("huge", "20Gi"))
    assert caught.value.causes[0].field == "spec.resources.requests.storage"
    assert "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi" in str(caught.value)
    await api.create(claim("data", "8Gi"))
    with pytest.raises(ForbiddenError, match="requested: requests.storage=8Gi, used: requests.storage=8Gi"):
        await api.create(claim("more", "8Gi"))
    await api.create(claim("small", "4Gi"))
    assert await used(api) == {
        "requests.storage": "12Gi",
        "local-path.storageclass.storage.k8s.io/persistentvolumeclaims": "2",
    }
