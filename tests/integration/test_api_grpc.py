"""The ObjectService over real gRPC against a real etcd: status codes, error
details, pagination and watches as a client sees them."""

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from controlplane.server import ServerConfig, start
from corral import client as api
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import meta_pb2, pod_pb2, service_pb2, workloads_pb2
from tests.pki import TestCluster, admin_of

pytestmark = pytest.mark.etcd
T = TypeVar("T")


@dataclass(frozen=True)
class Server:
    address: str
    admin: Credentials

    def client(self) -> api.Client:
        return api.Client(self.address, self.admin)


@pytest.fixture
async def server(etcd_endpoint: str) -> AsyncIterator[Server]:
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/it/{uuid.uuid4().hex}")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        yield Server(running.address, admin_of(running))


def deployment(name: str, port: int = 80) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name=name))
    d.spec.replicas = 2
    d.spec.selector.match_labels["app"] = name
    d.spec.template.metadata.labels["app"] = name
    c = d.spec.template.spec.containers.add(name="main", image="httpd:2.4")
    c.ports.add(container_port=port)
    return d


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_apply_get_and_error_codes(server: Server) -> None:
    c = server.client()
    result = await call(c.apply, deployment("web"))
    assert result.outcome == "created"
    again = await call(c.apply, deployment("web"))
    assert again.outcome == "unchanged"
    got = await call(c.get, "deploy", "web")
    assert isinstance(got, workloads_pb2.Deployment)
    assert got.metadata.uid == result.obj.metadata.uid
    assert got.spec.strategy.type == "RollingUpdate"
    with pytest.raises(api.NotFoundError, match='deployments.apps "nope" not found'):
        await call(c.get, "deployment", "nope")
    with pytest.raises(api.AlreadyExistsError):
        await call(c.create, deployment("web"))
    stale = workloads_pb2.Deployment()
    stale.CopyFrom(got)
    stale.metadata.resource_version = str(int(got.metadata.resource_version) - 1)
    with pytest.raises(api.ConflictError):
        await call(c.update, stale)
    c.close()


async def test_invalid_argument_carries_every_cause(server: Server) -> None:
    c = server.client()
    bad = deployment("bad", port=70000)
    bad.spec.replicas = -1
    with pytest.raises(api.InvalidError) as info:
        await call(c.apply, bad)
    assert [str(x) for x in info.value.causes] == [
        "spec.replicas: must be >= 0, got -1",
        "spec.template.spec.containers[0].ports[0].containerPort: must be 1-65535, got 70000",
    ]
    with pytest.raises(api.NotFoundError):
        await call(c.get, "deploy", "bad")
    c.close()


async def test_list_follows_pages(server: Server) -> None:
    c = server.client()
    for i in range(30):
        p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=f"p{i:02d}", labels={"n": str(i % 3)}))
        p.spec.containers.add(name="main", image="busybox:1")
        await call(c.create, p)
    page = await call(c.list_page, "pods", "default", limit=7)
    assert len(page.items) == 7 and getattr(page, "continue")
    items, revision = await call(c.list, "pods", "default", page_size=7)
    assert [i.metadata.name for i in items] == [f"p{i:02d}" for i in range(30)]
    assert int(revision) > 0
    zeros, _ = await call(c.list, "pods", "default", selector="n=0", page_size=4)
    assert len(zeros) == 10
    c.close()


def service(name: str, port: int) -> service_pb2.Service:
    svc = service_pb2.Service(metadata=meta_pb2.ObjectMeta(name=name))
    svc.spec.selector["app"] = name
    svc.spec.ports.add(port=port)
    return svc


async def test_watch_stream(server: Server) -> None:
    # Services: no controller writes them, so the events are exactly the test's.
    c = server.client()
    _, revision = await call(c.list, "services", "default")
    events: list[tuple[str, str]] = []
    done = threading.Event()

    def follow() -> None:
        watcher = server.client()
        for ev in watcher.watch("services", "default", resource_version=revision):
            events.append((ev.type, ev.obj.metadata.name))
            if len(events) == 3:
                break
        watcher.close()
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    await call(c.apply, service("w1", 80))
    await call(c.apply, service("w1", 8080))
    await call(c.delete, "svc", "w1")
    assert await call(done.wait, 15)
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    c.close()


async def test_unreachable_server_names_the_address() -> None:
    c = api.Client("127.0.0.1:1", TestCluster().admin(), timeout=3)
    with pytest.raises(api.ServerUnavailableError, match=r"(?s)127\.0\.0\.1:1.*corral server"):
        await call(c.list, "pods")
    c.close()


async def test_a_watch_from_a_compacted_resource_version_is_gone_and_a_relist_resumes(
    server: Server, etcd_endpoint: str
) -> None:
    """etcd's auto-compaction passed the client's resourceVersion: OUT_OF_RANGE (GoneError, "list
    again"), and a watch from the re-list's resourceVersion carries on."""
    from controlplane.store.etcd import EtcdStore

    c = server.client()
    _, stale = await call(c.list, "services", "default")
    await call(c.apply, service("gone1", 80))
    await call(c.apply, service("gone2", 81))
    store = await EtcdStore.connect([etcd_endpoint])
    try:
        await store.compact(await store.current_revision())
    finally:
        await store.close()
    with pytest.raises(api.GoneError, match="list again"):
        await call(lambda: next(iter(c.watch("services", "default", resource_version=stale))))
    _, fresh = await call(c.list, "services", "default")
    watcher = server.client()
    try:
        events = watcher.watch("services", "default", resource_version=fresh)
        await call(c.apply, service("gone3", 82))
        first = await asyncio.wait_for(call(next, events), 10)
        assert (first.type, first.obj.metadata.name) == ("ADDED", "gone3")
    finally:
        watcher.close()
