"""The order in which a ReplicaSet gives up pods when it scales down. Pure.

Pods that are not available go first (so a scale-down that the Deployment
controller sized by availability never costs more available pods than it
counted), then Kubernetes' `ActivePodsWithRanks` order: unassigned before
assigned, Pending before Unknown before Running, not ready before ready, more
pods of the set on the same node first, ready for a shorter time first, more
restarts first, newer first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from protos import pods as podutil
from protos.corral.v1 import pod_pb2
from protos.times import as_datetime

_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def max_restarts(pod: pod_pb2.Pod) -> int:
    return max((c.restart_count for c in pod.status.container_statuses), default=0)


def _newest_first(when: datetime | None) -> float:
    """A sort key that puts later times first, and unknown times before all."""
    return float("-inf") if when is None else -when.timestamp()


def victim_order(pods: Sequence[pod_pb2.Pod], *, min_ready_seconds: int, now: datetime) -> list[pod_pb2.Pod]:
    """The pods sorted so that the first ones are the first to delete."""
    per_node = Counter(p.spec.node_name for p in pods)

    def key(pod: pod_pb2.Pod) -> tuple[bool, bool, int, bool, int, float, int, float]:
        ready = podutil.is_ready(pod)
        return (
            podutil.is_available(pod, min_ready_seconds, now),
            bool(pod.spec.node_name),
            _PHASE_ORDER.get(pod.status.phase, 0),
            ready,
            -per_node[pod.spec.node_name] if pod.spec.node_name else 0,
            _newest_first(podutil.ready_since(pod)) if ready else 0.0,
            -max_restarts(pod),
            _newest_first(as_datetime(pod.metadata.creation_timestamp)),
        )

    return sorted(pods, key=key)
