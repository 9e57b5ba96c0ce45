"""A real control plane (over a real etcd) serving /metrics: API calls, a node,
pods to schedule, then one scrape over HTTP parsed as Prometheus parses it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest

from controlplane.server import RunningServer, ServerConfig, start
from protos.corral.v1 import api_pb2, api_pb2_grpc, node_pb2, node_service_pb2, node_service_pb2_grpc, pod_pb2
from tests.pki import admin_of, aio_channel, node_of
from tests.promtext import Key, parse, scrape, total, value

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(90)]

OBJECTS = "corral.v1.ObjectService"
NODES = "corral.v1.NodeService"


@pytest.fixture
async def running(etcd_endpoint: str) -> AsyncIterator[RunningServer]:
    config = ServerConfig(
        listen="127.0.0.1:0",
        etcd=[etcd_endpoint],
        key_prefix=f"/metrics/{uuid.uuid4().hex}",
        metrics_listen="127.0.0.1:0",
    )
    async with AsyncExitStack() as stack:
        yield await start(config, stack)


def registration(name: str) -> node_service_pb2.RegisterRequest:
    status = node_pb2.NodeStatus(runtimes=["docker"])
    status.capacity.update({"cpu": "2", "memory": "4Gi"})
    status.allocatable.update({"cpu": "2", "memory": "4Gi"})
    return node_service_pb2.RegisterRequest(node_name=name, status=status)


def pending_pod(name: str, cpu: str) -> api_pb2.Object:
    p = pod_pb2.Pod()
    p.metadata.name = name
    c = p.spec.containers.add(name="main", image="busybox:1")
    c.resources.requests["cpu"] = cpu
    return api_pb2.Object(pod=p)


async def scraped(address: str) -> dict[Key, float]:
    return parse(await asyncio.to_thread(scrape, address))


async def test_control_plane_metrics_over_http(running: RunningServer) -> None:
    assert running.metrics_address is not None
    assert running.elector is not None
    await asyncio.wait_for(running.elector.leading.wait(), 30)
    async with (
        aio_channel(running.address, admin_of(running)) as channel,
        aio_channel(running.address, node_of(running, "n1")) as node_channel,
    ):
        objects = api_pb2_grpc.ObjectServiceStub(channel)
        nodes = node_service_pb2_grpc.NodeServiceStub(node_channel)
        await nodes.Register(registration("n1"))
        assignments = nodes.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n1"))
        await assignments.read()
        await objects.Create(api_pb2.CreateRequest(object=pending_pod("fits", "100m")))
        await objects.Create(api_pb2.CreateRequest(object=pending_pod("huge", "64")))
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError):
                await objects.Get(api_pb2.GetRequest(kind="pod", name="nope"))

        async def bound() -> None:
            while not (await objects.Get(api_pb2.GetRequest(kind="pod", name="fits"))).object.pod.spec.node_name:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(bound(), 30)

        async def settled() -> dict[Key, float]:
            while True:  # the leader's caches catch up with the writes above
                samples = await scraped(running.metrics_address or "")
                if (
                    value(samples, "corral_pods", phase="Pending") == 2
                    and (value(samples, "corral_scheduling_attempts_total", result="unschedulable") or 0) >= 1
                ):
                    return samples
                await asyncio.sleep(0.1)

        samples = await asyncio.wait_for(settled(), 30)
        assert value(samples, "corral_api_streams_active", method=f"{NODES}/WatchAssignments") == 1
        assignments.cancel()

    assert (value(samples, "corral_api_requests_total", method=f"{OBJECTS}/Create", code="OK") or 0) >= 2
    assert (value(samples, "corral_api_requests_total", method=f"{OBJECTS}/Get", code="NOT_FOUND") or 0) >= 3
    assert (value(samples, "corral_api_requests_total", method=f"{NODES}/Register", code="OK") or 0) >= 1
    assert (value(samples, "corral_api_request_duration_seconds_count", method=f"{OBJECTS}/Create") or 0) >= 2
    assert total(samples, "corral_api_requests_total") >= total(samples, "corral_api_request_duration_seconds_count")

    assert value(samples, "corral_leader") == 1
    assert (value(samples, "corral_scheduling_attempts_total", result="scheduled") or 0) >= 1
    assert (value(samples, "corral_scheduling_latency_seconds_count") or 0) >= 1
    assert value(samples, "corral_pods", phase="Running") == 0
    age = value(samples, "corral_node_heartbeat_age_seconds", node="n1")
    assert age is not None and 0 <= age < 60
    assert (value(samples, "corral_reconcile_duration_seconds_count", controller="scheduler") or 0) >= 1
    assert value(samples, "corral_workqueue_depth", controller="scheduler") is not None
    assert value(samples, "corral_reconcile_errors_total", controller="replicaset") == 0
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0


async def test_metrics_stop_with_the_control_plane(etcd_endpoint: str) -> None:
    config = ServerConfig(
        listen="127.0.0.1:0",
        etcd=[etcd_endpoint],
        key_prefix=f"/metrics/{uuid.uuid4().hex}",
        metrics_listen="127.0.0.1:0",
    )
    async with AsyncExitStack() as stack:
        address = (await start(config, stack)).metrics_address
        assert address is not None
        assert "corral_leader" in await asyncio.to_thread(scrape, address)
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) != 0


async def test_no_metrics_endpoint_unless_asked(etcd_endpoint: str) -> None:
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/metrics/{uuid.uuid4().hex}")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        assert running.metrics_address is None
        assert running.telemetry is not None  # still counted, only not served
