"""Node facts every room shares. Pure code: no I/O.

A node is Ready when its Ready condition is True; the agent's heartbeat is the
condition's lastHeartbeatTime.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from protos.corral.v1 import meta_pb2, node_pb2

NODE_READY: Final = "Ready"


def ready_condition(node: node_pb2.Node) -> meta_pb2.Condition | None:
    return next((c for c in node.status.conditions if c.type == NODE_READY), None)


def is_ready(node: node_pb2.Node | None) -> bool:
    """The node's Ready condition is True (no node: not ready)."""
    if node is None:
        return False
    condition = ready_condition(node)
    return condition is not None and condition.status == "True"


def last_heartbeat(node: node_pb2.Node) -> datetime | None:
    """When the node last reported: its Ready condition's lastHeartbeatTime (None: never)."""
    condition = ready_condition(node)
    if condition is None or not condition.HasField("last_heartbeat_time"):
        return None
    return condition.last_heartbeat_time.ToDatetime(tzinfo=UTC)
