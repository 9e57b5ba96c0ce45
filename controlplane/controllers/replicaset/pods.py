"""Pod facts the workload controllers share. Pure code: no I/O.

- activity: a pod counts towards its ReplicaSet while it is neither terminal
  (Succeeded, Failed) nor being deleted (deletionTimestamp set);
- readiness and availability: Ready means the Ready condition is True;
  available means Ready for at least minReadySeconds, judged from the
  condition's lastTransitionTime and `now`;
- ownership: the controller ownerReference;
- victims: the order in which a ReplicaSet gives up pods when it scales down.
  Pods that are not available go first (so a scale-down that the Deployment
  controller sized by availability never costs more available pods than it
  counted), then Kubernetes' `ActivePodsWithRanks` order: unassigned before
  assigned, Pending before Unknown before Running, not ready before ready,
  more pods of the set on the same node first, ready for a shorter time
  first, more restarts first, newer first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from protos.corral.v1 import meta_pb2, pod_pb2
from protos.kinds import info_of, meta

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
READY = "Ready"
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def as_datetime(ts: timestamp_pb2.Timestamp) -> datetime | None:
    """The time a Timestamp holds, or None for the zero (unset) Timestamp."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def is_terminal(pod: pod_pb2.Pod) -> bool:
    return pod.status.phase in TERMINAL_PHASES


def is_terminating(obj: Message) -> bool:
    return meta(obj).HasField("deletion_timestamp")


def is_active(pod: pod_pb2.Pod) -> bool:
    """Counts towards its ReplicaSet: not terminal and not being deleted."""
    return not is_terminal(pod) and not is_terminating(pod)


def ready_condition(pod: pod_pb2.Pod) -> meta_pb2.Condition | None:
    for condition in pod.status.conditions:
        if condition.type == READY:
            return condition
    return None


def is_ready(pod: pod_pb2.Pod) -> bool:
    condition = ready_condition(pod)
    return condition is not None and condition.status == "True"


def ready_since(pod: pod_pb2.Pod) -> datetime | None:
    """When a ready pod became ready (None if not ready or unknown)."""
    condition = ready_condition(pod)
    if condition is None or condition.status != "True":
        return None
    return as_datetime(condition.last_transition_time)


def available_at(pod: pod_pb2.Pod, min_ready_seconds: int) -> datetime | None:
    """When a ready pod is (or was) available; None if it is not ready.

    With minReadySeconds 0 a ready pod is available at once (the minimum
    datetime); otherwise a Ready condition without a transition time never is.
    """
    if not is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return datetime.min.replace(tzinfo=UTC)
    since = ready_since(pod)
    if since is None:
        return datetime.max.replace(tzinfo=UTC)
    return since + timedelta(seconds=min_ready_seconds)


def is_available(pod: pod_pb2.Pod, min_ready_seconds: int, now: datetime) -> bool:
    at = available_at(pod, min_ready_seconds)
    return at is not None and at <= now


def next_available(pods: Iterable[pod_pb2.Pod], min_ready_seconds: int, now: datetime) -> float | None:
    """Seconds until the next ready-but-not-yet-available pod becomes available."""
    if min_ready_seconds <= 0:
        return None
    waits = [(at - now).total_seconds() for p in pods
             if (at := available_at(p, min_ready_seconds)) is not None
             and now < at < datetime.max.replace(tzinfo=UTC)]
    return min(waits) if waits else None


def controller_ref(obj: Message) -> meta_pb2.OwnerReference | None:
    for ref in meta(obj).owner_references:
        if ref.controller:
            return ref
    return None


def is_controlled_by(obj: Message, owner_uid: str) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.uid == owner_uid


def owner_reference(owner: Message) -> meta_pb2.OwnerReference:
    """A controller ownerReference to `owner` (blocking its foreground deletion)."""
    info, m = info_of(owner), meta(owner)
    return meta_pb2.OwnerReference(api_version=info.api_version, kind=info.kind, name=m.name,
                                   uid=m.uid, controller=True, block_owner_deletion=True)


def max_restarts(pod: pod_pb2.Pod) -> int:
    return max((c.restart_count for c in pod.status.container_statuses), default=0)


def _newest_first(when: datetime | None) -> float:
    """A sort key that puts later times first, and unknown times before all."""
    return float("-inf") if when is None else -when.timestamp()


def victim_order(pods: Sequence[pod_pb2.Pod], *, min_ready_seconds: int, now: datetime) -> list[pod_pb2.Pod]:
    """The pods sorted so that the first ones are the first to delete."""
    per_node = Counter(p.spec.node_name for p in pods)

    def key(pod: pod_pb2.Pod) -> tuple[bool, bool, int, bool, int, float, int, float]:
        ready = is_ready(pod)
        return (
            is_available(pod, min_ready_seconds, now),
            bool(pod.spec.node_name),
            _PHASE_ORDER.get(pod.status.phase, 0),
            ready,
            -per_node[pod.spec.node_name] if pod.spec.node_name else 0,
            _newest_first(ready_since(pod)) if ready else 0.0,
            -max_restarts(pod),
            _newest_first(as_datetime(pod.metadata.creation_timestamp)),
        )

    return sorted(pods, key=key)
