"""Benchmark: how soon a pod's readiness change reaches the node proxies.

A real `corral server` (embedded etcd) with one registered node; a Service
selecting `--pods` pods bound to it, all reported Ready the way an agent
reports them (NodeService.ReportStatus). This process then follows the node's
route stream (NodeService.WatchServices) as a node proxy does and, `--flips`
times, reports one pod not Ready and measures until the route without it
arrives (leave), then Ready again until it is back (join).

    .venv/bin/python bench/endpoints.py [--pods 50] [--flips 40]

Prints p50/p99/max of both and writes bench/results/endpoints.json. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
from harness import admin_credentials, machine, percentile, start_server, stop, write_result

from corral.client import Client
from corral.common.pki import join
from corral.common.pki.credentials import Credentials, channel_options
from corral.common.pki.tokens import parse_token
from protos.corral.v1 import (
    api_pb2,
    api_pb2_grpc,
    node_pb2,
    node_service_pb2,
    node_service_pb2_grpc,
    pod_pb2,
    service_pb2,
)

NODE = "bench-node"
HOST_IP = "10.0.0.1"


def service() -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name = "web"
    s.spec.selector["app"] = "web"
    port = s.spec.ports.add(name="http", port=8080)
    port.target_port.int_val = 80
    return s


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["app"] = "web"
    p.spec.node_name = NODE
    p.spec.containers.add(name="main", image="corral-test/busybox:1").ports.add(container_port=80)
    return p


def status(ready: bool, host_port: int) -> pod_pb2.PodStatus:
    s = pod_pb2.PodStatus(phase="Running", host_ip=HOST_IP)
    s.conditions.add(type="Ready", status="True" if ready else "False")
    container = s.container_statuses.add(name="main", ready=ready)
    container.ports.add(container_port=80, host_port=host_port, protocol="TCP")
    return s


class Routes:
    """The node's view of the Service's backends, fed by the WatchServices stream."""

    def __init__(self, stream: AsyncIterator[node_service_pb2.ServiceRoutes]) -> None:
        self.stream = stream
        self.pods: set[str] = set()

    async def until(self, check: Callable[[set[str]], bool]) -> None:
        while not check(self.pods):
            message = await anext(self.stream)
            if message.full:
                self.pods = set()
            for route in message.upserts:
                if route.name == "web":
                    self.pods = {b.pod for p in route.ports for b in p.backends}
            if "default/web" in message.removed:
                self.pods = set()


async def node_credentials(address: str, admin: Credentials) -> Credentials:
    """The node's certificate, as an agent gets it: a join token from the admin, then a join."""
    with Client(address, admin) as client:
        token = (await asyncio.to_thread(client.create_token, "node", 3600, "bench")).token
    return await join.join(join.join_address_for(address), parse_token(token), NODE)


def channel(address: str, credentials: Credentials) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, credentials.channel_credentials(), options=channel_options())


async def heartbeats(nodes: node_service_pb2_grpc.NodeServiceAsyncStub) -> None:
    while True:
        await nodes.Heartbeat(node_service_pb2.HeartbeatRequest(node_name=NODE), timeout=10)
        await asyncio.sleep(2)


async def run(args: argparse.Namespace, address: str) -> dict[str, object]:
    admin = await asyncio.to_thread(admin_credentials)  # written once the server is up
    node = await node_credentials(address, admin)
    async with channel(address, admin) as admin_channel, channel(address, node) as node_channel:
        nodes: node_service_pb2_grpc.NodeServiceAsyncStub = node_service_pb2_grpc.NodeServiceStub(node_channel)
        api = api_pb2_grpc.ObjectServiceStub(admin_channel)
        node_status = node_pb2.NodeStatus()
        node_status.addresses.add(type="InternalIP", address=HOST_IP)
        await nodes.Register(
            node_service_pb2.RegisterRequest(node_name=NODE, status=node_status), timeout=60, wait_for_ready=True
        )  # the server is still starting
        beating = asyncio.create_task(heartbeats(nodes))
        await api.Create(api_pb2.CreateRequest(object=api_pb2.Object(service=service())))
        uids: dict[str, str] = {}
        for i in range(args.pods):
            created = await api.Create(api_pb2.CreateRequest(object=api_pb2.Object(pod=pod(f"web-{i}"))))
            uids[created.object.pod.metadata.name] = created.object.pod.metadata.uid

        async def report(name: str, ready: bool) -> None:
            host_port = 30000 + int(name.rsplit("-", 1)[1])
            item = node_service_pb2.PodStatusReport(
                namespace="default", name=name, uid=uids[name], status=status(ready, host_port)
            )
            await nodes.ReportStatus(node_service_pb2.ReportStatusRequest(node_name=NODE, pods=[item]))

        for name in uids:
            await report(name, True)
        routes = Routes(aiter(nodes.WatchServices(node_service_pb2.ServicesRequest(node_name=NODE))))
        await asyncio.wait_for(routes.until(lambda pods: len(pods) == args.pods), 60)
        leave: list[float] = []
        join: list[float] = []
        for i in range(args.flips):
            name = f"web-{i % args.pods}"
            started = time.perf_counter()
            await report(name, False)
            await asyncio.wait_for(routes.until(lambda pods, n=name: n not in pods), 30)  # type: ignore[misc]
            leave.append(time.perf_counter() - started)
            started = time.perf_counter()
            await report(name, True)
            await asyncio.wait_for(routes.until(lambda pods, n=name: n in pods), 30)  # type: ignore[misc]
            join.append(time.perf_counter() - started)
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating

    def figures(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }

    return {
        "machine": machine(),
        "pods": args.pods,
        "flips": args.flips,
        "leave": figures(leave),
        "join": figures(join),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--flips", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # The server writes an admin credential to the CLI config: this run's own, not the user's.
        os.environ["CORRAL_CONFIG"] = str(Path(tmp) / "config.yaml")
        server, address = start_server(tmp, f"{tmp}/data")
        try:
            result = asyncio.run(run(args, address))
        finally:
            stop(server)
    leave, join = result["leave"], result["join"]
    print(f"readiness → node route stream, {args.pods} endpoints, {args.flips} flips ({result['machine']}):")
    print(f"  not ready → gone from the route: {leave}")
    print(f"  ready     → back in the route:   {join}")
    write_result("endpoints", result)


if __name__ == "__main__":
    main()
