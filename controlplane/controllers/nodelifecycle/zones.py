"""Eviction rates per zone, as Kubernetes' node lifecycle controller sets them. Pure.

Nodes are grouped into zones by their `topology.kubernetes.io/zone` label (a
node without it is in the zone ""). Each zone is in one state, from how many of
its nodes are not Ready (`zone_state`, Kubernetes' ComputeZoneState):

- **FullDisruption**: none of its nodes is Ready;
- **PartialDisruption**: more than 2 are not Ready, and at least
  `unhealthy_zone_threshold` (0.55) of them;
- **Normal** otherwise.

How fast the zone's unhealthy nodes get their NoExecute taints — and so how fast
their pods are evicted — follows the state (`zone_rate`): `node_eviction_rate`
(0.1 nodes/s) when Normal; in a PartialDisruption `secondary_node_eviction_rate`
(0.01/s) if the zone has more than `large_cluster_size_threshold` (50) nodes, and
none at all in a smaller one; in a FullDisruption the normal rate (the zone may be
the one cut off while others are fine). When every node of the cluster is not
Ready, nothing is evicted (`reconcile.full_disruption`).

Each zone has a token bucket of burst 1 at its rate (`ZoneLimits`): one node
lost is tainted at once; a hundred are tainted one every 10 s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from controlplane.controllers.nodelifecycle.ratelimit import TokenBucket
from controlplane.controllers.nodelifecycle.reconcile import Health
from protos.corral.v1 import node_pb2
from protos.wellknown import ZONE

# Kubernetes' kube-controller-manager defaults.
NODE_EVICTION_RATE = 0.1
SECONDARY_NODE_EVICTION_RATE = 0.01
UNHEALTHY_ZONE_THRESHOLD = 0.55
LARGE_CLUSTER_SIZE_THRESHOLD = 50


class ZoneState(Enum):
    NORMAL = "Normal"
    PARTIAL_DISRUPTION = "PartialDisruption"
    FULL_DISRUPTION = "FullDisruption"


@dataclass(frozen=True)
class EvictionRates:
    """`corral server`'s --node-eviction-rate and friends."""

    node_eviction_rate: float = NODE_EVICTION_RATE
    secondary_node_eviction_rate: float = SECONDARY_NODE_EVICTION_RATE
    unhealthy_zone_threshold: float = UNHEALTHY_ZONE_THRESHOLD
    large_cluster_size_threshold: int = LARGE_CLUSTER_SIZE_THRESHOLD

    def __post_init__(self) -> None:
        if self.node_eviction_rate <= 0:
            raise ValueError(f"node eviction rate must be positive, got {self.node_eviction_rate}")
        if self.secondary_node_eviction_rate < 0:
            raise ValueError(f"secondary node eviction rate must be >= 0, got {self.secondary_node_eviction_rate}")
        if not 0 < self.unhealthy_zone_threshold <= 1:
            raise ValueError(f"unhealthy zone threshold must be in (0, 1], got {self.unhealthy_zone_threshold}")
        if self.large_cluster_size_threshold < 0:
            raise ValueError(f"large cluster size threshold must be >= 0, got {self.large_cluster_size_threshold}")


def zone_of(node: node_pb2.Node) -> str:
    return node.metadata.labels.get(ZONE, "")


def zone_state(healths: Iterable[Health], threshold: float = UNHEALTHY_ZONE_THRESHOLD) -> ZoneState:
    counts = Counter(h is Health.READY for h in healths)
    ready, not_ready = counts[True], counts[False]
    if ready == 0 and not_ready > 0:
        return ZoneState.FULL_DISRUPTION
    if not_ready > 2 and not_ready / (ready + not_ready) >= threshold:
        return ZoneState.PARTIAL_DISRUPTION
    return ZoneState.NORMAL


def zone_rate(state: ZoneState, size: int, rates: EvictionRates) -> float:
    """Nodes per second whose NoExecute taints may be set in a zone of `size` nodes in `state`."""
    if state is ZoneState.PARTIAL_DISRUPTION:
        return rates.secondary_node_eviction_rate if size > rates.large_cluster_size_threshold else 0.0
    return rates.node_eviction_rate


def zone_states(
    nodes: Iterable[tuple[node_pb2.Node, Health]], threshold: float = UNHEALTHY_ZONE_THRESHOLD
) -> dict[str, tuple[ZoneState, int]]:
    """Each zone's state and size."""
    by_zone: dict[str, list[Health]] = {}
    for node, health in nodes:
        by_zone.setdefault(zone_of(node), []).append(health)
    return {zone: (zone_state(healths, threshold), len(healths)) for zone, healths in by_zone.items()}


@dataclass(frozen=True)
class ZoneLimits:
    """A token bucket per zone at the rate its state allows (None: no tainting at all)."""

    rates: EvictionRates = field(default_factory=EvictionRates)
    buckets: dict[str, TokenBucket | None] = field(default_factory=dict)

    def with_states(self, states: dict[str, tuple[ZoneState, int]]) -> ZoneLimits:
        """The limits with each zone's rate set from its state; a bucket keeps its tokens."""
        buckets: dict[str, TokenBucket | None] = {}
        for zone, (state, size) in states.items():
            rate = zone_rate(state, size, self.rates)
            known = self.buckets.get(zone)
            if rate <= 0:
                buckets[zone] = None
            elif known is None:
                buckets[zone] = TokenBucket.full(rate)
            else:
                buckets[zone] = replace(known, rate=rate)
        return replace(self, buckets=buckets)

    def take(self, zone: str, now: datetime) -> tuple[bool, float | None, ZoneLimits]:
        """May a node of `zone` get its NoExecute taint now? (taken, seconds to wait if not —
        None while the zone's rate is 0 —, limits afterwards). A zone not seen yet: the normal rate."""
        bucket = self.buckets[zone] if zone in self.buckets else TokenBucket.full(self.rates.node_eviction_rate)
        if bucket is None:
            return False, None, self
        taken, bucket = bucket.take(now)
        limits = replace(self, buckets={**self.buckets, zone: bucket})
        return taken, (None if taken else bucket.wait(now)), limits
