"""Hollow nodes (bench/hollow.py) against a real control plane: they register, get a
Deployment's pods, report them Running, and wind them down when it scales to zero."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from hollow import FleetSettings, node_name, run_hollow_nodes

from controlplane.server import ServerConfig, start
from corral import client as api
from protos.corral.v1 import meta_pb2, node_pb2, pod_pb2, workloads_pb2
from tests.pki import admin_of, node_of

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]
NODES = 3


def deployment(replicas: int) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name="web"))
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="main", image="hollow/app:1")
    return d


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(check):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_hollow_nodes_run_a_deployment(etcd_endpoint: str, tmp_path: Path) -> None:
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/it/{uuid.uuid4().hex}")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        for i in range(NODES):  # saved node certificates, as after a join: no token needed
            node_of(running, node_name("hollow", i)).save(tmp_path / node_name("hollow", i) / "pki")
        settings = FleetSettings(termination_drain=0.1, metrics_period=1.0)
        fleet = asyncio.create_task(
            run_hollow_nodes(running.address, range(NODES), tmp_path, token="", settings=settings)
        )
        client = api.Client(running.address, admin_of(running))

        def pods() -> list[pod_pb2.Pod]:
            return [p for p in client.list("pods", "default")[0] if isinstance(p, pod_pb2.Pod)]

        def ready_nodes() -> int:
            nodes = [n for n in client.list("nodes")[0] if isinstance(n, node_pb2.Node)]
            return sum(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)

        try:
            await wait_for(lambda: ready_nodes() == NODES, "the hollow nodes Ready")
            await asyncio.to_thread(client.apply, deployment(6))
            await wait_for(lambda: sum(p.status.phase == "Running" for p in pods()) == 6, "6 pods Running")
            placed = await asyncio.to_thread(pods)  # the server runs on this loop: never block it
            assert {p.spec.node_name for p in placed} <= {node_name("hollow", i) for i in range(NODES)}
            assert all(p.status.container_statuses[0].ready for p in placed)
            await asyncio.to_thread(client.apply, deployment(0))
            await wait_for(lambda: not pods(), "every pod wound down and deleted")
        finally:
            fleet.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fleet
