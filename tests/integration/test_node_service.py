"""The NodeService over real gRPC and etcd, as an agent uses it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest

from controlplane.nodeapi import service as node_service
from controlplane.server import ServerConfig, start
from protos.corral.v1 import api_pb2, api_pb2_grpc, node_pb2, node_service_pb2, node_service_pb2_grpc, pod_pb2

pytestmark = pytest.mark.etcd


@pytest.fixture
async def channel(etcd_endpoint: str) -> AsyncIterator[grpc.aio.Channel]:
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/ns/{uuid.uuid4().hex}")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        async with grpc.aio.insecure_channel(running.address) as ch:
            yield ch


def registration(name: str) -> node_service_pb2.RegisterRequest:
    status = node_pb2.NodeStatus(runtimes=["docker"])
    status.capacity.update({"cpu": "2", "memory": "4Gi"})
    status.allocatable.update({"cpu": "2", "memory": "4Gi"})
    return node_service_pb2.RegisterRequest(node_name=name, labels={"zone": "a"}, status=status)


async def test_register_heartbeat_and_reregister(channel: grpc.aio.Channel) -> None:
    nodes = node_service_pb2_grpc.NodeServiceStub(channel)
    objects = api_pb2_grpc.ObjectServiceStub(channel)
    first = await nodes.Register(registration("n1"))
    assert first.heartbeat_period_seconds == 4
    got = (await objects.Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    ready = next(c for c in got.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert got.metadata.labels["zone"] == "a"
    assert list(got.status.runtimes) == ["docker"]
    await nodes.Heartbeat(node_service_pb2.HeartbeatRequest(node_name="n1"))
    again = await nodes.Register(registration("n1"))
    assert again.node_uid == first.node_uid
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await nodes.Heartbeat(node_service_pb2.HeartbeatRequest(node_name="ghost"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def bound_pod(name: str, node: str) -> api_pb2.Object:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.spec.node_name = node
    p.spec.containers.add(name="main", image="busybox:1")
    return api_pb2.Object(pod=p)


async def test_assignment_stream_and_status_reports(channel: grpc.aio.Channel) -> None:
    nodes = node_service_pb2_grpc.NodeServiceStub(channel)
    objects = api_pb2_grpc.ObjectServiceStub(channel)
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
    mine, theirs = update.pods[0], (await objects.Get(api_pb2.GetRequest(kind="pod", name="theirs"))).object.pod
    status = pod_pb2.PodStatus(phase="Running", host_ip="10.0.0.1")
    response = await nodes.ReportStatus(node_service_pb2.ReportStatusRequest(node_name="n1", pods=[
        node_service_pb2.PodStatusReport(namespace="default", name="mine", uid=mine.metadata.uid, status=status),
        node_service_pb2.PodStatusReport(namespace="default", name="theirs", uid=theirs.metadata.uid,
                                         status=status)]))
    assert list(response.unknown_uids) == [theirs.metadata.uid]
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
    response = await nodes.ReportStatus(node_service_pb2.ReportStatusRequest(node_name="n1", pods=[
        node_service_pb2.PodStatusReport(namespace="default", name="mine", uid=mine.metadata.uid, status=stopped,
                                         terminated=True)]))
    assert list(response.unknown_uids) == []
    async with asyncio.timeout(10):
        emptied = await stream.read()
    assert list(emptied.pods) == []
    assert emptied.epoch > terminating.epoch > update.epoch
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await objects.Get(api_pb2.GetRequest(kind="pod", name="mine"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    stream.cancel()


async def test_terminated_reports_only_delete_terminating_pods_of_that_node(channel: grpc.aio.Channel) -> None:
    nodes = node_service_pb2_grpc.NodeServiceStub(channel)
    objects = api_pb2_grpc.ObjectServiceStub(channel)
    await nodes.Register(registration("n1"))
    await nodes.Register(registration("n2"))
    running = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("running", "n1")))).object.pod
    elsewhere = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("elsewhere", "n2")))).object.pod
    await objects.Delete(api_pb2.DeleteRequest(kind="pod", name="elsewhere"))
    status = pod_pb2.PodStatus(phase="Running", host_ip="10.0.0.1")
    response = await nodes.ReportStatus(node_service_pb2.ReportStatusRequest(node_name="n1", pods=[
        node_service_pb2.PodStatusReport(namespace="default", name="running", uid=running.metadata.uid,
                                         status=status, terminated=True),
        node_service_pb2.PodStatusReport(namespace="default", name="elsewhere", uid=elsewhere.metadata.uid,
                                         status=status, terminated=True)]))
    assert list(response.unknown_uids) == [elsewhere.metadata.uid]
    kept = (await objects.Get(api_pb2.GetRequest(kind="pod", name="running"))).object.pod
    assert kept.status.phase == "Running" and not kept.metadata.HasField("deletion_timestamp")
    # A force delete (grace 0) removes a terminating pod without its node.
    assert (await objects.Get(api_pb2.GetRequest(kind="pod", name="elsewhere"))).object.pod.metadata.HasField(
        "deletion_timestamp")
    await objects.Delete(api_pb2.DeleteRequest(kind="pod", name="elsewhere", grace_period_seconds=0))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await objects.Get(api_pb2.GetRequest(kind="pod", name="elsewhere"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_heartbeat_period_stretches_on_large_clusters() -> None:
    svc = node_service.NodeService.__new__(node_service.NodeService)
    svc.heartbeat_period = 4
    svc.connected = {f"n{i}" for i in range(900)}
    assert svc.period() == 4
    svc.connected = {f"n{i}" for i in range(2000)}
    assert svc.period() == 8
