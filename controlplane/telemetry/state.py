"""Gauges computed when Prometheus scrapes, from what the event loop owns.

Every replica exports `corral_leader`. Only the leader exports the cluster-wide gauges (`corral_pods`,
`corral_node_heartbeat_age_seconds`, `corral_workqueue_depth`): they come from
its controllers' informers and queues, so summing a series over all replicas
never counts a pod twice, and a follower shows none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric

from controlplane.clock import utcnow
from controlplane.informer import Informer
from controlplane.telemetry.cluster import heartbeat_ages, pods_by_phase
from corral.common.telemetry.loop import SCRAPE_TIMEOUT, LoopCollector


@dataclass
class Sources:
    """What the gauges read; set and read on the event loop only."""

    leading: Callable[[], bool] | None = None
    informers: Mapping[str, Informer] = field(default_factory=dict)
    queues: Mapping[str, Sized] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    leader: bool | None
    pods: dict[str, int] | None
    heartbeat_ages: dict[str, float] | None
    queue_depths: dict[str, int]


def take_snapshot(sources: Sources, now: datetime) -> Snapshot:
    """Every gauge's value now (on the event loop)."""
    pods, nodes, leases = (sources.informers.get(kind) for kind in ("Pod", "Node", "Lease"))
    return Snapshot(
        leader=sources.leading() if sources.leading is not None else None,
        pods=pods_by_phase(pods.items.values()) if pods is not None and pods.synced.is_set() else None,
        heartbeat_ages=heartbeat_ages(nodes.items.values(), now, leases.items if leases is not None else None)
        if nodes is not None and nodes.synced.is_set()
        else None,
        queue_depths={name: len(queue) for name, queue in sources.queues.items()},
    )


class StateCollector(LoopCollector[Snapshot]):
    def __init__(self, *, now: Callable[[], datetime] = utcnow, timeout: float = SCRAPE_TIMEOUT) -> None:
        self.sources = Sources()
        super().__init__(lambda: take_snapshot(self.sources, now()), _families, timeout=timeout)


def _families(snapshot: Snapshot | None) -> list[Metric]:
    leader = GaugeMetricFamily("corral_leader", "1 while this replica leads (runs the scheduler and controllers).")
    pods = GaugeMetricFamily("corral_pods", "Pods by phase (exported by the leader).", labels=["phase"])
    ages = GaugeMetricFamily(
        "corral_node_heartbeat_age_seconds",
        "Seconds since each node's last heartbeat (exported by the leader).",
        labels=["node"],
    )
    depth = GaugeMetricFamily(
        "corral_workqueue_depth",
        "Keys waiting for a controller's worker, not counting those waiting out a back-off (leader).",
        labels=["controller"],
    )
    if snapshot is not None:
        if snapshot.leader is not None:
            leader.add_metric([], 1.0 if snapshot.leader else 0.0)
        for phase, count in sorted((snapshot.pods or {}).items()):
            pods.add_metric([phase], count)
        for node, age in sorted((snapshot.heartbeat_ages or {}).items()):
            ages.add_metric([node], age)
        for controller, queued in sorted(snapshot.queue_depths.items()):
            depth.add_metric([controller], queued)
    return [leader, pods, ages, depth]
