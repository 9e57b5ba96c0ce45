"""Admission on watch-fed caches (`controlplane.admission_cache`) through `ObjectApi`.

The caches' watch is held (`LaggingSource`) to make a replica's lag behind the
store deterministic: `this` is the replica whose admission reads the caches,
`other` another replica (its writes are not told to `this` one's caches).

- a namespace without quotas and LimitRanges costs no store read per create,
  with or without a Namespace object;
- a Namespace created a moment ago (through either replica) is used at once:
  its Pod Security level applies;
- a namespace the cache holds as Terminating is read again before refusing;
- a LimitRange created right before a pod applies to it (a live lookup), and
  a remembered live answer is forgotten once the watch brings a change;
- a quota the cache holds stale still refuses an over-quota create (the
  charge's compare-and-swap fails, the quota is read again), a quota created
  right before a pod is charged for it, and a quota the cache holds full does not
  refuse a create the store has room for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from google.protobuf.message import Message

from controlplane.admission_cache import LIVE_LOOKUP_TTL, AdmissionCache
from controlplane.apiserver.admission_reads import LiveReads
from controlplane.apiserver.errors import ForbiddenError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_security import ClusterPolicy
from controlplane.informer import Informer
from controlplane.store.base import KeyValue, ListPage
from controlplane.store.memory import ManualClock, MemoryStore
from controlplane.store.objects import ObjectEvent, ObjectStore
from protos import codec
from protos.corral.v1 import namespace_pb2, pod_pb2, quota_pb2
from protos.kinds import KindInfo, by_kind
from protos.pod_security import ENFORCE_LABEL

WAIT = 5.0
M = TypeVar("M", bound=Message)


class CountingStore(MemoryStore):
    """A memory store that counts its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key: str) -> KeyValue | None:
        self.reads += 1
        return await super().get(key)

    async def list(self, prefix: str, **kwargs: Any) -> ListPage:
        self.reads += 1
        return await super().list(prefix, **kwargs)


