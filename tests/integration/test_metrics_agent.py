"""The agent's pod and probe series: real pod workers over the fake runtime,
probes run by the workers, one scrape of the agent's /metrics over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from agent.telemetry.series import AgentTelemetry
from corral.common.telemetry.endpoint import open_endpoint
from protos.corral.v1 import node_service_pb2, pod_pb2
from tests.promtext import Key, parse, scrape, value

pytestmark = pytest.mark.timeout(60)

NODE = "node-1"


def probed_pod(name: str, image: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.spec.node_name = NODE
    c = p.spec.containers.add(name="main", image=image)
    c.readiness_probe.period_seconds = 1
    c.readiness_probe.exec.command.append("true")
    c.liveness_probe.period_seconds = 1
    c.liveness_probe.failure_threshold = 100  # counted, never acted on within the test
    c.liveness_probe.exec.command.append("true")
    return p


@contextlib.asynccontextmanager
async def running(manager: PodManager) -> AsyncIterator[None]:
    task = asyncio.create_task(manager.run())
    await asyncio.sleep(0)  # the manager opens its task group
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(address: str, predicate: Callable[[dict[Key, float]], bool]) -> dict[Key, float]:
    """Scrape until `predicate` holds; the last scrape."""
    async with asyncio.timeout(30):
        while True:
            samples = parse(await asyncio.to_thread(scrape, address))
            if predicate(samples):
                return samples
            await asyncio.sleep(0.1)


async def test_pods_and_probe_results_on_the_agent_metrics_endpoint(tmp_path: Path) -> None:
    metrics = AgentTelemetry()
    runtime = FakeRuntime({"sick:1": FakeBehaviour(exec_exit_code=1)})
    settings = WorkerSettings(
        node_name=NODE, host_ip="127.0.0.1", poll_interval=0.05, probe_results=metrics.probe_result
    )
    manager = PodManager({"docker": runtime}, settings, tmp_path)
    metrics.observe(
        proxy_stats=dict, connected=lambda: False, pods=lambda: [w.last_status for w in manager.workers.values()]
    )
    endpoint = open_endpoint(metrics.registry, "127.0.0.1:0", default_host="127.0.0.1")
    assert endpoint is not None
    try:
        async with running(manager):
            await manager.apply(
                node_service_pb2.AssignmentSet(
                    epoch=1, pods=[probed_pod("healthy", "web:1"), probed_pod("sick", "sick:1")]
                )
            )

            def probed(s: dict[Key, float]) -> bool:
                return value(s, "corral_agent_pods", phase="Running") == 2 and all(
                    (value(s, "corral_agent_probe_results_total", probe=probe, result=result) or 0) >= 1
                    for probe in ("readiness", "liveness")
                    for result in ("success", "failure")
                )

            samples = await until(endpoint.address, probed)
    finally:
        await endpoint.close()

    assert value(samples, "corral_agent_probe_results_total", probe="startup", result="success") == 0
    assert value(samples, "corral_agent_pods", phase="Pending") == 0
    assert value(samples, "corral_agent_connected") == 0
    assert not any(name.startswith("corral_agent_proxy_") and labels for name, labels in samples)
    assert (value(samples, "process_resident_memory_bytes") or 0) > 0
