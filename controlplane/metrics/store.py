"""Recent resource and traffic metrics, in memory: what agents pushed with `ReportMetrics`.

Nothing here is desired state, so nothing goes to etcd. Each replica keeps
what its own agents send (an agent talks to one replica at a time) and what
the other replicas relay of theirs (`controlplane.replicas.relay`), so every
replica sees every node; an agent that moves to another replica reports there
as soon as its session is up.

Per node and per pod the store keeps the newest usage as reported (copied
out of the report, so the rest of the report is freed) and, as compact
`UsagePoint`s (CPU and memory totals), the samples of the last
`history_seconds` (at most `max_samples` each). `node_usage` and `pod_usage`
answer the newest usage, if it is fresher than `max_age`. Nodes and pods not
reported for `max_age` are forgotten (checked at most every `PRUNE_EVERY`
seconds, on `record`), so memory follows what is running now: about 5 KB per
pod with the defaults (10 s agent period, 3 minutes of history, one Service's
traffic counter), i.e. some 55 MB for 10,000 pods.

Traffic arrives as cumulative counters (connections each node's proxy relayed
to each backend pod, per Service). `pod_requests_per_second` turns them into a
rate: per (node, Service) counter, the increase over the samples of the last
`rate_window` seconds divided by the time between the first and the last of
them (a counter that went down was reset by an agent restart: the increase
counts from zero), summed over every node and Service.

Ages are measured on the control plane's monotonic clock (`now`, passed in),
never on the agents' clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

import structlog
from google.protobuf.message import Message

from protos.corral.v1 import metrics_pb2

log = structlog.get_logger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=Message)

DEFAULT_MAX_AGE = 60.0
DEFAULT_HISTORY_SECONDS = 180.0
DEFAULT_RATE_WINDOW = 60.0
# Samples kept per node, pod and traffic counter, whatever the period agents report at.
DEFAULT_MAX_SAMPLES = 64
PRUNE_EVERY = 5.0

# Lists, not deques: an empty deque is 624 bytes, and there is one per pod and per traffic counter.
Samples = list[tuple[float, T]]
PodKey = tuple[str, str]
# Whose counter: the reporting node and the Service ("namespace/name").
CounterKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class UsagePoint:
    """One usage sample, compact: when it arrived (control plane monotonic seconds) and the totals."""

    seen: float
    cpu_millis: int
    memory_bytes: int


class _Series(Generic[M]):
    """The newest usage message of a node or pod, and its recent samples as points."""

    __slots__ = ("history", "latest", "seen")

    def __init__(self, latest: M, seen: float) -> None:
        self.latest = latest
        self.seen = seen
        self.history: list[UsagePoint] = []

    def add(self, usage: M, point: UsagePoint, keep: float, max_samples: int) -> None:
        self.latest, self.seen = usage, point.seen
        self.history.append(point)
        _trim(self.history, point.seen - keep, max_samples, lambda p: p.seen)


class MetricsStore:
    """Recent metrics by node and pod; see the module docstring."""

    def __init__(
        self,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        history_seconds: float = DEFAULT_HISTORY_SECONDS,
        rate_window: float = DEFAULT_RATE_WINDOW,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        self.max_age = max_age
        self.history_seconds = max(history_seconds, max_age)
        self.rate_window = rate_window
        self.max_samples = max(2, max_samples)
        self._nodes: dict[str, _Series[metrics_pb2.NodeUsage]] = {}
        self._pods: dict[PodKey, _Series[metrics_pb2.PodUsage]] = {}
        self._traffic: dict[PodKey, dict[CounterKey, Samples[int]]] = {}
        self._pruned_at: float | None = None

    # -- writing -------------------------------------------------------------------

    def record(self, report: metrics_pb2.MetricsReport, *, now: float) -> None:
        """Keep what one agent reported at `now` (this replica's monotonic seconds)."""
        node = report.node_name
        if report.HasField("node"):
            if node not in self._nodes:
                log.info("metrics_node_reporting", node=node)
            usage = metrics_pb2.NodeUsage()
            usage.CopyFrom(report.node)
            point = UsagePoint(now, usage.cpu_millis, usage.memory_bytes)
            self._add(self._nodes, node, usage, point)
        for pod in report.pods:
            pod_usage = metrics_pb2.PodUsage()
            pod_usage.CopyFrom(pod)
            point = UsagePoint(
                now, sum(c.cpu_millis for c in pod.containers), sum(c.memory_bytes for c in pod.containers)
            )
            self._add(self._pods, (pod.namespace, pod.name), pod_usage, point)
        for service in report.services:
            counter_key = (node, f"{service.namespace}/{service.name}")
            for backend in service.backends:
                counters = self._traffic.setdefault((service.namespace, backend.pod), {})
                samples_of = counters.setdefault(counter_key, [])
                samples_of.append((now, backend.connections_total))
                _trim(samples_of, now - self.rate_window, self.max_samples, lambda s: s[0])
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self.prune(now=now)

    def _add(self, series: dict[T, _Series[M]], key: T, usage: M, point: UsagePoint) -> None:
        known = series.get(key)
        if known is None:
            series[key] = known = _Series(usage, point.seen)
        known.add(usage, point, self.history_seconds, self.max_samples)

    def prune(self, *, now: float) -> None:
        """Forget nodes, pods and counters not reported for `max_age`."""
        self._pruned_at = now
        cutoff = now - self.max_age
        for name in [n for n, s in self._nodes.items() if s.seen < cutoff]:
            del self._nodes[name]
            log.info("metrics_node_forgotten", node=name, max_age=self.max_age)
        for key in [k for k, s in self._pods.items() if s.seen < cutoff]:
            del self._pods[key]
        for key, counters in list(self._traffic.items()):
            for counter in [c for c, s in counters.items() if _newest(s) < cutoff]:
                del counters[counter]
            if not counters:
                del self._traffic[key]

    # -- reading -------------------------------------------------------------------

    def node_usage(self, name: str, *, now: float) -> metrics_pb2.NodeUsage | None:
        """The node's newest usage, if fresher than `max_age`."""
        return self._fresh(self._nodes.get(name), now)

    def pod_usage(self, namespace: str, name: str, *, now: float) -> metrics_pb2.PodUsage | None:
        """The pod's newest usage, if fresher than `max_age` (check its uid: a pod re-created under
        the same name keeps the name's samples)."""
        return self._fresh(self._pods.get((namespace, name)), now)

    def node_usage_history(self, name: str, *, now: float) -> list[UsagePoint]:
        """The node's samples of the last `history_seconds`, oldest first."""
        return self._recent(self._nodes.get(name), now)

    def pod_usage_history(self, namespace: str, name: str, *, now: float) -> list[UsagePoint]:
        """The pod's samples of the last `history_seconds` (totals over its containers), oldest first."""
        return self._recent(self._pods.get((namespace, name)), now)

    def pod_requests_per_second(self, namespace: str, name: str, *, now: float) -> float | None:
        """New connections per second to this pod over the last `rate_window` seconds, all node
        proxies and Services together; None when no counter has two samples in the window."""
        counters = self._traffic.get((namespace, name))
        if not counters:
            return None
        rates = [
            r for r in (counter_rate(s, now=now, window=self.rate_window) for s in counters.values()) if r is not None
        ]
        return sum(rates) if rates else None

    def node_names(self, *, now: float) -> list[str]:
        """Nodes with a usage fresher than `max_age`."""
        return sorted(n for n, s in self._nodes.items() if s.seen >= now - self.max_age)

    def _fresh(self, series: _Series[M] | None, now: float) -> M | None:
        if series is None or series.seen < now - self.max_age:
            return None
        return series.latest

    def _recent(self, series: _Series[M] | None, now: float) -> list[UsagePoint]:
        if series is None:
            return []
        return [p for p in series.history if now - self.history_seconds <= p.seen <= now]


def _trim(samples: list[T], since: float, most: int, seen: Callable[[T], float]) -> None:
    """Drop the samples seen before ``since`` (oldest first) and the oldest beyond ``most``."""
    old = max(0, len(samples) - most)
    while old < len(samples) and seen(samples[old]) < since:
        old += 1
    if old:
        del samples[:old]


def _newest(samples: Samples[T]) -> float:
    return samples[-1][0] if samples else float("-inf")


def counter_rate(samples: Iterable[tuple[float, int]], *, now: float, window: float) -> float | None:
    """Increase per second of a cumulative counter over its samples in (`now` - `window`, `now`].

    A value below the one before means the counter restarted from zero: the increase is the new value.
    None with fewer than two samples in the window (or none apart in time).
    """
    recent = [(seen, value) for seen, value in samples if now - window <= seen <= now]
    if len(recent) < 2:
        return None
    elapsed = recent[-1][0] - recent[0][0]
    if elapsed <= 0:
        return None
    increase = sum(b - a if b >= a else b for (_, a), (_, b) in pairwise(recent))
    return increase / elapsed
