"""Series computed when Prometheus scrapes, from what the agent's event loop owns.

The node proxy keeps per-Service counters (`ProxyServer.stats()`); they are
read here and exported as counters and gauges by Service ("namespace/name").
A Service the proxy stops serving stops being exported; if it comes back its
counters start again from 0, which Prometheus' `rate()` takes as a reset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.network.proxy.server import ServiceStats
from corral.common.telemetry.loop import SCRAPE_TIMEOUT, LoopCollector
from protos.corral.v1 import pod_pb2
from protos.pods import PHASES

# Always exported (as 0 when no pod is in them), so a dashboard sees every phase.


@dataclass
class Sources:
    """What the series read; set and read on the event loop only."""

    proxy_stats: Callable[[], Mapping[str, ServiceStats]] | None = None
    pods: Callable[[], Iterable[pod_pb2.PodStatus]] | None = None
    connected: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Snapshot:
    proxy: Mapping[str, ServiceStats] = field(default_factory=dict)
    pods: dict[str, int] | None = None
    connected: bool | None = None


def pods_by_phase(statuses: Iterable[pod_pb2.PodStatus]) -> dict[str, int]:
    """How many pods are in each phase; one without a phase yet is Pending."""
    counts = Counter(s.phase or "Pending" for s in statuses)
    return {phase: counts.get(phase, 0) for phase in PHASES} | dict(counts)


def take_snapshot(sources: Sources) -> Snapshot:
    """Every series' value now (on the event loop)."""
    return Snapshot(
        proxy=sources.proxy_stats() if sources.proxy_stats is not None else {},
        pods=pods_by_phase(sources.pods()) if sources.pods is not None else None,
        connected=sources.connected() if sources.connected is not None else None,
    )


class StateCollector(LoopCollector[Snapshot]):
    def __init__(self, *, timeout: float = SCRAPE_TIMEOUT) -> None:
        self.sources = Sources()
        super().__init__(lambda: take_snapshot(self.sources), families, timeout=timeout)


def families(snapshot: Snapshot | None) -> list[Metric]:
    """The metric families of a snapshot (empty families without one)."""
    labels = ["service"]
    opened = CounterMetricFamily(
        "corral_agent_proxy_connections", "Client connections the node proxy accepted, by Service.", labels=labels
    )
    active = GaugeMetricFamily(
        "corral_agent_proxy_connections_active", "Client connections the node proxy relays now.", labels=labels
    )
    failures = CounterMetricFamily(
        "corral_agent_proxy_connect_failures",
        "Failed connects to a backend (each tried backend counts; the connection may still succeed on another).",
        labels=labels,
    )
    relayed = CounterMetricFamily(
        "corral_agent_proxy_bytes",
        "Bytes relayed: direction=in from clients to backends, out from backends to clients.",
        labels=["service", "direction"],
    )
    pods = GaugeMetricFamily("corral_agent_pods", "Pods assigned to this node, by phase.", labels=["phase"])
    connected = GaugeMetricFamily("corral_agent_connected", "1 while the agent has a session with the control plane.")
    if snapshot is not None:
        for service, stats in sorted(snapshot.proxy.items()):
            opened.add_metric([service], stats.connections_total)
            active.add_metric([service], stats.connections_active)
            failures.add_metric([service], stats.connect_failures)
            relayed.add_metric([service, "in"], stats.bytes_in)
            relayed.add_metric([service, "out"], stats.bytes_out)
        for phase, count in sorted((snapshot.pods or {}).items()):
            pods.add_metric([phase], count)
        if snapshot.connected is not None:
            connected.add_metric([], 1.0 if snapshot.connected else 0.0)
    return [opened, active, failures, relayed, pods, connected]
