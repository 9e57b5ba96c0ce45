"""The control plane's metrics: the pure gauge helpers, the registry's series
as Prometheus reads them, and the scrape-time collector."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping, Sized
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from prometheus_client import generate_latest

from controlplane.controllers.queue import WorkQueue
from controlplane.informer import Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from controlplane.telemetry.cluster import heartbeat_ages, pods_by_phase
from controlplane.telemetry.series import ControlPlaneTelemetry
from corral.common.telemetry.endpoint import MetricsEndpointError, parse_listen
from corral.common.telemetry.loop import call_on_loop
from protos.corral.v1 import node_pb2, pod_pb2
from protos.kinds import by_kind
from tests.promtext import families, parse, value

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def pod(name: str, phase: str = "") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.status.phase = phase
    return p


def node(name: str, beat: datetime | None) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    if beat is not None:
        cond = n.status.conditions.add(type="Ready", status="True")
        cond.last_heartbeat_time.FromDatetime(beat)
    return n


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        pytest.param([], {"Pending": 0, "Running": 0, "Succeeded": 0, "Failed": 0, "Unknown": 0}, id="none"),
        pytest.param(["", "Pending", "Running"], {"Pending": 2, "Running": 1}, id="no-phase-is-pending"),
        pytest.param(["Succeeded", "Failed", "Failed"], {"Succeeded": 1, "Failed": 2}, id="finished"),
        pytest.param(["Weird"], {"Weird": 1, "Pending": 0}, id="unknown-phase-kept"),
    ],
)
def test_pods_by_phase(phases: list[str], expected: dict[str, int]) -> None:
    counts = pods_by_phase(pod(f"p{i}", phase) for i, phase in enumerate(phases))
    assert {k: counts[k] for k in expected} == expected
    assert set(counts) >= {"Pending", "Running", "Succeeded", "Failed", "Unknown"}


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        pytest.param([node("a", NOW - timedelta(seconds=7))], {"a": 7.0}, id="seven-seconds"),
        pytest.param([node("a", None)], {}, id="never-beat"),
        pytest.param([node("a", NOW + timedelta(seconds=3))], {"a": 0.0}, id="clock-skew-is-zero"),
        pytest.param([pod("not-a-node")], {}, id="other-kinds-ignored"),
    ],
)
def test_heartbeat_ages(nodes: list[object], expected: dict[str, float]) -> None:
    assert heartbeat_ages(nodes, NOW) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:9464", ("127.0.0.1", 9464), id="host-port"),
        pytest.param(":9464", ("10.0.0.1", 9464), id="port-only"),
        pytest.param("[::1]:0", ("::1", 0), id="ipv6"),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text, default_host="10.0.0.1") == expected


@pytest.mark.parametrize("text", ["9464", "host:", "host:http", "host:70000"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(MetricsEndpointError, match="expected HOST:PORT"):
        parse_listen(text, default_host="127.0.0.1")


def test_counters_and_histograms_as_prometheus_reads_them() -> None:
    metrics = ControlPlaneTelemetry(process=False)
    metrics.api_request("corral.v1.ObjectService/Get", "OK", 0.003)
    metrics.api_request("corral.v1.ObjectService/Get", "NOT_FOUND", 0.002)
    metrics.api_request("corral.v1.ObjectService/Watch", "CANCELLED", None)
    metrics.scheduling_attempts("scheduled", 3)
    metrics.scheduling_attempts("unschedulable")
    metrics.pod_bound(NOW, NOW + timedelta(seconds=2))
    metrics.synced("scheduler", 0.01, failed=False)
    metrics.synced("scheduler", 0.02, failed=True)

    text = generate_latest(metrics.registry).decode()
    samples = parse(text)
    kinds = families(text)
    assert kinds["corral_api_requests"] == "counter"
    assert kinds["corral_api_request_duration_seconds"] == "histogram"
    assert kinds["corral_scheduling_latency_seconds"] == "histogram"
    assert value(samples, "corral_api_requests_total", method="corral.v1.ObjectService/Get", code="OK") == 1
    assert value(samples, "corral_api_requests_total", method="corral.v1.ObjectService/Get", code="NOT_FOUND") == 1
    assert value(samples, "corral_api_request_duration_seconds_count", method="corral.v1.ObjectService/Get") == 2
    # Streams are counted, not timed.
    assert value(samples, "corral_api_requests_total", method="corral.v1.ObjectService/Watch", code="CANCELLED") == 1
    assert value(samples, "corral_api_request_duration_seconds_count", method="corral.v1.ObjectService/Watch") is None
    assert value(samples, "corral_scheduling_attempts_total", result="scheduled") == 3
    assert value(samples, "corral_scheduling_attempts_total", result="unschedulable") == 1
    assert value(samples, "corral_scheduling_attempts_total", result="error") == 0
    assert value(samples, "corral_scheduling_latency_seconds_sum") == 2.0
    assert value(samples, "corral_scheduling_latency_seconds_bucket", le="1.0") == 0
    assert value(samples, "corral_scheduling_latency_seconds_bucket", le="2.0") == 1
    assert value(samples, "corral_reconcile_duration_seconds_count", controller="scheduler") == 2
    assert value(samples, "corral_reconcile_errors_total", controller="scheduler") == 1


def test_each_control_plane_has_its_own_registry() -> None:
    one, two = ControlPlaneTelemetry(), ControlPlaneTelemetry()
    one.api_request("m", "OK", 0.1)
    assert (
        value(parse(generate_latest(two.registry).decode()), "corral_api_requests_total", method="m", code="OK") is None
    )
    assert value(parse(generate_latest(one.registry).decode()), "process_resident_memory_bytes") is not None


def informer(kind: str, objects: Iterable[object], *, synced: bool = True) -> Informer:
    inf = Informer(ObjectStore(MemoryStore()), by_kind(kind))
    inf.items = {f"o{i}": o for i, o in enumerate(objects)}  # type: ignore[misc]
    if synced:
        inf.synced.set()
    return inf


async def test_state_gauges_are_read_on_the_loop_when_scraped_from_another_thread() -> None:
    metrics = ControlPlaneTelemetry(process=False, now=lambda: NOW)
    leading = threading.Event()
    metrics.observe_replica(leading=leading.is_set)
    queue = WorkQueue()
    queue.add("default/web")
    queue.add("default/api")
    queues: Mapping[str, Sized] = {"deployment-controller": queue, "scheduler": WorkQueue()}
    informers = {
        "Pod": informer("Pod", [pod("a", "Running"), pod("b", "Running"), pod("c")]),
        "Node": informer("Node", [node("n1", NOW - timedelta(seconds=5))]),
    }

    before = parse((await asyncio.to_thread(generate_latest, metrics.registry)).decode())
    assert value(before, "corral_leader") == 0
    assert value(before, "corral_pods", phase="Running") is None  # a follower exports no cluster state

    leading.set()
    metrics.controllers_started(informers, queues)
    during = parse((await asyncio.to_thread(generate_latest, metrics.registry)).decode())
    assert value(during, "corral_leader") == 1
    assert value(during, "corral_pods", phase="Running") == 2
    assert value(during, "corral_pods", phase="Pending") == 1
    assert value(during, "corral_pods", phase="Failed") == 0
    assert value(during, "corral_node_heartbeat_age_seconds", node="n1") == 5.0
    assert value(during, "corral_workqueue_depth", controller="deployment-controller") == 2
    assert value(during, "corral_workqueue_depth", controller="scheduler") == 0

    # Scraped on the loop itself (no thread hop), the same values.
    assert parse(generate_latest(metrics.registry).decode()) == during

    leading.clear()
    metrics.controllers_stopped()
    after = parse((await asyncio.to_thread(generate_latest, metrics.registry)).decode())
    assert value(after, "corral_leader") == 0
    assert value(after, "corral_pods", phase="Running") is None
    assert value(after, "corral_workqueue_depth", controller="scheduler") is None


async def test_cluster_gauges_wait_for_the_informers_to_sync() -> None:
    metrics = ControlPlaneTelemetry(process=False)
    metrics.controllers_started({"Pod": informer("Pod", [pod("a", "Running")], synced=False)}, {})
    samples = parse(generate_latest(metrics.registry).decode())
    assert value(samples, "corral_pods", phase="Running") is None


def test_a_loop_that_does_not_answer_costs_the_scrape_nothing_but_time() -> None:
    idle = asyncio.new_event_loop()  # never run: nothing scheduled on it executes
    try:
        with structlog.testing.capture_logs() as logs:
            assert call_on_loop(idle, lambda: 1, timeout=0.05) is None
        assert [e["event"] for e in logs] == ["metrics_snapshot_timeout"]
    finally:
        idle.close()
    assert call_on_loop(idle, lambda: 1, timeout=0.05) is None  # closed


async def test_a_failing_read_is_logged_not_raised() -> None:
    def broken() -> int:
        raise KeyError("gone")

    with structlog.testing.capture_logs() as logs:
        result = await asyncio.to_thread(call_on_loop, asyncio.get_running_loop(), broken, timeout=5)
    assert result is None
    assert logs[0]["event"] == "metrics_snapshot_failed"


def test_heartbeat_ages_read_the_node_lease() -> None:
    from protos import leases
    from protos.corral.v1 import coordination_pb2

    lease = coordination_pb2.Lease()
    lease.spec.renew_time.FromDatetime(NOW - timedelta(seconds=2))
    nodes = [node("a", NOW - timedelta(seconds=200)), node("b", NOW - timedelta(seconds=9))]
    assert heartbeat_ages(nodes, NOW, {leases.node_lease_key("a"): lease}) == {"a": 2.0, "b": 9.0}
