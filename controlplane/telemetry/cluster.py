"""Pure helpers for the cluster-state gauges: plain data in, numbers out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.message import Message

from protos.corral.v1 import node_pb2, pod_pb2

# Always exported (as 0 when no pod is in them), so a dashboard sees every phase.
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def pods_by_phase(pods: Iterable[Message]) -> dict[str, int]:
    """How many pods are in each phase; a pod without a phase yet is Pending."""
    counts = Counter(p.status.phase or "Pending" for p in pods if isinstance(p, pod_pb2.Pod))
    return {phase: counts.get(phase, 0) for phase in PHASES} | dict(counts)


def heartbeat_ages(nodes: Iterable[Message], now: datetime) -> dict[str, float]:
    """Seconds since each node's last heartbeat (its Ready condition's lastHeartbeatTime).

    Nodes that never sent one are left out; an age is never negative (clocks skew).
    """
    ages: dict[str, float] = {}
    for node in nodes:
        if not isinstance(node, node_pb2.Node):
            continue
        ready = next((c for c in node.status.conditions if c.type == "Ready"), None)
        if ready is None or not ready.HasField("last_heartbeat_time"):
            continue
        beat = ready.last_heartbeat_time.ToDatetime(tzinfo=UTC)
        ages[node.metadata.name] = max(0.0, (now - beat).total_seconds())
    return ages
