"""The Docker runtime's container stats on a real engine: from the cgroup files, without the engine's
stats call (which answers zeros on some hosts and takes a second); the engine only as the fallback
or when chosen.

The engine's stats call is replaced by one that answers as a broken engine does (`total_usage: 0`,
empty memory stats) and counts its calls, so these tests show where the figures come from on any
host. Docker is never skipped: without an engine and the test image they fail and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import docker  # type: ignore[import-untyped]
import pytest
from structlog.testing import capture_logs

from agent.node.metrics import MetricsSampler
from agent.runtime.base import LABEL_CONTAINER, LABEL_MANAGED, LABEL_NODE, LABEL_POD_UID, ContainerSpec
from agent.runtime.cgroups import CgroupReader, Hierarchies, parse_mountinfo
from agent.runtime.docker import DockerRuntime
from agent.runtime.engine import EngineClient
from protos.corral.v1 import pod_pb2

pytestmark = pytest.mark.timeout(90)

T = TypeVar("T")
IMAGE = "corral-test/busybox:1"
TEST_LABEL = "io.corral.test"
BUSY = ["sh", "-c", "while :; do :; done"]
WAIT = 20.0
# What the engine's one-shot stats answer on the hosts where they are broken.
BROKEN_ENGINE_STATS = {
    "read": "2030-01-01T00:00:00.386048843Z",
    "cpu_stats": {"cpu_usage": {"total_usage": 0}},
    "memory_stats": {},
}


@dataclass
class EngineStats:
    """Stands in for the engine's stats call: answers as a broken engine, or passes through; counts calls."""

    real: Callable[..., Any]
    broken: bool = True
    calls: list[str] = field(default_factory=list)

    def __call__(self, container: str) -> Any:
        self.calls.append(container)
        return BROKEN_ENGINE_STATS if self.broken else self.real(container)


@dataclass
class Engine:
    client: Any
    test_id: str

    def runtime(self, **options: Any) -> tuple[DockerRuntime, EngineStats]:
        api = EngineClient.from_env()
        runtime = DockerRuntime(api, **options)
        engine_stats = EngineStats(api.stats)
        runtime._api = _Api(api, engine_stats)  # type: ignore[assignment]
        return runtime, engine_stats

    def spec(self, name: str) -> ContainerSpec:
        return ContainerSpec(
            name=f"corral-test-{self.test_id}-{name}",
            image=IMAGE,
            command=BUSY,
            labels={LABEL_MANAGED: "true", TEST_LABEL: self.test_id},
        )


class _Api:
    """The engine API client with its stats call replaced."""

    def __init__(self, api: Any, stats: EngineStats) -> None:
        self._api = api
        self.stats = stats

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    try:
        client = await asyncio.to_thread(docker.from_env)
        await asyncio.to_thread(client.images.get, IMAGE)
    except docker.errors.DockerException as e:
        pytest.fail(f"needs a Docker engine and the test images: run scripts/docker-setup ({e})")
    made = Engine(client, uuid.uuid4().hex[:12])
    try:
        yield made
    finally:
        for container in await asyncio.to_thread(
            client.containers.list, all=True, filters={"label": f"{TEST_LABEL}={made.test_id}"}
        ):
            await asyncio.to_thread(container.remove, force=True)
        client.close()


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str) -> T:
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        value = await probe()
        if check(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.1)


async def test_cpu_and_memory_come_from_the_cgroup_files_without_any_engine_stats_call(engine: Engine) -> None:
    runtime, engine_stats = engine.runtime()
    info = await runtime.run(engine.spec("busy"))

    first = await eventually(lambda: runtime.stats(info.id), lambda s: s is not None and s.cpu_ns > 0, "CPU time")
    assert first is not None
    later = await eventually(
        lambda: runtime.stats(info.id), lambda s: s is not None and s.cpu_ns > first.cpu_ns, "CPU time growing"
    )

    assert later is not None and later.memory_bytes > 0
    assert engine_stats.calls == [], "no engine stats call"
    await runtime.stop(info.id, grace_seconds=1)
    assert await runtime.stats(info.id) is None, "no stats once stopped: its cgroup is gone"
    assert engine_stats.calls == []


