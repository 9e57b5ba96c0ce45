"""The agent's metrics: series built from snapshots, probe counts, and the
collector before and after it is attached to a loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from agent.network.proxy.server import ServiceStats
from agent.telemetry.series import AgentTelemetry
from agent.telemetry.state import Snapshot, families, pods_by_phase
from corral.common.telemetry.endpoint import MetricsEndpointError, parse_listen
from protos.corral.v1 import pod_pb2
from tests.promtext import families as family_types
from tests.promtext import parse, value


def text_of(metrics: AgentTelemetry) -> str:
    return generate_latest(metrics.registry).decode()


class Fixed(Collector):
    """The families of one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return iter(families(self.snapshot))


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        pytest.param([], {"Pending": 0, "Running": 0, "Succeeded": 0, "Failed": 0, "Unknown": 0}, id="none"),
        pytest.param(["", "Running", "Running"], {"Pending": 1, "Running": 2}, id="no-phase-is-pending"),
    ],
)
def test_pods_by_phase(phases: list[str], expected: dict[str, int]) -> None:
    counts = pods_by_phase(pod_pb2.PodStatus(phase=p) for p in phases)
    assert {k: counts[k] for k in expected} == expected


def test_proxy_stats_become_counters_and_gauges_by_service() -> None:
    snapshot = Snapshot(
        proxy={
            "default/web": ServiceStats(
                connections_total=7, connections_active=2, connect_failures=1, bytes_in=100, bytes_out=2500
            ),
            "shop/api": ServiceStats(),
        },
        pods={"Running": 3},
        connected=True,
    )
    registry = CollectorRegistry()
    registry.register(Fixed(snapshot))
    text = generate_latest(registry).decode()
    samples = parse(text)
    kinds = family_types(text)
    assert kinds["corral_agent_proxy_connections"] == "counter"
    assert kinds["corral_agent_proxy_connections_active"] == "gauge"
    assert kinds["corral_agent_proxy_bytes"] == "counter"
    assert value(samples, "corral_agent_proxy_connections_total", service="default/web") == 7
    assert value(samples, "corral_agent_proxy_connections_active", service="default/web") == 2
    assert value(samples, "corral_agent_proxy_connect_failures_total", service="default/web") == 1
    assert value(samples, "corral_agent_proxy_bytes_total", service="default/web", direction="in") == 100
    assert value(samples, "corral_agent_proxy_bytes_total", service="default/web", direction="out") == 2500
    assert value(samples, "corral_agent_proxy_connections_total", service="shop/api") == 0
    assert value(samples, "corral_agent_pods", phase="Running") == 3
    assert value(samples, "corral_agent_connected") == 1


def test_probe_results_are_counted_by_kind_and_result() -> None:
    metrics = AgentTelemetry(process=False)
    for success in (True, True, False):
        metrics.probe_result("readiness", success)
    metrics.probe_result("startup", True)
    samples = parse(text_of(metrics))
    assert value(samples, "corral_agent_probe_results_total", probe="readiness", result="success") == 2
    assert value(samples, "corral_agent_probe_results_total", probe="readiness", result="failure") == 1
    assert value(samples, "corral_agent_probe_results_total", probe="startup", result="success") == 1
    assert value(samples, "corral_agent_probe_results_total", probe="liveness", result="failure") == 0


def test_nothing_is_read_before_the_agent_attaches_its_loop() -> None:
    samples = parse(text_of(AgentTelemetry(process=False)))
    assert value(samples, "corral_agent_connected") is None
    assert not any(name.startswith("corral_agent_pods") for name, _ in samples)


async def test_sources_are_read_when_scraped_from_another_thread() -> None:
    metrics = AgentTelemetry(process=False)
    connected = asyncio.Event()
    metrics.observe(
        proxy_stats=lambda: {"default/web": ServiceStats(connections_total=1)},
        pods=lambda: [pod_pb2.PodStatus(phase="Running")],
        connected=connected.is_set,
    )
    connected.set()
    samples = parse((await asyncio.to_thread(generate_latest, metrics.registry)).decode())
    assert value(samples, "corral_agent_connected") == 1
    assert value(samples, "corral_agent_pods", phase="Running") == 1
    assert value(samples, "corral_agent_proxy_connections_total", service="default/web") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(":9465", ("127.0.0.2", 9465), id="first-proxy-address"),
        pytest.param("0.0.0.0:9465", ("0.0.0.0", 9465), id="every-address"),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text, default_host="127.0.0.2") == expected


def test_parse_listen_refuses_a_bare_port() -> None:
    with pytest.raises(MetricsEndpointError):
        parse_listen("9465", default_host="127.0.0.2")
