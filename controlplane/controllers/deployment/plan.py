"""The working state of one Deployment sync. Pure.

`new_plan` claims the Deployment's ReplicaSets (its own by controller
ownerReference, plus orphans its selector matches, which it adopts) and
groups their pods. The rollout steps then change working copies of the
ReplicaSets and of the Deployment (annotations, status) in order, as
Kubernetes' controller does with API calls; `reconcile` turns the differences
into actions at the end.

Two counts keep the rollout bounds safe against caches and controllers that
lag:

- `SetState.size` = max(spec.replicas, its pods that still run):
  the most pods the set may have right now (a scale-down not yet carried out
  still counts), used against replicas + maxSurge;
- `SetState.safe_available` = min(available pods, spec.replicas): the
  available pods that will survive the set's pending scale-down (a
  ReplicaSet deletes unavailable pods first), used against
  replicas - maxUnavailable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.apiserver import labels
from controlplane.controllers.deployment import strategy
from controlplane.controllers.deployment.revisions import set_replicas_annotations
from protos import owners, times
from protos import pods as podutil
from protos.corral.v1 import pod_pb2, workloads_pb2


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str
    # The ReplicaSet whose write the event reports ("" if none): the shell
    # records it only once that write succeeded.
    replica_set: str = ""


@dataclass
class SetState:
    """One ReplicaSet of the Deployment: a working copy and its pods."""

    rs: workloads_pb2.ReplicaSet
    # As read; None for a ReplicaSet this sync creates.
    original: workloads_pb2.ReplicaSet | None
    # Its pods that may still run: not terminal (being deleted included).
    pods: list[podutil.PodFacts]
    active: int = 0
    ready: int = 0
    available: int = 0

    @property
    def name(self) -> str:
        return self.rs.metadata.name

    @property
    def replicas(self) -> int:
        return self.rs.spec.replicas

    @property
    def size(self) -> int:
        return max(self.rs.spec.replicas, len(self.pods))

    @property
    def safe_available(self) -> int:
        return min(self.available, self.rs.spec.replicas)


@dataclass
class Plan:
    deployment: workloads_pb2.Deployment
    original: workloads_pb2.Deployment
    now: datetime
    sets: list[SetState]
    # Every ReplicaSet of the namespace by name, for name-collision checks.
    names: dict[str, workloads_pb2.ReplicaSet]
    new: SetState | None = None
    events: list[Event] = field(default_factory=list)
    deleted: list[workloads_pb2.ReplicaSet] = field(default_factory=list)
    rollback: pod_pb2.PodTemplateSpec | None = None
    collision: bool = False
    requeue: list[float] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        return self.deployment.spec.replicas

    @property
    def old(self) -> list[SetState]:
        return [s for s in self.sets if s is not self.new]

    def event(self, reason: str, message: str, type_: str = "Normal", *, replica_set: str = "") -> None:
        self.events.append(Event(type_, reason, message, replica_set))


def creation_key(rs: workloads_pb2.ReplicaSet) -> tuple[float, str]:
    created = times.as_datetime(rs.metadata.creation_timestamp)
    return (created.timestamp() if created else float("inf"), rs.metadata.name)


def new_plan(
    d: workloads_pb2.Deployment,
    replica_sets: Iterable[workloads_pb2.ReplicaSet],
    pods: Iterable[podutil.PodFacts],
    *,
    now: datetime,
) -> Plan:
    """The plan of a sync; `pods` may be any superset of the Deployment's ReplicaSets' pods."""
    deployment = workloads_pb2.Deployment()
    deployment.CopyFrom(d)
    namespace = d.metadata.namespace
    in_namespace = [rs for rs in replica_sets if rs.metadata.namespace == namespace]
    owned = claim_replica_sets(d, in_namespace)
    by_owner: dict[str, list[podutil.PodFacts]] = defaultdict(list)
    for pod in pods:
        if pod.owner and pod.namespace == namespace and not pod.terminal:
            by_owner[pod.owner].append(pod)
    sets = [set_state(copy, original, by_owner[original.metadata.uid], d, now) for copy, original in owned]
    sets.sort(key=lambda s: creation_key(s.rs))
    return Plan(
        deployment=deployment, original=d, now=now, sets=sets, names={rs.metadata.name: rs for rs in in_namespace}
    )


def claim_replica_sets(
    d: workloads_pb2.Deployment,
    replica_sets: Iterable[workloads_pb2.ReplicaSet],
) -> list[tuple[workloads_pb2.ReplicaSet, workloads_pb2.ReplicaSet]]:
    """(working copy, original) of the Deployment's ReplicaSets; adopted orphans
    get the Deployment's controller ownerReference in their copy."""
    selector = labels.from_label_selector(d.spec.selector)
    may_adopt = not selector.empty and not podutil.is_terminating(d)
    owned = []
    for rs in replica_sets:
        ref = owners.controller_ref(rs)
        mine = ref is not None and ref.uid == d.metadata.uid
        orphan = ref is None and may_adopt and not podutil.is_terminating(rs) and selector.matches(rs.metadata.labels)
        if mine or orphan:
            copy = workloads_pb2.ReplicaSet()
            copy.CopyFrom(rs)
            if orphan:
                copy.metadata.owner_references.append(owners.owner_reference(d))
            owned.append((copy, rs))
    return owned


def set_state(
    rs: workloads_pb2.ReplicaSet,
    original: workloads_pb2.ReplicaSet | None,
    pods: list[podutil.PodFacts],
    d: workloads_pb2.Deployment,
    now: datetime,
) -> SetState:
    active = [p for p in pods if p.active]
    min_ready = d.spec.min_ready_seconds
    return SetState(
        rs=rs,
        original=original,
        pods=pods,
        active=len(active),
        ready=sum(p.ready for p in active),
        available=sum(p.is_available(min_ready, now) for p in active),
    )


def scale(plan: Plan, state: SetState, size: int, *, annotate: bool = False) -> bool:
    """Kubernetes' scaleReplicaSet: set the size and (with it, or always with
    `annotate`) the replicas annotations; returns whether the size changed and
    records the ScalingReplicaSet event if so."""
    old = state.rs.spec.replicas
    if old == size and not annotate:
        return False
    d = plan.deployment
    set_replicas_annotations(state.rs, d.spec.replicas, d.spec.replicas + strategy.max_surge(d))
    if old == size:
        return False
    state.rs.spec.replicas = size
    direction = "up" if size > old else "down"
    plan.event(
        "ScalingReplicaSet", f"Scaled {direction} replica set {state.name} from {old} to {size}", replica_set=state.name
    )
    return True
