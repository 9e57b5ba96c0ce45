"""`AgentTelemetry`: the node agent's series, in its own registry.

One instance per agent (not prometheus-client's global registry), so several
agents in one process never share or collide. Probe results are counted on
the event loop as the pod workers record them; everything else is read at
scrape time (`state`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter

from agent.network.proxy.server import ServiceStats
from agent.telemetry.state import StateCollector
from corral.common.telemetry.endpoint import exporter_registry
from protos.corral.v1 import pod_pb2

PROBES = ("liveness", "readiness", "startup")


class AgentTelemetry:
    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = exporter_registry(registry, process=process)
        self.probe_results = Counter(
            "corral_agent_probe_results",
            "Probe runs, by probe kind and result.",
            ["probe", "result"],
            registry=self.registry,
        )
        for probe in PROBES:
            for result in ("success", "failure"):
                self.probe_results.labels(probe, result)  # exported as 0 from the start
        self.state = StateCollector()
        self.registry.register(self.state)

    def probe_result(self, probe: str, success: bool) -> None:
        """One probe ran (`probe` is liveness, readiness or startup)."""
        self.probe_results.labels(probe, "success" if success else "failure").inc()

    def observe(
        self,
        *,
        proxy_stats: Callable[[], Mapping[str, ServiceStats]],
        pods: Callable[[], Iterable[pod_pb2.PodStatus]],
        connected: Callable[[], bool],
    ) -> None:
        """Export the proxy's counters, the pods' phases and the session (call on the event loop)."""
        self.state.attach_loop()
        self.state.sources.proxy_stats = proxy_stats
        self.state.sources.pods = pods
        self.state.sources.connected = connected
