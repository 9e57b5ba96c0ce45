"""How long a pod may stay on a node with NoExecute taints (Kubernetes' taint manager).

For each NoExecute taint the pod's matching tolerations decide:

- matching tolerations with `tolerationSeconds`: the smallest of them (0 or
  less: evict at once);
- matching tolerations, none with seconds: forever;
- no matching toleration, a node health taint (`unreachable`, `not-ready`):
  the default — 5 s for pods a controller owns (it makes a replacement
  elsewhere), 300 s for bare pods (Kubernetes' DefaultTolerationSeconds);
- no matching toleration, any other taint: evict at once.

The clock for a taint starts when it was added, or when the pod was created
if that is later, and never before `not_before` (the controller's start, so a
restarted control plane gives every pod its full toleration again). A pod's
eviction deadline is the earliest over all the node's NoExecute taints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from controlplane.scheduler.plugins.taints import tolerates
from controlplane.scheduler.snapshot import Taint, Toleration
from protos.corral.v1 import node_pb2, pod_pb2
from protos.times import as_datetime, latest
from protos.wellknown import TAINT_NOT_READY, TAINT_UNREACHABLE

HEALTH_TAINT_KEYS = frozenset({TAINT_UNREACHABLE, TAINT_NOT_READY})
NO_EXECUTE = "NoExecute"
NO_SCHEDULE = "NoSchedule"


@dataclass(frozen=True)
class DefaultTolerations:
    """Seconds a pod without a matching toleration stays on an unhealthy node."""

    owned: float = 5.0
    bare: float = 300.0


@dataclass(frozen=True)
class Deadline:
    """When a pod is to be evicted, and which taint decides it."""

    at: datetime
    taint: str
    seconds: float


def is_controlled(pod: pod_pb2.Pod) -> bool:
    """Whether a controller owns the pod (an ownerReference with controller: true)."""
    return any(ref.controller for ref in pod.metadata.owner_references)


def _matches(toleration: pod_pb2.Toleration, taint: node_pb2.Taint) -> bool:
    return tolerates(
        Toleration(toleration.key, toleration.operator or "Equal", toleration.value, toleration.effect),
        Taint(taint.key, taint.value, taint.effect),
    )


def toleration_seconds(pod: pod_pb2.Pod, taint: node_pb2.Taint, defaults: DefaultTolerations) -> float | None:
    """Seconds `pod` tolerates the NoExecute `taint`; None means forever."""
    matching = [t for t in pod.spec.tolerations if _matches(t, taint)]
    if matching:
        seconds = [t.toleration_seconds for t in matching if t.HasField("toleration_seconds")]
        return float(max(0, min(seconds))) if seconds else None
    if taint.key in HEALTH_TAINT_KEYS:
        return defaults.owned if is_controlled(pod) else defaults.bare
    return 0.0


def eviction_deadline(
    pod: pod_pb2.Pod,
    taints: Iterable[node_pb2.Taint],
    *,
    defaults: DefaultTolerations,
    not_before: datetime,
) -> Deadline | None:
    """When `pod` must leave a node with these taints; None if it may stay forever."""
    best: Deadline | None = None
    created = as_datetime(pod.metadata.creation_timestamp)
    for taint in taints:
        if taint.effect != NO_EXECUTE:
            continue
        seconds = toleration_seconds(pod, taint, defaults)
        if seconds is None:
            continue
        start = latest(as_datetime(taint.time_added), created, not_before) or not_before
        at = start + timedelta(seconds=seconds)
        if best is None or at < best.at:
            best = Deadline(at, taint.key, seconds)
    return best
