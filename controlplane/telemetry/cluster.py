"""Pure helpers for the cluster-state gauges: plain data in, numbers out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime

from google.protobuf.message import Message

from protos.corral.v1 import node_pb2, pod_pb2
from protos.leases import node_lease_key, renew_time
from protos.nodes import last_heartbeat
from protos.pods import PHASES
from protos.times import latest


def pods_by_phase(pods: Iterable[Message]) -> dict[str, int]:
    """How many pods are in each phase; a pod without a phase yet is Pending."""
    counts = Counter(p.status.phase or "Pending" for p in pods if isinstance(p, pod_pb2.Pod))
    # Every phase is exported (as 0 when no pod is in it), so a dashboard sees them all.
    return {phase: counts.get(phase, 0) for phase in PHASES} | dict(counts)


def heartbeat_ages(
    nodes: Iterable[Message], now: datetime, leases: Mapping[str, Message] | None = None
) -> dict[str, float]:
    """Seconds since each node's last heartbeat: its Lease's renewTime (`leases`, by informer key)
    or its Ready condition's lastHeartbeatTime, whichever is later.

    Nodes that never sent one are left out; an age is never negative (clocks skew).
    """
    ages: dict[str, float] = {}
    for node in nodes:
        if not isinstance(node, node_pb2.Node):
            continue
        renewed = renew_time(leases.get(node_lease_key(node.metadata.name))) if leases is not None else None
        beat = latest(last_heartbeat(node), renewed)
        if beat is None:
            continue
        ages[node.metadata.name] = max(0.0, (now - beat).total_seconds())
    return ages
