"""Resource and traffic metrics of this node, for `NodeService.ReportMetrics`.

Every metrics period the session asks the `MetricsSampler` for a
`MetricsReport`:

- node usage: CPU from the system-wide cumulative CPU times (psutil), as the
  busy share of the time since the previous sample times the core count;
  memory in use (total minus available);
- every assigned pod's running containers: each runtime's `stats` (cumulative
  CPU time, working-set memory), sampled concurrently, at most
  `MAX_CONCURRENT_STATS` at a time. Docker's come from the cgroup files (a few
  file reads); where those cannot be found, from the engine's one-shot stats,
  which take about a second each and hold one of the agent's 8 I/O threads
  meanwhile, so half of them stay free for pod workers and probes;
- the node proxy's per-Service counters, with the connections relayed to each
  backend pod (cumulative since the agent started).

CPU is a rate, so it needs two cumulative samples: the sampler keeps the last
one of the node and of each running container, nothing more. A container seen
for the first time is measured since it started (its CPU time was zero then).
The arithmetic is pure (`cpu_millis`, `node_cpu_millis`, `first_sample`), with
the times passed in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import psutil
import structlog

from agent.network.proxy.server import ServiceStats
from agent.runtime import base
from agent.runtime.base import ContainerInfo, ContainerRuntime, ContainerStats, State
from agent.runtime.errors import RuntimeFailure
from protos.corral.v1 import metrics_pb2, pod_pb2
from protos.wellknown import DEFAULT_RUNTIME

log = structlog.get_logger(__name__)

MAX_CONCURRENT_STATS = 4
# Rates over shorter windows are mostly noise (CPU times tick every 10 ms).
MIN_WINDOW = 1.0


# -- the pure core ----------------------------------------------------------------


@dataclass(frozen=True)
class CpuSample:
    """A container's cumulative CPU time (nanoseconds) at `at` (monotonic seconds)."""

    cpu_ns: int
    at: float


@dataclass(frozen=True)
class CpuTimes:
    """The node's cumulative CPU seconds, summed over all cores: busy, and in all."""

    busy: float
    total: float


def cpu_millis(prev: CpuSample, cur: CpuSample, *, min_window: float = MIN_WINDOW) -> int | None:
    """Millicores used between two samples; None when they are less than `min_window` apart.

    A counter that went down (a process under the container ended unreaped)
    counts as no use, never as negative use.
    """
    elapsed = cur.at - prev.at
    if elapsed < min_window or elapsed <= 0:
        return None
    used_ns = max(0, cur.cpu_ns - prev.cpu_ns)
    return round(used_ns / 1_000_000 / elapsed)


def node_cpu_millis(prev: CpuTimes, cur: CpuTimes, cores: int) -> int | None:
    """Millicores the node used between two samples of its CPU times; None without time between them."""
    total = cur.total - prev.total
    if total <= 0:
        return None
    busy = min(max(0.0, cur.busy - prev.busy), total)
    return round(busy / total * cores * 1000)


def first_sample(started_at: datetime | None, *, now: float, wall_now: datetime) -> CpuSample | None:
    """The sample a container had when it started (no CPU time yet), on the monotonic clock of `now`."""
    if started_at is None:
        return None
    age = (wall_now - started_at).total_seconds()
    if age <= 0:
        return None
    return CpuSample(0, now - age)


def service_traffic(key: str, stats: ServiceStats) -> metrics_pb2.ServiceTraffic:
    """The proxy's counters of one Service ("namespace/name") as a report entry."""
    namespace, _, name = key.partition("/")
    return metrics_pb2.ServiceTraffic(
        namespace=namespace,
        name=name,
        connections_total=stats.connections_total,
        connections_active=stats.connections_active,
        connect_failures_total=stats.connect_failures,
        backends=[
            metrics_pb2.BackendTraffic(pod=pod, connections_total=count)
            for pod, count in sorted(stats.backends.items())
        ],
    )


# -- the node, through psutil --------------------------------------------------------


