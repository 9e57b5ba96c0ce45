"""`ControlPlaneTelemetry`: the control plane's series, in its own registry.

One instance per control plane (not prometheus-client's global registry), so
several control planes in one process — as in the integration tests — never
share or collide. Counters and histograms are updated on the event loop by
the gRPC interceptor, the controller runner and the scheduler (through the
`hooks` protocols); gauges are computed at scrape time (`state`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.clock import utcnow
from controlplane.informer import Informer
from controlplane.telemetry.hooks import SchedulingResult
from controlplane.telemetry.state import StateCollector
from corral.common.telemetry.endpoint import exporter_registry

# Seconds: a gRPC call or a controller sync (most take milliseconds; etcd under load, seconds).
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds from a pod's creation to its binding (creationTimestamp is in whole seconds).
SCHEDULING_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class ControlPlaneTelemetry:
    def __init__(
        self, registry: CollectorRegistry | None = None, *, process: bool = True, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.registry = exporter_registry(registry, process=process)
        self.api_requests = Counter(
            "corral_api_requests",
            "gRPC calls served, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.api_duration = Histogram(
            "corral_api_request_duration_seconds",
            "Time to answer a gRPC call with a single response (streams are counted, not timed).",
            ["method"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.api_streams = Gauge(
            "corral_api_streams_active",
            "Streaming gRPC calls open now (watches; agents' assignment, service and tunnel streams).",
            ["method"],
            registry=self.registry,
        )
        self.scheduling = Counter(
            "corral_scheduling_attempts",
            "Pods the scheduler tried to place, by result.",
            ["result"],
            registry=self.registry,
        )
        self.scheduling_latency = Histogram(
            "corral_scheduling_latency_seconds",
            "Seconds from a pod's creation to its binding to a node (creationTimestamp is whole seconds).",
            buckets=SCHEDULING_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "corral_reconcile_duration_seconds",
            "Time one controller sync of one key took.",
            ["controller"],
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "corral_reconcile_errors",
            "Controller syncs that failed (the key is retried with back-off).",
            ["controller"],
            registry=self.registry,
        )
        for result in ("scheduled", "unschedulable", "error"):
            self.scheduling.labels(result)  # exported as 0 from the start
        self.state = StateCollector(now=now)
        self.registry.register(self.state)

    # -- the replica ------------------------------------------------------------------

    def observe_replica(self, *, leading: Callable[[], bool]) -> None:
        """Export whether this replica leads (call on the event loop)."""
        self.state.attach_loop()
        self.state.sources.leading = leading

    # -- the API (interceptor) --------------------------------------------------------

    def stream_opened(self, method: str) -> None:
        self.api_streams.labels(method).inc()

    def stream_closed(self, method: str) -> None:
        self.api_streams.labels(method).dec()

    def api_request(self, method: str, code: str, seconds: float | None) -> None:
        """One finished call; `seconds` is None for a streamed response, which is not timed."""
        self.api_requests.labels(method, code).inc()
        if seconds is not None:
            self.api_duration.labels(method).observe(seconds)

    # -- ControllerObserver -------------------------------------------------------------

    def controllers_started(self, informers: Mapping[str, Informer], queues: Mapping[str, Sized]) -> None:
        self.state.attach_loop()
        self.state.sources.informers = dict(informers)
        self.state.sources.queues = dict(queues)
        for name in queues:
            self.reconcile_errors.labels(name)  # exported as 0 from the start

    def controllers_stopped(self) -> None:
        self.state.sources.informers = {}
        self.state.sources.queues = {}

    def synced(self, controller: str, seconds: float, *, failed: bool) -> None:
        self.reconcile_duration.labels(controller).observe(seconds)
        if failed:
            self.reconcile_errors.labels(controller).inc()

    # -- SchedulingObserver -------------------------------------------------------------

    def scheduling_attempts(self, result: SchedulingResult, count: int = 1) -> None:
        if count:
            self.scheduling.labels(result).inc(count)

    def pod_bound(self, created: datetime, bound: datetime) -> None:
        self.scheduling_latency.observe(max(0.0, (bound - created).total_seconds()))