class LaggingSource:
    """The store's lists, and watches that deliver its changes only while open."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self.open = asyncio.Event()
        self.open.set()

    async def list_all(self, info: KindInfo, namespace: str = "") -> tuple[list[Message], int]:
        return await self.objects.list_all(info, namespace)

    async def watch(self, info: KindInfo, namespace: str = "", *, start_revision: int) -> AsyncIterator[ObjectEvent]:
        async for ev in self.objects.watch(info, namespace, start_revision=start_revision):
            await self.open.wait()
            yield ev


@dataclass
class Replicas:
    store: CountingStore
    this: ObjectApi
    other: ObjectApi
    source: LaggingSource
    informers: dict[str, Informer]
    clock: ManualClock

    async def caught_up(self, *deleted_from: str) -> None:
        """Open the watch and wait until every cache holds what the store does (and, for the
        kinds the last write deleted from, has seen that write)."""
        self.source.open.set()
        revision = await self.store.current_revision()
        async with asyncio.timeout(WAIT):
            for kind in deleted_from:
                while self.informers[kind].revision < revision:
                    await asyncio.sleep(0.01)
            for informer in self.informers.values():
                listed, _ = await self.source.list_all(informer.info)
                while {o.SerializeToString() for o in listed} != {
                    o.SerializeToString() for o in informer.items.values()
                }:
                    await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def replicas(*, policy: ClusterPolicy | None = None) -> AsyncIterator[Replicas]:
    store = CountingStore()
    objects = ObjectStore(store)
    source = LaggingSource(objects)
    informers = {kind: Informer(source, by_kind(kind)) for kind in ("Namespace", "LimitRange", "ResourceQuota")}
    clock = ManualClock()
    cache = AdmissionCache(
        informers["Namespace"], informers["LimitRange"], informers["ResourceQuota"], LiveReads(objects), clock=clock
    )
    tasks = [asyncio.create_task(i.run()) for i in informers.values()]
    try:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*(i.synced.wait() for i in informers.values()))
        yield Replicas(
            store,
            ObjectApi(objects, policy=policy, admission_reads=cache),
            ObjectApi(objects, policy=policy),
            source,
            informers,
            clock,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def parsed(data: dict[str, Any], cls: type[M]) -> M:
    message, errors = codec.from_dict(data, cls)
    assert not errors, errors
    return message


def pod(name: str, namespace: str = "default", **container: Any) -> pod_pb2.Pod:
    return parsed(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "x:1", **container}]},
        },
        pod_pb2.Pod,
    )


def namespace(name: str, **labels: str) -> namespace_pb2.Namespace:
    return parsed({"metadata": {"name": name, "labels": labels}}, namespace_pb2.Namespace)


def limit_range(namespace: str = "default") -> quota_pb2.LimitRange:
    return parsed(
        {
            "metadata": {"name": "defaults", "namespace": namespace},
            "spec": {"limits": [{"type": "Container", "default": {"cpu": "200m"}}]},
        },
        quota_pb2.LimitRange,
    )


def resource_quota(pods: int) -> quota_pb2.ResourceQuota:
    return parsed(
        {"metadata": {"name": "team", "namespace": "default"}, "spec": {"hard": {"pods": str(pods)}}},
        quota_pb2.ResourceQuota,
    )


async def used(api: ObjectApi) -> dict[str, str]:
    found = await api.get("ResourceQuota", "default", "team")
    assert isinstance(found, quota_pb2.ResourceQuota)
    return dict(found.status.used)


# -- no store read in the common case ------------------------------------------------------------------


@pytest.mark.parametrize(
    "with_object", [pytest.param(False, id="no-namespace-object"), pytest.param(True, id="namespace-object")]
)
async def test_a_namespace_without_quotas_or_limit_ranges_costs_no_store_read_per_create(with_object: bool) -> None:
    async with replicas(policy=ClusterPolicy("baseline", False)) as r:
        if with_object:
            await r.this.create(namespace("team"))
            await r.caught_up()
        await r.this.create(pod("first", "team"))  # at most one live lookup per kind, remembered
        before = r.store.reads
        for i in range(5):
            await r.this.create(pod(f"pod-{i}", "team"))
        assert r.store.reads == before


async def test_remembered_lookups_expire() -> None:
    async with replicas() as r:
        await r.this.create(pod("first"))
        before = r.store.reads
        r.clock.advance(LIVE_LOOKUP_TTL + 1)
        await r.this.create(pod("second"))
        assert r.store.reads == before + 3  # the Namespace, LimitRanges, quotas: read again


# -- namespaces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("via", "looked_up_before"),
    [
        pytest.param("this", True, id="this-replica-after-a-remembered-none"),
        pytest.param("other", False, id="another-replica"),
    ],
)
async def test_a_namespace_created_a_moment_ago_is_used_at_once(via: str, looked_up_before: bool) -> None:
    async with replicas(policy=ClusterPolicy("privileged", False)) as r:
        if looked_up_before:
            await r.this.create(pod("before", "team"))  # "team" has no Namespace object: remembered
        r.source.open.clear()  # this replica's caches lag from here on
        await getattr(r, via).create(namespace("team", **{ENFORCE_LABEL: "restricted"}))
        with pytest.raises(Exception, match="restricted"):
            await r.this.create(pod("root", "team", securityContext={"privileged": True}))


async def test_a_namespace_the_cache_holds_terminating_is_read_again_before_refusing() -> None:
    async with replicas() as r:
        await r.other.create(namespace("team"))
        await r.other.delete("Namespace", "", "team")  # marked Terminating
        await r.caught_up()
        with pytest.raises(ForbiddenError, match="being terminated"):
            await r.this.create(pod("refused", "team"))
        r.source.open.clear()
        found = await r.other.get("Namespace", "", "team")
        await r.other.remove(found)  # finalized and gone: the cache still holds it Terminating
        await r.this.create(pod("admitted", "team"))


# -- LimitRanges -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("via", "looked_up_before"),
    [
        pytest.param("this", True, id="this-replica-after-a-remembered-none"),
        pytest.param("other", False, id="another-replica"),
    ],
)
async def test_a_limit_range_created_right_before_a_pod_applies(via: str, looked_up_before: bool) -> None:
    async with replicas() as r:
        if looked_up_before:
            await r.this.create(pod("before"))
        r.source.open.clear()
        await getattr(r, via).create(limit_range())
        created = await r.this.create(pod("web"))
        assert isinstance(created, pod_pb2.Pod)
        assert dict(created.spec.containers[0].resources.limits) == {"cpu": "200m"}


async def test_a_remembered_lookup_is_forgotten_when_the_watch_brings_a_change() -> None:
    async with replicas() as r:
        r.source.open.clear()
        await r.other.create(limit_range())
        await r.this.create(pod("first"))  # the LimitRange found by a live lookup, remembered
        await r.other.delete("LimitRange", "default", "defaults")
        await r.caught_up("LimitRange")  # the informer saw it come and go
        created = await r.this.create(pod("web"))
        assert isinstance(created, pod_pb2.Pod)
        assert not created.spec.containers[0].resources.limits


# -- quotas -------------------------------------------------------------------------------------------


async def test_a_stale_quota_in_the_cache_still_refuses_an_over_quota_create() -> None:
    async with replicas() as r:
        await r.other.create(resource_quota(pods=1))
        await r.this.create(pod("first"))  # charged: pods=1 (the quota is full)
        await r.other.delete("Pod", "default", "first", grace_period_seconds=0)
        quota = await r.other.get("ResourceQuota", "default", "team")
        assert isinstance(quota, quota_pb2.ResourceQuota)
        quota.status.used["pods"] = "0"  # the recount frees the slot
        await r.other.update_status(quota)
        await r.caught_up()
        r.source.open.clear()
        await r.other.create(pod("second"))  # takes the slot: this replica's cache still says pods=0
        with pytest.raises(ForbiddenError, match="exceeded quota: team, requested: pods=1, used: pods=1"):
            await r.this.create(pod("third"))
        assert await used(r.other) == {"pods": "1"}


@pytest.mark.parametrize(
    ("via", "looked_up_before"),
    [
        pytest.param("this", True, id="this-replica-after-a-remembered-none"),
        pytest.param("other", False, id="another-replica"),
    ],
)
async def test_a_quota_created_right_before_a_pod_charges_it(via: str, looked_up_before: bool) -> None:
    async with replicas() as r:
        if looked_up_before:
            await r.this.create(pod("before"))  # no quota: remembered
        r.source.open.clear()
        await getattr(r, via).create(resource_quota(pods=5))
        await r.this.create(pod("after"))
        assert await used(r.other) == {"pods": "2" if looked_up_before else "1"}


async def test_a_quota_the_cache_holds_full_does_not_refuse_a_create_the_store_has_room_for() -> None:
    async with replicas() as r:
        await r.other.create(resource_quota(pods=1))
        await r.this.create(pod("first"))
        await r.caught_up()
        r.source.open.clear()
        await r.other.delete("Pod", "default", "first", grace_period_seconds=0)
        quota = await r.other.get("ResourceQuota", "default", "team")
        assert isinstance(quota, quota_pb2.ResourceQuota)
        quota.status.used["pods"] = "0"
        await r.other.update_status(quota)
        await r.this.create(pod("second"))
        assert await used(r.other) == {"pods": "1"}