def read_cpu_times() -> CpuTimes:
    times = psutil.cpu_times()
    # On Linux guest time is part of user time already.
    total = sum(getattr(times, f) for f in times._fields if f not in ("guest", "guest_nice"))
    idle = times.idle + getattr(times, "iowait", 0.0)
    return CpuTimes(busy=total - idle, total=total)


def read_memory_used() -> int:
    memory = psutil.virtual_memory()
    return int(memory.total - memory.available)


# -- the sampler --------------------------------------------------------------------


@dataclass(frozen=True)
class _Measured:
    pod: pod_pb2.Pod
    container: str
    cpu_millis: int | None
    memory_bytes: int
    window: float


class MetricsSampler:
    """Builds this node's `MetricsReport`s; see the module docstring."""

    def __init__(
        self,
        node_name: str,
        runtimes: Mapping[str, ContainerRuntime],
        pods: Callable[[], Iterable[pod_pb2.Pod]],
        *,
        traffic: Callable[[], Mapping[str, ServiceStats]] | None = None,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cpu_times: Callable[[], CpuTimes] = read_cpu_times,
        memory_used: Callable[[], int] = read_memory_used,
        cores: int | None = None,
        max_concurrent: int = MAX_CONCURRENT_STATS,
    ) -> None:
        """`pods`: the pods assigned to this node now; `clock`: monotonic seconds (default: the loop's)."""
        self.node_name = node_name
        self.runtimes = dict(runtimes)
        self._pods = pods
        self._traffic = traffic
        self._clock = clock
        self._wall_clock = wall_clock
        self._cpu_times = cpu_times
        self._memory_used = memory_used
        self._cores = cores or psutil.cpu_count(logical=True) or 1
        self._max_concurrent = max(1, max_concurrent)
        self._node: tuple[CpuTimes, float] | None = None
        self._containers: dict[str, CpuSample] = {}
        self._failing: set[str] = set()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def collect(self) -> metrics_pb2.MetricsReport:
        """Sample everything now; parts without a rate yet (first node sample, a container just
        started) are left out of this report."""
        wall = self._wall_clock()
        report = metrics_pb2.MetricsReport(node_name=self.node_name)
        report.timestamp.FromDatetime(wall)
        node = self._node_usage(wall)
        if node is not None:
            report.node.CopyFrom(node)
        report.pods.extend(await self._pod_usages(wall))
        if self._traffic is not None:
            report.services.extend(service_traffic(key, stats) for key, stats in sorted(self._traffic().items()))
        return report

    # -- node ----------------------------------------------------------------------

    def _node_usage(self, wall: datetime) -> metrics_pb2.NodeUsage | None:
        now = self._now()
        try:
            times = self._cpu_times()
            memory = self._memory_used()
        except (psutil.Error, OSError) as e:
            log.warning("node_metrics_failed", error=str(e))
            return None
        previous = self._node
        if previous is None or now - previous[1] < MIN_WINDOW:
            if previous is None:
                self._node = (times, now)
            return None
        self._node = (times, now)
        millis = node_cpu_millis(previous[0], times, self._cores)
        if millis is None:
            return None
        usage = metrics_pb2.NodeUsage(cpu_millis=millis, memory_bytes=memory, window_seconds=now - previous[1])
        usage.timestamp.FromDatetime(wall)
        return usage

    # -- pods ----------------------------------------------------------------------

    async def _pod_usages(self, wall: datetime) -> list[metrics_pb2.PodUsage]:
        pods = {p.metadata.uid: p for p in self._pods()}
        targets: list[tuple[ContainerRuntime, ContainerInfo, pod_pb2.Pod]] = []
        wanted_runtimes = {p.spec.runtime_class_name or DEFAULT_RUNTIME for p in pods.values()}
        for name in sorted(wanted_runtimes):
            runtime = self.runtimes.get(name)
            if runtime is not None:
                targets += await self._running(runtime, pods)
        limit = asyncio.Semaphore(self._max_concurrent)
        measured = await asyncio.gather(*(self._measure(limit, runtime, info, pod) for runtime, info, pod in targets))
        seen = {info.id for _, info, _ in targets}
        self._containers = {cid: sample for cid, sample in self._containers.items() if cid in seen}
        return _pod_usages([m for m in measured if m is not None], wall)

    async def _running(
        self, runtime: ContainerRuntime, pods: Mapping[str, pod_pb2.Pod]
    ) -> list[tuple[ContainerRuntime, ContainerInfo, pod_pb2.Pod]]:
        """The runtime's running containers of assigned pods (the newest attempt per container)."""
        try:
            listed = await runtime.list({base.LABEL_MANAGED: "true", base.LABEL_NODE: self.node_name})
        except RuntimeFailure as e:
            self._failed(runtime.name, "metrics_list_failed", e)
            return []
        self._failing.discard(runtime.name)
        newest: dict[tuple[str, str], ContainerInfo] = {}
        for info in listed:
            uid = info.labels.get(base.LABEL_POD_UID, "")
            if info.state is not State.RUNNING or uid not in pods:
                continue
            key = (uid, info.labels.get(base.LABEL_CONTAINER, ""))
            known = newest.get(key)
            if known is None or _attempt(info) > _attempt(known):
                newest[key] = info
        return [(runtime, info, pods[uid]) for (uid, _), info in sorted(newest.items())]

    async def _measure(
        self, limit: asyncio.Semaphore, runtime: ContainerRuntime, info: ContainerInfo, pod: pod_pb2.Pod
    ) -> _Measured | None:
        async with limit:
            try:
                stats = await runtime.stats(info.id)
            except RuntimeFailure as e:
                self._failed(f"{runtime.name}/stats", "metrics_stats_failed", e, container=info.id)
                return None
            # When the figures were read (an engine stats call takes a second): both clocks at once.
            now, wall_now = self._now(), self._wall_clock()
        self._failing.discard(f"{runtime.name}/stats")
        if stats is None:
            return None
        millis, window = self._rate(info, stats, now, wall_now)
        return _Measured(pod, info.labels.get(base.LABEL_CONTAINER, ""), millis, stats.memory_bytes, window)

    def _rate(self, info: ContainerInfo, stats: ContainerStats, now: float, wall: datetime) -> tuple[int | None, float]:
        current = CpuSample(stats.cpu_ns, now)
        previous = self._containers.get(info.id) or first_sample(info.started_at, now=now, wall_now=wall)
        millis = None if previous is None else cpu_millis(previous, current)
        if millis is not None or info.id not in self._containers:
            self._containers[info.id] = current
        window = 0.0 if previous is None else now - previous.at
        return millis, window

    def _failed(self, key: str, event: str, error: RuntimeFailure, **details: str) -> None:
        """Log a failure as a warning once while it lasts (the next period tries again)."""
        log_event = log.debug if key in self._failing else log.warning
        log_event(event, node=self.node_name, runtime=key.partition("/")[0], error=str(error), **details)
        self._failing.add(key)


def _attempt(info: ContainerInfo) -> int:
    try:
        return int(info.labels.get(base.LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def _pod_usages(measured: list[_Measured], wall: datetime) -> list[metrics_pb2.PodUsage]:
    """One PodUsage per pod whose every running container has a CPU rate this time."""
    by_pod: dict[str, list[_Measured]] = {}
    for m in measured:
        by_pod.setdefault(m.pod.metadata.uid, []).append(m)
    usages = []
    for items in by_pod.values():
        if any(m.cpu_millis is None for m in items):
            continue
        pod = items[0].pod
        usage = metrics_pb2.PodUsage(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            window_seconds=max(m.window for m in items),
            containers=[
                metrics_pb2.ContainerUsage(name=m.container, cpu_millis=m.cpu_millis or 0, memory_bytes=m.memory_bytes)
                for m in sorted(items, key=lambda m: m.container)
            ],
        )
        usage.timestamp.FromDatetime(wall)
        usages.append(usage)
    return sorted(usages, key=lambda u: (u.namespace, u.name))
