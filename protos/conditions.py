"""Setting a status condition the Kubernetes way, for every writer of conditions."""

from __future__ import annotations

from collections.abc import MutableSequence
from datetime import datetime

from protos.corral.v1 import meta_pb2


def set_condition(
    conditions: MutableSequence[meta_pb2.Condition],
    type_: str,
    status: str,
    *,
    reason: str,
    message: str,
    now: datetime,
) -> meta_pb2.Condition:
    """Set the condition of `type_` in place (adding it when missing); its
    lastTransitionTime moves only when the status changes. Returns it, so the
    caller can stamp other times (lastHeartbeatTime, …)."""
    for condition in conditions:
        if condition.type == type_:
            break
    else:
        condition = meta_pb2.Condition(type=type_)
        conditions.append(condition)
        condition = conditions[-1]
    if condition.status != status:
        condition.last_transition_time.FromDatetime(now)
    condition.status, condition.reason, condition.message = status, reason, message
    return condition
