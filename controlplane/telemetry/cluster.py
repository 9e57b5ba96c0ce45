"""Pure helpers for the cluster-state gauges: plain data in, numbers out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from google.protobuf.message import Message

from protos.corral.v1 import node_pb2, pod_pb2
from protos.nodes import last_heartbeat
from protos.pods import PHASES


def pods_by_phase(pods: Iterable[Message]) -> dict[str, int]:
    """How many pods are in each phase; a pod without a phase yet is Pending."""
    counts = Counter(p.status.phase or "Pending" for p in pods if isinstance(p, pod_pb2.Pod))
    # Every phase is exported (as 0 when no pod is in it), so a dashboard sees them all.
    return {phase: counts.get(phase, 0) for phase in PHASES} | dict(counts)


def heartbeat_ages(nodes: Iterable[Message], now: datetime) -> dict[str, float]:
    """Seconds since each node's last heartbeat (its Ready condition's lastHeartbeatTime).

    Nodes that never sent one are left out; an age is never negative (clocks skew).
    """
    ages: dict[str, float] = {}
    for node in nodes:
        if not isinstance(node, node_pb2.Node):
            continue
        beat = last_heartbeat(node)
        if beat is None:
            continue
        ages[node.metadata.name] = max(0.0, (now - beat).total_seconds())
    return ages
