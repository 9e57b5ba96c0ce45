"""Agent metrics: the rate arithmetic, Docker's stats shapes, and the sampler over the fake runtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.network.proxy.server import ServiceStats
from agent.node.metrics import (
    CpuSample,
    CpuTimes,
    MetricsSampler,
    cpu_millis,
    first_sample,
    node_cpu_millis,
    service_traffic,
)
from agent.runtime import base
from agent.runtime.base import ContainerSpec, ContainerStats
from agent.runtime.docker import _to_stats
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from protos.corral.v1 import pod_pb2

NODE = "n1"
T0 = datetime(2030, 1, 1, tzinfo=UTC)


# -- cpu rates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prev", "cur", "expected"),
    [
        pytest.param(CpuSample(0, 100.0), CpuSample(1_000_000_000, 101.0), 1000, id="one-core-for-a-second"),
        pytest.param(CpuSample(5_000_000_000, 0.0), CpuSample(6_000_000_000, 10.0), 100, id="a-tenth-of-a-core"),
        pytest.param(CpuSample(0, 0.0), CpuSample(30_000_000_000, 10.0), 3000, id="three-cores"),
        pytest.param(CpuSample(7, 0.0), CpuSample(7, 10.0), 0, id="idle"),
        pytest.param(CpuSample(9_000_000_000, 0.0), CpuSample(1_000_000_000, 10.0), 0, id="counter-went-down"),
        pytest.param(CpuSample(0, 10.0), CpuSample(10**9, 10.5), None, id="window-too-short"),
        pytest.param(CpuSample(0, 10.0), CpuSample(10**9, 9.0), None, id="clock-backwards"),
    ],
)
def test_cpu_millis_from_two_cumulative_samples(prev: CpuSample, cur: CpuSample, expected: int | None) -> None:
    assert cpu_millis(prev, cur) == expected


@pytest.mark.parametrize(
    ("prev", "cur", "cores", "expected"),
    [
        pytest.param(CpuTimes(10, 100), CpuTimes(15, 120), 2, 500, id="a-quarter-of-two-cores"),
        pytest.param(CpuTimes(10, 100), CpuTimes(30, 120), 4, 4000, id="all-busy"),
        pytest.param(CpuTimes(10, 100), CpuTimes(10, 120), 4, 0, id="idle"),
        pytest.param(CpuTimes(10, 100), CpuTimes(12, 100), 4, None, id="no-time-passed"),
    ],
)
def test_node_cpu_millis(prev: CpuTimes, cur: CpuTimes, cores: int, expected: int | None) -> None:
    assert node_cpu_millis(prev, cur, cores) == expected


def test_a_new_container_is_measured_since_it_started() -> None:
    sample = first_sample(T0, now=500.0, wall_now=T0 + timedelta(seconds=20))

    assert sample == CpuSample(0, 480.0)
    assert first_sample(None, now=500.0, wall_now=T0) is None
    assert first_sample(T0 + timedelta(seconds=5), now=500.0, wall_now=T0) is None


def test_service_traffic_carries_every_backend_pod() -> None:
    stats = ServiceStats(
        connections_total=7, connections_active=2, connect_failures=1, backends={"web-b": 3, "web-a": 4}
    )

    traffic = service_traffic("shop/web", stats)

    assert (traffic.namespace, traffic.name) == ("shop", "web")
    assert (traffic.connections_total, traffic.connections_active, traffic.connect_failures_total) == (7, 2, 1)
    assert [(b.pod, b.connections_total) for b in traffic.backends] == [("web-a", 4), ("web-b", 3)]


# -- Docker's stats -------------------------------------------------------------------


def docker_stats(memory: dict[str, Any], total_usage: int = 2_196_644_829) -> dict[str, Any]:
    return {
        "read": "2030-01-01T00:00:00.386048843Z",
        "cpu_stats": {
            "cpu_usage": {"total_usage": total_usage, "usage_in_usermode": 1_180_000_000},
            "system_cpu_usage": 37_580_200_000_000,
            "online_cpus": 2,
        },
        "memory_stats": memory,
    }


CGROUP_V1 = {
    "usage": 10_000_000,
    "limit": 25_276_502_016,
    "stats": {"cache": 4_000_000, "inactive_file": 1_000_000, "total_inactive_file": 3_000_000, "rss": 6_000_000},
}
CGROUP_V2 = {
    "usage": 10_000_000,
    "limit": 25_276_502_016,
    "stats": {"anon": 6_000_000, "file": 4_000_000, "inactive_file": 2_500_000, "active_file": 1_500_000},
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(docker_stats(CGROUP_V1), ContainerStats(2_196_644_829, 7_000_000), id="cgroup-v1"),
        pytest.param(docker_stats(CGROUP_V2), ContainerStats(2_196_644_829, 7_500_000), id="cgroup-v2"),
        pytest.param(
            docker_stats({"usage": 9_000, "stats": {"cache": 1_000}}),
            ContainerStats(2_196_644_829, 8_000),
            id="only-cache",
        ),
        pytest.param(
            docker_stats({"usage": 9_000, "stats": {"total_inactive_file": 20_000}}),
            ContainerStats(2_196_644_829, 9_000),
            id="inactive-above-usage",
        ),
        pytest.param(docker_stats({"usage": 9_000}), ContainerStats(2_196_644_829, 9_000), id="no-detail"),
        pytest.param(
            {"read": "0001-01-01T00:00:00Z", "memory_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}}},
            None,
            id="not-running",
        ),
    ],
)
def test_docker_stats_parsing(raw: dict[str, Any], expected: ContainerStats | None) -> None:
    assert _to_stats(raw) == expected


# -- the sampler ------------------------------------------------------------------------


class Clocks:
    """A monotonic clock and a wall clock that move together (the fake stamps starts with the real time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.start = datetime.now(UTC)

    def mono(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now - 1000.0)


def pod(name: str, runtime: str = "") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.namespace, p.metadata.name, p.metadata.uid = "default", name, f"uid-{name}"
    p.spec.runtime_class_name = runtime
    return p


def labels(p: pod_pb2.Pod, container: str, attempt: int = 0, node: str = NODE) -> dict[str, str]:
    return {
        base.LABEL_MANAGED: "true",
        base.LABEL_NODE: node,
        base.LABEL_POD_UID: p.metadata.uid,
        base.LABEL_POD_NAME: p.metadata.name,
        base.LABEL_NAMESPACE: p.metadata.namespace,
        base.LABEL_CONTAINER: container,
        base.LABEL_ATTEMPT: str(attempt),
    }


async def test_sampler_reports_rates_memory_and_traffic() -> None:
    clocks = Clocks()
    runtime = FakeRuntime(
        {"busy": FakeBehaviour(cpu_millis=500, memory_bytes=64 << 20), "idle": FakeBehaviour(memory_bytes=8 << 20)},
        clock=clocks.mono,
    )
    web, other = pod("web"), pod("elsewhere")
    await runtime.run(ContainerSpec(name="web-main", image="busy", labels=labels(web, "main")))
    await runtime.run(ContainerSpec(name="web-side", image="idle", labels=labels(web, "side")))
    await runtime.run(ContainerSpec(name="other", image="busy", labels=labels(other, "main")))  # not assigned
    cpu = iter([CpuTimes(100, 1000), CpuTimes(105, 1020)])
    traffic = {"default/web": ServiceStats(connections_total=3, backends={"web": 3})}
    sampler = MetricsSampler(
        NODE,
        {"docker": runtime},
        lambda: [web],
        traffic=lambda: traffic,
        clock=clocks.mono,
        wall_clock=clocks.wall,
        cpu_times=lambda: next(cpu),
        memory_used=lambda: 1 << 30,
        cores=2,
    )

    first = await sampler.collect()  # containers started now: no window yet; node: the baseline
    clocks.now += 10
    second = await sampler.collect()

    assert first.node_name == NODE and not first.HasField("node") and not first.pods
    assert second.node.cpu_millis == 500 and second.node.memory_bytes == 1 << 30
    assert second.node.window_seconds == pytest.approx(10)
    assert [(p.name, p.uid) for p in second.pods] == [("web", "uid-web")]
    usage = second.pods[0]
    assert [(c.name, c.cpu_millis, c.memory_bytes) for c in usage.containers] == [
        ("main", 500, 64 << 20),
        ("side", 0, 8 << 20),
    ]
    assert usage.window_seconds == pytest.approx(10)
    assert usage.timestamp.ToDatetime(tzinfo=UTC) == clocks.wall()
    assert [(s.name, [(b.pod, b.connections_total) for b in s.backends]) for s in second.services] == [
        ("web", [("web", 3)])
    ]


async def test_sampler_follows_a_changing_rate_and_forgets_stopped_containers() -> None:
    clocks = Clocks()
    runtime = FakeRuntime({"busy": FakeBehaviour(cpu_millis=200)}, clock=clocks.mono)
    web = pod("web")
    info = await runtime.run(ContainerSpec(name="web-main", image="busy", labels=labels(web, "main")))
    sampler = MetricsSampler(
        NODE,
        {"docker": runtime},
        lambda: [web],
        clock=clocks.mono,
        wall_clock=clocks.wall,
        cpu_times=lambda: CpuTimes(0, 0),
        memory_used=lambda: 0,
        cores=1,
    )
    clocks.now += 5  # measured since the start at first sight
    assert [c.cpu_millis for c in (await sampler.collect()).pods[0].containers] == [200]

    runtime.set_usage(info.id, cpu_millis=1500)
    clocks.now += 10
    assert [c.cpu_millis for c in (await sampler.collect()).pods[0].containers] == [1500]

    await runtime.stop(info.id, grace_seconds=1)
    clocks.now += 10
    assert not (await sampler.collect()).pods
    assert not sampler._containers


async def test_sampler_measures_the_newest_attempt_on_the_pods_runtime() -> None:
    clocks = Clocks()
    docker = FakeRuntime({"busy": FakeBehaviour(cpu_millis=300)}, clock=clocks.mono)
    process = FakeRuntime({"busy": FakeBehaviour(cpu_millis=700)}, clock=clocks.mono)
    web, job = pod("web"), pod("job", runtime="process")
    await docker.run(ContainerSpec(name="web-0", image="busy", labels=labels(web, "main", attempt=0)))
    newest = await docker.run(ContainerSpec(name="web-1", image="busy", labels=labels(web, "main", attempt=1)))
    docker.set_usage(newest.id, cpu_millis=100)
    await process.run(ContainerSpec(name="job-0", image="busy", labels=labels(job, "main")))
    await process.run(ContainerSpec(name="job-x", image="busy", labels=labels(job, "main", node="n2")))
    sampler = MetricsSampler(
        NODE,
        {"docker": docker, "process": process},
        lambda: [web, job],
        clock=clocks.mono,
        wall_clock=clocks.wall,
        cpu_times=lambda: CpuTimes(0, 0),
        memory_used=lambda: 0,
        cores=1,
    )
    clocks.now += 10

    report = await sampler.collect()

    # The first sample's window starts at the container's start, which the fake stamps with the real
    # time: on a loaded box a few milliseconds pass between `Clocks()` and the starts (700 read 703).
    got = [(p.name, [c.cpu_millis for c in p.containers]) for p in report.pods]
    assert [(name, len(millis)) for name, millis in got] == [("job", 1), ("web", 1)]
    assert got[0][1][0] == pytest.approx(700, rel=0.01) and got[1][1][0] == pytest.approx(100, rel=0.01), got