async def test_the_engine_stats_path_stays_selectable(engine: Engine) -> None:
    runtime, engine_stats = engine.runtime(stats_source="engine")
    engine_stats.broken = False
    info = await runtime.run(engine.spec("busy"))

    stats = await eventually(lambda: runtime.stats(info.id), lambda s: s is not None, "engine stats")

    assert stats is not None and stats.memory_bytes > 0
    assert engine_stats.calls, "read through the engine"
    with pytest.raises(ValueError, match="stats source"):
        DockerRuntime(engine.client, stats_source="files")


async def test_containers_without_cgroup_files_fall_back_to_the_engine_stats(engine: Engine) -> None:
    runtime, engine_stats = engine.runtime(cgroups=CgroupReader(Hierarchies()))
    engine_stats.broken = False
    info = await runtime.run(engine.spec("busy"))

    with capture_logs() as logs:
        stats = await eventually(lambda: runtime.stats(info.id), lambda s: s is not None and s.cpu_ns > 0, "CPU")
        await runtime.stats(info.id)

    assert stats is not None
    assert len(engine_stats.calls) >= 2
    assert [e["event"] for e in logs].count("container_stats_from_engine") == 1, "said once per container"


async def test_a_container_under_another_cgroup_parent_is_found_by_its_main_process(engine: Engine) -> None:
    runtime, engine_stats = engine.runtime()
    parent = f"/corral-test-{engine.test_id}"
    container = await asyncio.to_thread(
        engine.client.containers.run,
        IMAGE,
        BUSY,
        detach=True,
        cgroup_parent=parent,
        name=f"corral-test-{engine.test_id}-parent",
        labels={TEST_LABEL: engine.test_id},
    )
    try:
        stats = await eventually(
            lambda: runtime.stats(container.id), lambda s: s is not None and s.cpu_ns > 0, "CPU time under the parent"
        )

        assert stats is not None and stats.memory_bytes > 0
        assert engine_stats.calls == []
        # A short id finds it too (by its process).
        assert await runtime.stats(container.id[:12]) is not None
        assert engine_stats.calls == []
    finally:
        await asyncio.to_thread(container.remove, force=True)
        remove_cgroup(parent)


def remove_cgroup(cgroup: str) -> None:
    """The (empty) cgroup the engine made for a parent, in every hierarchy."""
    with open("/proc/self/mountinfo") as f:
        hierarchies = parse_mountinfo(f.read())
    for mount in {*hierarchies.v1.values(), *([hierarchies.v2] if hierarchies.v2 else [])}:
        directory = mount.directory(cgroup)
        if directory is not None:
            with contextlib.suppress(OSError):
                directory.rmdir()


async def test_a_busy_docker_pod_is_measured_on_a_host_whose_engine_stats_are_broken(engine: Engine) -> None:
    """What `corral top` and a CPU HPA read: the pod's millicores, here without any engine stats call."""
    runtime, engine_stats = engine.runtime()
    pod = pod_pb2.Pod()
    pod.metadata.namespace, pod.metadata.name, pod.metadata.uid = "default", "burn", f"uid-{engine.test_id}"
    labels = {
        LABEL_MANAGED: "true",
        TEST_LABEL: engine.test_id,
        LABEL_NODE: "node-1",
        LABEL_POD_UID: pod.metadata.uid,
        LABEL_CONTAINER: "main",
    }
    await runtime.run(replace(engine.spec("burn"), labels=labels))
    sampler = MetricsSampler("node-1", {"docker": runtime}, lambda: [pod])

    report = await eventually(sampler.collect, lambda r: len(r.pods) == 1, "the pod's usage")

    (container,) = report.pods[0].containers
    # A busy loop on a shared 2-core box: well above idle, whatever the other load.
    assert container.cpu_millis > 100 and container.memory_bytes > 0
    assert engine_stats.calls == []


async def test_where_stats_come_from_is_remembered_for_a_bounded_number_of_containers(engine: Engine) -> None:
    runtime, engine_stats = engine.runtime()
    info = await runtime.run(engine.spec("busy"))
    # As if a thousand containers had been measured and removed behind the agent's back.
    runtime._stats_from.update({f"gone-{i}": None for i in range(2000)})

    assert await runtime.stats(info.id) is not None

    assert list(runtime._stats_from) == [info.id]
    assert engine_stats.calls == []
