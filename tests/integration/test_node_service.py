"""The NodeService over real gRPC and etcd, as an agent uses it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from controlplane.apiserver.handlers import ObjectApi
from controlplane.informer import Informer
from controlplane.nodeapi import service as node_service
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.server import RunningServer, ServerConfig, start
from controlplane.store.etcd import EtcdStore
from controlplane.store.objects import ObjectStore
from controlplane.tunnels import TunnelRegistry
from protos.corral.v1 import api_pb2, api_pb2_grpc, node_pb2, node_service_pb2, node_service_pb2_grpc, pod_pb2
from protos.kinds import KindInfo, by_kind
from tests.pki import TestCluster, admin_of, aio_channel, node_of

pytestmark = pytest.mark.etcd


@dataclass
class Plane:
    """A running control plane, and channels to it: the admin's, and each node's with its own certificate."""

    running: RunningServer
    stack: AsyncExitStack

    async def admin(self) -> api_pb2_grpc.ObjectServiceAsyncStub:
        channel = await self.stack.enter_async_context(aio_channel(self.running.address, admin_of(self.running)))
        return api_pb2_grpc.ObjectServiceStub(channel)

    async def node(self, name: str) -> node_service_pb2_grpc.NodeServiceAsyncStub:
        """The NodeService as node ``name`` (with that node's certificate) calls it."""
        credentials = node_of(self.running, name)
        channel = await self.stack.enter_async_context(aio_channel(self.running.address, credentials))
        return node_service_pb2_grpc.NodeServiceStub(channel)


@pytest.fixture
async def plane(etcd_endpoint: str) -> AsyncIterator[Plane]:
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/ns/{uuid.uuid4().hex}")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        yield Plane(running, stack)


def registration(name: str) -> node_service_pb2.RegisterRequest:
    status = node_pb2.NodeStatus(runtimes=["docker"])
    status.capacity.update({"cpu": "2", "memory": "4Gi"})
    status.allocatable.update({"cpu": "2", "memory": "4Gi"})
    return node_service_pb2.RegisterRequest(node_name=name, labels={"zone": "a"}, status=status)


async def test_register_heartbeat_and_reregister(plane: Plane) -> None:
    nodes = await plane.node("n1")
    objects = await plane.admin()
    first = await nodes.Register(registration("n1"))
    assert first.heartbeat_period_seconds == 4
    got = (await objects.Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    ready = next(c for c in got.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert got.metadata.labels["zone"] == "a"
    assert list(got.status.runtimes) == ["docker"]
    await nodes.Heartbeat(node_service_pb2.HeartbeatRequest(node_name="n1"))
    lease = (await objects.Get(api_pb2.GetRequest(kind="lease", namespace="kube-node-lease", name="n1"))).object.lease
    assert lease.spec.holder_identity == "n1" and lease.spec.HasField("renew_time")
    assert lease.metadata.owner_references[0].uid == got.metadata.uid
    after = (await objects.Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    assert after.metadata.resource_version == got.metadata.resource_version, "a heartbeat leaves the Node alone"
    again = await nodes.Register(registration("n1"))
    assert again.node_uid == first.node_uid
    ghost = await plane.node("ghost")  # a valid certificate, but the node never registered
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ghost.Heartbeat(node_service_pb2.HeartbeatRequest(node_name="ghost"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_heartbeats_on_a_stream_renew_the_lease_and_speak_for_one_node_only(plane: Plane) -> None:
    nodes = await plane.node("n1")
    objects = await plane.admin()
    await nodes.Register(registration("n1"))
    call = nodes.HeartbeatStream()
    renewals = []
    for _ in range(2):
        await call.write(node_service_pb2.HeartbeatRequest(node_name="n1"))
        answer = await call.read()
        assert answer.heartbeat_period_seconds == 4 and answer.metrics_period_seconds == 10
        lease = await objects.Get(api_pb2.GetRequest(kind="lease", namespace="kube-node-lease", name="n1"))
        renewals.append(lease.object.lease.metadata.resource_version)
    assert renewals[0] != renewals[1], "each heartbeat of the stream renews the Lease"
    await call.write(node_service_pb2.HeartbeatRequest(node_name="n2"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    n2 = nodes.HeartbeatStream()
    await n2.write(node_service_pb2.HeartbeatRequest(node_name="n2"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await n2.read()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, "n1's certificate cannot start n2's stream"
    call.cancel()
    n2.cancel()


def bound_pod(name: str, node: str) -> api_pb2.Object:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.spec.node_name = node
    p.spec.containers.add(name="main", image="busybox:1")
    return api_pb2.Object(pod=p)


async def assigned(
    stream: AsyncIterable[node_service_pb2.AssignmentSet], name: str, *, terminating: bool = False
) -> None:
    """Read a node's assignment stream until pod ``name`` is in it (and terminating, if asked):
    then the control plane's pod cache has that version of the pod."""
    async with asyncio.timeout(10):
        async for update in stream:
            pods = {p.metadata.name: p for p in update.pods}
            if name in pods and (not terminating or pods[name].metadata.HasField("deletion_timestamp")):
                return


def _waiting_streams() -> list[Any]:
    """The server's assignment streams (async generators of `NodeService.WatchAssignments`)."""
    return [
        o
        for o in gc.get_objects()
        if type(o).__name__ == "async_generator"
        and getattr(o, "ag_code", None) is node_service.NodeService.WatchAssignments.__code__
    ]


async def test_a_waiting_assignment_stream_keeps_no_set(plane: Plane) -> None:
    """A node's set holds a copy of each of its pods: the stream drops it once it is sent."""
    nodes = await plane.node("n1")
    objects = await plane.admin()
    await nodes.Register(registration("n1"))
    stream = nodes.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n1"))
    await objects.Create(api_pb2.CreateRequest(object=bound_pod("mine", "n1")))
    await assigned(stream, "mine")
    (waiting,) = _waiting_streams()

    def kept() -> list[Any]:
        return [v for v in waiting.ag_frame.f_locals.values() if isinstance(v, node_service_pb2.AssignmentSet)]

    # Once gRPC has written the set (the client may read it first) the stream goes back to waiting.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            while kept():
                await asyncio.sleep(0.02)
    assert kept() == []


async def test_assignment_stream_and_status_reports(plane: Plane) -> None:
    nodes = await plane.node("n1")
    objects = await plane.admin()
    await nodes.Register(registration("n1"))
    stream = nodes.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n1"))
    async with asyncio.timeout(10):
        initial = await stream.read()
        assert list(initial.pods) == []
        await objects.Create(api_pb2.CreateRequest(object=bound_pod("mine", "n1")))
        await objects.Create(api_pb2.CreateRequest(object=bound_pod("theirs", "n2")))
        update = await stream.read()
        while [p.metadata.name for p in update.pods] != ["mine"]:
            update = await stream.read()
        assert update.epoch > initial.epoch
    mine = update.pods[0]
    # A pod the node reports but does not have (gone, or recreated with another uid): unknown to it.
    gone = uuid.uuid4().hex
    status = pod_pb2.PodStatus(phase="Running", host_ip="10.0.0.1")
    response = await nodes.ReportStatus(
        node_service_pb2.ReportStatusRequest(
            node_name="n1",
            pods=[
                node_service_pb2.PodStatusReport(
                    namespace="default", name="mine", uid=mine.metadata.uid, status=status
                ),
                node_service_pb2.PodStatusReport(namespace="default", name="gone", uid=gone, status=status),
            ],
        )
    )
    assert list(response.unknown_uids) == [gone]
    stored = (await objects.Get(api_pb2.GetRequest(kind="pod", name="mine"))).object.pod
    assert stored.status.phase == "Running"
    assert (await objects.Get(api_pb2.GetRequest(kind="pod", name="theirs"))).object.pod.status.phase == "Pending"
    # A graceful delete: the pod stays in the set, marked, until the node says it stopped.
    marked = (await objects.Delete(api_pb2.DeleteRequest(kind="pod", name="mine"))).object.pod
    assert marked.metadata.HasField("deletion_timestamp")
    assert marked.metadata.deletion_grace_period_seconds == 30
    async with asyncio.timeout(10):
        terminating = await stream.read()
    assert [p.metadata.deletion_timestamp for p in terminating.pods] == [marked.metadata.deletion_timestamp]
    stopped = pod_pb2.PodStatus(phase="Failed", host_ip="10.0.0.1")
    response = await nodes.ReportStatus(
        node_service_pb2.ReportStatusRequest(
            node_name="n1",
            pods=[
                node_service_pb2.PodStatusReport(
                    namespace="default", name="mine", uid=mine.metadata.uid, status=stopped, terminated=True
                )
            ],
        )
    )
    assert list(response.unknown_uids) == []
    async with asyncio.timeout(10):
        emptied = await stream.read()
    assert list(emptied.pods) == []
    assert emptied.epoch > terminating.epoch > update.epoch
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await objects.Get(api_pb2.GetRequest(kind="pod", name="mine"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    stream.cancel()


async def test_terminated_reports_only_delete_terminating_pods_of_that_node(plane: Plane) -> None:
    n1, n2 = await plane.node("n1"), await plane.node("n2")
    objects = await plane.admin()
    await n1.Register(registration("n1"))
    await n2.Register(registration("n2"))
    running = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("running", "n1")))).object.pod
    elsewhere = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("elsewhere", "n2")))).object.pod
    await objects.Delete(api_pb2.DeleteRequest(kind="pod", name="elsewhere"))
    n2_stream = n2.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n2"))
    await assigned(n2_stream, "elsewhere", terminating=True)
    status = pod_pb2.PodStatus(phase="Running", host_ip="10.0.0.1")
    response = await n1.ReportStatus(
        node_service_pb2.ReportStatusRequest(
            node_name="n1",
            pods=[
                node_service_pb2.PodStatusReport(
                    namespace="default", name="running", uid=running.metadata.uid, status=status, terminated=True
                )
            ],
        )
    )
    assert list(response.unknown_uids) == []
    # Another node's terminating pod: refused (node restriction), not deleted.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await n1.ReportStatus(
            node_service_pb2.ReportStatusRequest(
                node_name="n1",
                pods=[
                    node_service_pb2.PodStatusReport(
                        namespace="default",
                        name="elsewhere",
                        uid=elsewhere.metadata.uid,
                        status=status,
                        terminated=True,
                    )
                ],
            )
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    n2_stream.cancel()
    kept = (await objects.Get(api_pb2.GetRequest(kind="pod", name="running"))).object.pod
    assert kept.status.phase == "Running" and not kept.metadata.HasField("deletion_timestamp")
    # A force delete (grace 0) removes a terminating pod without its node.
    assert (await objects.Get(api_pb2.GetRequest(kind="pod", name="elsewhere"))).object.pod.metadata.HasField(
        "deletion_timestamp"
    )
    await objects.Delete(api_pb2.DeleteRequest(kind="pod", name="elsewhere", grace_period_seconds=0))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await objects.Get(api_pb2.GetRequest(kind="pod", name="elsewhere"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_node_certificate_acts_only_for_its_own_node(plane: Plane) -> None:
    n1, n2 = await plane.node("n1"), await plane.node("n2")
    objects = await plane.admin()
    await n1.Register(registration("n1"))
    await n2.Register(registration("n2"))
    before = (await objects.Get(api_pb2.GetRequest(kind="node", name="n2"))).object.node
    for call in (
        lambda: n1.Heartbeat(node_service_pb2.HeartbeatRequest(node_name="n2")),
        lambda: n1.Register(registration("n2")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(10):
            await n1.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n2")).read()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    after = (await objects.Get(api_pb2.GetRequest(kind="node", name="n2"))).object.node
    assert after.metadata.resource_version == before.metadata.resource_version, "n2 untouched"

    theirs = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("theirs", "n2")))).object.pod
    n2_stream = n2.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n2"))
    await assigned(n2_stream, "theirs")  # the control plane knows where "theirs" is bound
    status = pod_pb2.PodStatus(phase="Running", host_ip="10.0.0.1")
    report = node_service_pb2.PodStatusReport(
        namespace="default", name="theirs", uid=theirs.metadata.uid, status=status
    )
    for node_name in ("n1", "n2"):  # as itself about n2's pod, or posing as n2
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await n1.ReportStatus(node_service_pb2.ReportStatusRequest(node_name=node_name, pods=[report]))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    n2_stream.cancel()
    stored = (await objects.Get(api_pb2.GetRequest(kind="pod", name="theirs"))).object.pod
    assert stored.status.phase == "Pending"
    assert stored.metadata.resource_version == theirs.metadata.resource_version


async def test_admins_and_nodes_keep_to_their_own_services(plane: Plane) -> None:
    admin_channel = await plane.stack.enter_async_context(aio_channel(plane.running.address, admin_of(plane.running)))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node_service_pb2_grpc.NodeServiceStub(admin_channel).Register(registration("n1"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    node_channel = await plane.stack.enter_async_context(
        aio_channel(plane.running.address, node_of(plane.running, "n1"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api_pb2_grpc.ObjectServiceStub(node_channel).Get(api_pb2.GetRequest(kind="node", name="n1"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:  # the admin's Register wrote nothing
        await (await plane.admin()).Get(api_pb2.GetRequest(kind="node", name="n1"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_heartbeat_period_stretches_on_large_clusters() -> None:
    svc = node_service.NodeService.__new__(node_service.NodeService)
    svc.heartbeat_period = 4
    svc.connected = {f"n{i}" for i in range(900)}
    assert svc.period() == 4
    svc.connected = {f"n{i}" for i in range(2000)}
    assert svc.period() == 8


def running_report(pod: pod_pb2.Pod, phase: str = "Running") -> node_service_pb2.PodStatusReport:
    status = pod_pb2.PodStatus(phase=phase)
    status.conditions.add(type="Ready", status="True")
    return node_service_pb2.PodStatusReport(
        namespace="default", name=pod.metadata.name, uid=pod.metadata.uid, status=status
    )


async def test_one_report_of_many_pods_is_one_transaction_and_a_stale_cache_falls_back(plane: Plane) -> None:
    nodes = await plane.node("n1")
    objects = await plane.admin()
    await nodes.Register(registration("n1"))
    created = [
        (await objects.Create(api_pb2.CreateRequest(object=bound_pod(f"p{i}", "n1")))).object.pod for i in range(5)
    ]
    stream = nodes.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n1"))
    async with asyncio.timeout(10):
        while len((await stream.read()).pods) < 5:  # the serving cache has every pod
            pass
    response = await nodes.ReportStatus(
        node_service_pb2.ReportStatusRequest(node_name="n1", pods=[running_report(p) for p in created])
    )
    assert list(response.unknown_uids) == []
    after = [
        (await objects.Get(api_pb2.GetRequest(kind="pod", namespace="default", name=p.metadata.name))).object.pod
        for p in created
    ]
    assert [p.status.phase for p in after] == ["Running"] * 5
    # Written together: one etcd revision for all five.
    assert len({p.metadata.resource_version for p in after}) == 1
    # Someone else writes p0 right before the node reports again: the report's compare-and-swap
    # against the (maybe not yet updated) cache loses, and the pod is written from a fresh read.
    changed = pod_pb2.Pod()
    changed.CopyFrom(after[0])
    changed.metadata.labels["touched"] = "yes"
    await objects.Update(api_pb2.UpdateRequest(object=api_pb2.Object(pod=changed)))
    response = await nodes.ReportStatus(
        node_service_pb2.ReportStatusRequest(node_name="n1", pods=[running_report(p, "Succeeded") for p in after])
    )
    assert list(response.unknown_uids) == []
    final = [
        (await objects.Get(api_pb2.GetRequest(kind="pod", namespace="default", name=p.metadata.name))).object.pod
        for p in created
    ]
    assert [p.status.phase for p in final] == ["Succeeded"] * 5
    assert final[0].metadata.labels["touched"] == "yes"
    stream.cancel()


async def etcd_store(stack: AsyncExitStack, etcd_endpoint: str) -> EtcdStore:
    """A store on the test etcd, closed with `stack`."""
    store = await EtcdStore.connect([etcd_endpoint])
    stack.push_async_callback(store.close)
    return store


async def serving_as_n1(
    stack: AsyncExitStack, service: node_service.NodeService
) -> node_service_pb2_grpc.NodeServiceAsyncStub:
    """`service` served on a port of its own (stopped with `stack`), and node n1's stub to it."""
    server = grpc.aio.server()
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(service, server)
    pki = TestCluster()
    port = pki.add_port(server)
    await server.start()
    stack.push_async_callback(server.stop, None)
    channel = await stack.enter_async_context(aio_channel(f"127.0.0.1:{port}", pki.node("n1")))
    return node_service_pb2_grpc.NodeServiceStub(channel)


class PathRecordingNodeService(node_service.NodeService):
    """A NodeService that records which reports take the per-pod path (a fresh read, then a CAS)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.per_pod: list[str] = []

    async def _write_status(self, node: str, report: node_service_pb2.PodStatusReport) -> bool:
        self.per_pod.append(report.name)
        return await super()._write_status(node, report)


async def test_a_stale_cached_pod_alone_takes_the_per_pod_path(etcd_endpoint: str, key_prefix: str) -> None:
    """Each pod's compare-and-swap is its own: the one whose cached resourceVersion someone else
    has moved on fails alone and is written from a fresh read; the others are written at once."""
    async with AsyncExitStack() as stack:
        store = await etcd_store(stack, etcd_endpoint)
        objects = ObjectStore(store, key_prefix)
        api = ObjectApi(objects)
        pods = Informer(objects, by_kind("Pod"))
        service = PathRecordingNodeService(api, AssignmentIndex(pods), TunnelRegistry())
        nodes = await serving_as_n1(stack, service)
        created = []
        for i in range(5):
            p = bound_pod(f"p{i}", "n1").pod
            written = await api.create(p)
            assert isinstance(written, pod_pb2.Pod)
            created.append(written)

        async def stored(name: str) -> pod_pb2.Pod:
            found = await objects.get(by_kind("Pod"), "default", name)
            assert isinstance(found, pod_pb2.Pod)
            return found

        async def cached(phase: str) -> None:
            async with asyncio.timeout(10):
                while [p.status.phase for p in pods.items.values() if isinstance(p, pod_pb2.Pod)] != [phase] * len(
                    created
                ):
                    await asyncio.sleep(0.01)

        following = asyncio.create_task(pods.run())
        await cached("Pending")
        response = await nodes.ReportStatus(
            node_service_pb2.ReportStatusRequest(node_name="n1", pods=[running_report(p) for p in created])
        )
        assert list(response.unknown_uids) == [] and service.per_pod == []
        await cached("Running")
        # The cache stops here (a watch lagging behind), and someone else writes p2.
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        theirs = await stored("p2")
        theirs.metadata.labels["touched"] = "yes"
        touched = await objects.update(theirs)
        assert isinstance(touched, pod_pb2.Pod)

        response = await nodes.ReportStatus(
            node_service_pb2.ReportStatusRequest(node_name="n1", pods=[running_report(p, "Succeeded") for p in created])
        )

        assert list(response.unknown_uids) == []
        assert service.per_pod == ["p2"]  # not the whole report: only the pod that moved
        final = [await stored(p.metadata.name) for p in created]
        assert [p.status.phase for p in final] == ["Succeeded"] * 5
        assert final[2].metadata.labels["touched"] == "yes"
        assert int(final[2].metadata.resource_version) > int(touched.metadata.resource_version)


def _terminating(pod: pod_pb2.Pod) -> bool:
    return pod.metadata.HasField("deletion_timestamp")


async def test_terminated_pods_are_deleted_at_their_cached_versions_together(
    etcd_endpoint: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scale-down's terminated reports: no store read per pod, one transaction for the deletes
    issued together; a pod whose cached version moved alone is read afresh."""
    async with AsyncExitStack() as stack:
        store = await etcd_store(stack, etcd_endpoint)
        objects = ObjectStore(store, key_prefix)
        api = ObjectApi(objects)
        pods = Informer(objects, by_kind("Pod"))
        service = node_service.NodeService(api, AssignmentIndex(pods), TunnelRegistry())
        nodes = await serving_as_n1(stack, service)
        for i in range(6):
            await api.create(bound_pod(f"p{i}", "n1").pod)
            await api.delete("Pod", "default", f"p{i}")  # graceful: marked terminating
        following = asyncio.create_task(pods.run())
        async with asyncio.timeout(10):
            while sum(isinstance(p, pod_pb2.Pod) and _terminating(p) for p in pods.items.values()) < 6:
                await asyncio.sleep(0.01)
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        cached = {name.split("/")[1]: p for name, p in pods.items.items() if isinstance(p, pod_pb2.Pod)}
        moved = await objects.get(by_kind("Pod"), "default", "p5")
        assert isinstance(moved, pod_pb2.Pod)
        moved.metadata.labels["touched"] = "yes"
        await objects.update(moved)  # the cache (stopped) does not see it
        reads: list[str] = []
        real_get = objects.get

        async def get(info: KindInfo, namespace: str, name: str) -> Message | None:
            reads.append(name)
            return await real_get(info, namespace, name)

        monkeypatch.setattr(objects, "get", get)
        transactions: list[int] = []
        real_txn = store._txn

        async def txn(*, compare: list[Any], success: list[Any], failure: list[Any], **kw: Any) -> Any:
            transactions.append(len(success))
            return await real_txn(compare=compare, success=success, failure=failure, **kw)

        monkeypatch.setattr(store, "_txn", txn)
        stopped = pod_pb2.PodStatus(phase="Succeeded")
        response = await nodes.ReportStatus(
            node_service_pb2.ReportStatusRequest(
                node_name="n1",
                pods=[
                    node_service_pb2.PodStatusReport(
                        namespace="default", name=name, uid=p.metadata.uid, status=stopped, terminated=True
                    )
                    for name, p in sorted(cached.items())
                ],
            )
        )
        assert list(response.unknown_uids) == []
        monkeypatch.undo()
        assert (await objects.list_all(by_kind("Pod"), "default"))[0] == []
        assert reads == ["p5"]
        # One transaction for all six, failed by the moved one; then each on its own (as a group
        # of updates does), and p5 once more from its fresh read.
        assert transactions == [6] + [1] * 7


async def test_a_tunnel_that_ends_leaves_no_pending_task(etcd_endpoint: str, key_prefix: str) -> None:
    """A node's tunnel stream ending (a session reconnecting) cancels its wait for the next
    message to send: no task is left to be destroyed pending (one error in the log each)."""
    async with AsyncExitStack() as stack:
        store = await etcd_store(stack, etcd_endpoint)
        tunnels = TunnelRegistry()
        objects = ObjectStore(store, key_prefix)
        service = node_service.NodeService(
            ObjectApi(objects), AssignmentIndex(Informer(objects, by_kind("Pod"))), tunnels
        )
        nodes = await serving_as_n1(stack, service)
        hello = node_service_pb2.AgentMessage(hello=node_service_pb2.TunnelHello(node_name="n1"))
        done = asyncio.Event()

        async def messages() -> AsyncIterator[node_service_pb2.AgentMessage]:
            yield hello
            await done.wait()

        def waiting() -> list[asyncio.Task[Any]]:
            return [t for t in asyncio.all_tasks() if "Queue.get" in repr(t.get_coro())]

        call = nodes.Tunnel(messages())
        async with asyncio.timeout(10):
            while not waiting():
                await asyncio.sleep(0.01)
        call.cancel()  # the node goes away mid-stream
        async with asyncio.timeout(10):
            while tunnels._tunnels:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert [t for t in waiting() if not t.done()] == []
        done.set()


# -- StreamStatus: ReportStatus on one stream ------------------------------------------


async def test_stream_status_writes_each_request_and_answers_them_in_order(plane: Plane) -> None:
    nodes = await plane.node("n1")
    objects = await plane.admin()
    await nodes.Register(registration("n1"))
    created = [
        (await objects.Create(api_pb2.CreateRequest(object=bound_pod(f"p{i}", "n1")))).object.pod for i in range(3)
    ]
    p0, p1, p2 = created
    gone1, gone3 = uuid.uuid4().hex, uuid.uuid4().hex  # pods the node reports but that do not exist
    status = pod_pb2.PodStatus(phase="Running")

    def unknown(uid: str) -> node_service_pb2.PodStatusReport:
        return node_service_pb2.PodStatusReport(namespace="default", name=f"gone-{uid}", uid=uid, status=status)

    requests = [
        node_service_pb2.ReportStatusRequest(node_name="n1", pods=[running_report(p0), unknown(gone1)]),
        node_service_pb2.ReportStatusRequest(node_name="n1", pods=[running_report(p1)]),
        node_service_pb2.ReportStatusRequest(
            node_name="n1", pods=[running_report(p0, "Succeeded"), running_report(p2), unknown(gone3)]
        ),
    ]
    call = nodes.StreamStatus()
    async with asyncio.timeout(10):
        for request in requests:  # all three written before any answer is read, as the agent does
            await call.write(request)
        answers = [await call.read() for _ in requests]
        await call.done_writing()
        end = await call.read()
        code = await call.code()

    # One answer per request, in the requests' order (each names its own request's unknown pod).
    assert [list(a.unknown_uids) for a in answers] == [[gone1], [], [gone3]]
    assert end is grpc.aio.EOF and code == grpc.StatusCode.OK
    stored = {
        p.metadata.name: (await objects.Get(api_pb2.GetRequest(kind="pod", name=p.metadata.name))).object.pod
        for p in created
    }
    # Written in order too: p0's status from the third request, not the first's.
    assert {name: p.status.phase for name, p in stored.items()} == {"p0": "Succeeded", "p1": "Running", "p2": "Running"}
    assert stored["p1"].status.conditions[0].type == "Ready"


async def test_stream_status_refuses_another_nodes_pod_and_another_node_name(plane: Plane) -> None:
    n1, n2 = await plane.node("n1"), await plane.node("n2")
    objects = await plane.admin()
    await n1.Register(registration("n1"))
    await n2.Register(registration("n2"))
    mine = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("mine", "n1")))).object.pod
    theirs = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("theirs", "n2")))).object.pod
    n2_stream = n2.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n2"))
    await assigned(n2_stream, "theirs")  # the control plane knows where "theirs" is bound
    n2_stream.cancel()

    # A first request of its own pod is answered; the next, naming n2's pod, fails the stream.
    call = n1.StreamStatus()
    async with asyncio.timeout(10):
        await call.write(node_service_pb2.ReportStatusRequest(node_name="n1", pods=[running_report(mine)]))
        assert list((await call.read()).unknown_uids) == []
        with contextlib.suppress(grpc.aio.AioRpcError):  # the write may already find the stream failed
            await call.write(
                node_service_pb2.ReportStatusRequest(
                    node_name="n1", pods=[running_report(mine, "Succeeded"), running_report(theirs)]
                )
            )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Posing as n2 (n1's certificate), about n2's pod or about its own: refused at the first request.
    for pods in ([running_report(theirs)], [running_report(mine, "Failed")]):
        call = n1.StreamStatus()
        async with asyncio.timeout(10):
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call.write(node_service_pb2.ReportStatusRequest(node_name="n2", pods=pods))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Nothing of a refused request was written: mine as its first request left it, theirs untouched.
    stored_mine = (await objects.Get(api_pb2.GetRequest(kind="pod", name="mine"))).object.pod
    assert stored_mine.status.phase == "Running"
    stored_theirs = (await objects.Get(api_pb2.GetRequest(kind="pod", name="theirs"))).object.pod
    assert stored_theirs.status.phase == "Pending"
    assert stored_theirs.metadata.resource_version == theirs.metadata.resource_version


async def test_register_and_heartbeat_hand_out_the_metrics_period(plane: Plane) -> None:
    nodes = await plane.node("n1")
    registered = await nodes.Register(registration("n1"))
    assert registered.metrics_period_seconds == 10
    beat = await nodes.Heartbeat(node_service_pb2.HeartbeatRequest(node_name="n1"))
    assert beat.metrics_period_seconds == 10
