"""The metrics relay: with agents spread over two replicas, each replica answers for every node
and pod; only a control-plane certificate may call the relay."""

from __future__ import annotations

import asyncio
import datetime as dt
from contextlib import AsyncExitStack

import grpc
import pytest

from controlplane.metrics.store import MetricsStore
from corral.common.pki.certs import Identity, Role
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import api_pb2, api_pb2_grpc, metrics_pb2, metrics_pb2_grpc, node_service_pb2_grpc
from tests.integration.test_node_service import Plane, bound_pod, plane, registration
from tests.integration.test_replicas import Replica, sharing_a_ca, wait_for
from tests.pki import admin_of, aio_channel, node_of

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]
__all__ = ["plane", "sharing_a_ca"]  # the fixtures


def report(node: str, pod: str, uid: str, cpu: int) -> metrics_pb2.MetricsReport:
    sent = metrics_pb2.MetricsReport(node_name=node)
    sent.node.cpu_millis = cpu
    usage = sent.pods.add(namespace="default", name=pod, uid=uid)
    usage.containers.add(name="main", cpu_millis=cpu, memory_bytes=1 << 20)
    return sent


def store_of(replica: Replica) -> MetricsStore:
    nodes = replica.running.nodes
    assert nodes is not None and nodes.metrics is not None
    return nodes.metrics


async def test_each_replica_answers_for_the_nodes_and_pods_of_every_replicas_agents(
    sharing_a_ca: list[Replica],
) -> None:
    replicas = sharing_a_ca
    async with AsyncExitStack() as stack:
        admin = api_pb2_grpc.ObjectServiceStub(
            await stack.enter_async_context(aio_channel(replicas[0].running.address, admin_of(replicas[0].running)))
        )
        # Node "a0" talks to replica 0, node "a1" to replica 1, each with a pod bound to it.
        agents, uids = [], {}
        for i, replica in enumerate(replicas):
            node = f"a{i}"
            channel = await stack.enter_async_context(
                aio_channel(replica.running.address, node_of(replica.running, node))
            )
            stub = node_service_pb2_grpc.NodeServiceStub(channel)
            await stub.Register(registration(node))
            created = await admin.Create(api_pb2.CreateRequest(object=bound_pod(f"web-{i}", node)))
            uids[node] = created.object.pod.metadata.uid
            agents.append((node, f"web-{i}", stub))
        loop = asyncio.get_running_loop()

        async def everywhere() -> bool:
            # Agents report every period: again until both replicas know the pods and the peers.
            for i, (node, pod, stub) in enumerate(agents):
                await stub.ReportMetrics(report(node, pod, uids[node], cpu=100 + i))
            now = loop.time()
            return all(
                store.node_usage(node, now=now) is not None and store.pod_usage("default", pod, now=now) is not None
                for store in map(store_of, replicas)
                for node, pod, _ in agents
            )

        await wait_for(everywhere, "both replicas to hold both nodes' and both pods' metrics")
        # The metrics API of either replica answers for both pods.
        for replica in replicas:
            channel = await stack.enter_async_context(aio_channel(replica.running.address, admin_of(replica.running)))
            listed = await metrics_pb2_grpc.MetricsServiceStub(channel).PodMetrics(
                metrics_pb2.PodMetricsRequest(namespace="default")
            )
            assert {(m.name, m.usage.containers[0].cpu_millis) for m in listed.items} == {
                ("web-0", 100),
                ("web-1", 101),
            }


def _credentials(plane: Plane, who: str) -> Credentials:
    running = plane.running
    assert running.ca is not None
    if who == "node":
        return node_of(running, "n1")
    if who == "admin":
        return admin_of(running)
    return running.ca.client_credentials(Identity(Role.CONTROLPLANE, "peer"), dt.datetime.now(dt.UTC))


@pytest.mark.parametrize(
    ("who", "code"),
    [
        pytest.param("node", grpc.StatusCode.PERMISSION_DENIED, id="a node is refused"),
        pytest.param("admin", grpc.StatusCode.PERMISSION_DENIED, id="an admin is refused"),
        pytest.param("controlplane", None, id="a control-plane replica is admitted"),
    ],
)
async def test_only_a_control_plane_certificate_may_share_reports(
    plane: Plane, who: str, code: grpc.StatusCode | None
) -> None:
    channel = await plane.stack.enter_async_context(aio_channel(plane.running.address, _credentials(plane, who)))
    relay = metrics_pb2_grpc.MetricsRelayStub(channel)
    forged = metrics_pb2.MetricsReport(node_name="forged", node=metrics_pb2.NodeUsage())
    shared = metrics_pb2.SharedReports(sender="x", reports=[forged])
    if code is None:
        await relay.ShareReports(shared)
        nodes = plane.running.nodes
        assert nodes is not None and nodes.metrics is not None
        assert nodes.metrics.node_usage("forged", now=asyncio.get_running_loop().time()) is not None
        return
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await relay.ShareReports(shared)
    assert info.value.code() == code
    nodes = plane.running.nodes
    assert nodes is not None and nodes.metrics is not None
    assert nodes.metrics.node_names(now=asyncio.get_running_loop().time()) == []


async def test_a_control_plane_certificate_may_call_nothing_else(plane: Plane) -> None:
    channel = await plane.stack.enter_async_context(
        aio_channel(plane.running.address, _credentials(plane, "controlplane"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await api_pb2_grpc.ObjectServiceStub(channel).Get(api_pb2.GetRequest(kind="node", name="n1"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
