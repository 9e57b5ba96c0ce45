"""The resource quota controller's sync over a memory store: a recount that lowers a quota waits
until the quota has gone `settle` seconds without a charge, so a create charged but not yet
written is not forgotten."""

from __future__ import annotations

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.resourcequota.controller import ResourceQuotaController
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import quota_pb2

KEY = "default/team"


async def charged(api: ObjectApi, pods: str) -> quota_pb2.ResourceQuota:
    """The quota as the API server leaves it after charging creates whose pods are not written yet."""
    found = await api.get("ResourceQuota", "default", "team")
    assert isinstance(found, quota_pb2.ResourceQuota)
    found.status.hard["pods"] = "3"
    found.status.used["pods"] = pods
    written = await api.update_status(found)
    assert isinstance(written, quota_pb2.ResourceQuota)
    return written


async def used(api: ObjectApi) -> str:
    found = await api.get("ResourceQuota", "default", "team")
    assert isinstance(found, quota_pb2.ResourceQuota)
    return found.status.used["pods"]


async def test_a_lowering_recount_waits_for_the_quota_to_settle() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    rq = quota_pb2.ResourceQuota()
    rq.metadata.name, rq.metadata.namespace = "team", "default"
    rq.spec.hard["pods"] = "3"
    await api.create(rq)
    controller = ResourceQuotaController(api, settle=0.5, resync=60)

    await charged(api, "1")
    assert await controller.sync(KEY) == 0.5
    assert await used(api) == "1", "a charge just made may have its pod still on the way"
    await charged(api, "2")  # charged again meanwhile: wait again
    assert await controller.sync(KEY) == 0.5
    assert await used(api) == "2"
    assert await controller.sync(KEY) == 60  # unchanged for a whole wait: the recount stands
    assert await used(api) == "0"


async def test_a_recount_that_raises_is_written_at_once() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    rq = quota_pb2.ResourceQuota()
    rq.metadata.name, rq.metadata.namespace = "team", "default"
    rq.spec.hard["configmaps"] = "3"
    await api.create(rq)
    assert await ResourceQuotaController(api, settle=0.5).sync(KEY) == 60
    found = await api.get("ResourceQuota", "default", "team")
    assert isinstance(found, quota_pb2.ResourceQuota) and dict(found.status.used) == {"configmaps": "0"}
