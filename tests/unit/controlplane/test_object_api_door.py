"""ObjectApi as the controllers' and the node API's one door to the store:
`find`, `write`, `update_status`, `bind`, `bind_all` and `remove` store what
they are given as a compare-and-swap and raise only the API's errors; a
write the leader's fence refuses is the API's FencedError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import BIND_BATCH, ObjectApi
from controlplane.apiserver.status import code_for
from controlplane.store import errors as store_errors
from controlplane.store.base import Fence
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind

POD = by_kind("Pod")
KEY = "/corral/leader"


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.spec.containers.add(name="main", image="busybox:1")
    return p


def bound(p: pod_pb2.Pod, node: str = "n1") -> pod_pb2.Pod:
    copy = pod_pb2.Pod()
    copy.CopyFrom(p)
    copy.spec.node_name = node
    return copy


def relabelled(p: pod_pb2.Pod) -> pod_pb2.Pod:
    copy = pod_pb2.Pod()
    copy.CopyFrom(p)
    copy.metadata.labels["app"] = "web"
    return copy


async def created(api: ObjectApi, *names: str) -> list[pod_pb2.Pod]:
    pods = []
    for name in names:
        p = await api.create(pod(name))
        assert isinstance(p, pod_pb2.Pod)
        pods.append(p)
    return pods


async def test_find_returns_the_stored_object_or_none() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    [p] = await created(api, "a")
    assert await api.find(POD, "default", "a") == p
    assert await api.find(POD, "default", "b") is None


async def test_writes_are_compare_and_swap_and_raise_api_errors() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    [p] = await created(api, "a")
    written = await api.bind(bound(p))
    assert written.spec.node_name == "n1"
    assert int(written.metadata.resource_version) > int(p.metadata.resource_version)
    for stale_write in (api.write, api.update_status, api.bind, api.remove):
        with pytest.raises(errors.ConflictError) as info:
            await stale_write(bound(p, "n2"))
        assert isinstance(info.value.__cause__, store_errors.ConflictError)
    await api.remove(written)
    assert await api.find(POD, "default", "a") is None
    with pytest.raises(errors.NotFoundError):
        await api.remove(written)


async def test_bind_all_binds_all_or_none() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    a, b, c = await created(api, "a", "b", "c")
    await api.update_status(b)  # b moves on: a batch holding the old b binds nothing
    with pytest.raises(errors.ConflictError):
        await api.bind_all([bound(a), bound(b), bound(c)])
    assert [(await api.find(POD, "default", n)).spec.node_name for n in "abc"] == ["", "", ""]  # type: ignore[union-attr]

    fresh = [await api.find(POD, "default", n) for n in "abc"]
    written = await api.bind_all([bound(p) for p in fresh if isinstance(p, pod_pb2.Pod)])
    assert [p.spec.node_name for p in written] == ["n1"] * 3
    assert len({p.metadata.resource_version for p in written}) == 1  # one transaction


async def test_bind_all_takes_at_most_one_batch() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    with pytest.raises(ValueError, match=str(BIND_BATCH)):
        await api.bind_all([pod(f"p{i}") for i in range(BIND_BATCH + 1)])


Write = Callable[[ObjectApi, pod_pb2.Pod], Awaitable[object]]


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda api, p: api.write(bound(p)), id="write"),
        pytest.param(lambda api, p: api.update_status(p), id="update_status"),
        pytest.param(lambda api, p: api.bind(bound(p)), id="bind"),
        pytest.param(lambda api, p: api.bind_all([bound(p)]), id="bind_all"),
        pytest.param(lambda api, p: api.remove(p), id="remove"),
        pytest.param(lambda api, p: api.delete_version(p, grace_period_seconds=0), id="delete_version"),
        pytest.param(lambda api, p: api.update(relabelled(p)), id="update"),
        pytest.param(lambda api, p: api.create(pod("new")), id="create"),
    ],
)
async def test_a_write_the_fence_refuses_is_the_apis_fenced_error(write: Write) -> None:
    store = MemoryStore()
    [p] = await created(ObjectApi(ObjectStore(store)), "a")
    term = await store.create(KEY, b"old")
    await store.delete(KEY)
    await store.create(KEY, b"new")  # another replica's term
    deposed = ObjectApi(ObjectStore(store.fenced(Fence(KEY, term))))

    with pytest.raises(errors.FencedError) as info:
        await write(deposed, p)

    assert isinstance(info.value.__cause__, store_errors.FencedError)
    assert not info.value.temporary
    assert await ObjectStore(store).get(POD, "default", "a") == p  # nothing written
    assert await ObjectStore(store).get(POD, "default", "new") is None


def test_a_fenced_error_is_failed_precondition_on_the_wire() -> None:
    assert code_for(errors.FencedError("fenced")) is grpc.StatusCode.FAILED_PRECONDITION
