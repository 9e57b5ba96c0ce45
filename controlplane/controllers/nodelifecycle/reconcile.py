"""Node lifecycle, pure: what a node's heartbeat age means, and what to do about it.

`plan_node(node, pods, now=…, settings=…, disrupted=…, renewed=…)` compares the
node as stored with what its heartbeats say and returns a `NodePlan`. A node is
last heard from at the latest of its Lease's renewTime (`renewed`: what the
control plane stamps on each heartbeat, `protos.leases`) and its Ready
condition's lastHeartbeatTime (all a control plane of the previous version
stamps, and what a heartbeat still refreshes every few minutes):

- a node not heard from for longer than the grace period gets its Ready
  condition set to Unknown ("corral agent stopped posting node status.") and
  the taints `node.kubernetes.io/unreachable:NoSchedule` and `:NoExecute`
  (a node whose agent reports Ready False gets `node.kubernetes.io/not-ready`
  ones); a healthy node loses them again — the agent's next heartbeat is what
  sets Ready back to True;
- the pods of an unhealthy node are marked not ready (Ready and
  ContainersReady False, reason NodeNotReady) so load balancers drop them;
- pods whose toleration of the node's NoExecute taints has run out are due
  for eviction (see `tolerations`): an immediate delete, not a graceful one —
  the node cannot stop them now, and stops what is no longer assigned to it
  when it comes back;
- pods already being deleted gracefully on such a node are deleted at once
  (`force_deletions`): their node cannot confirm that they stopped;
- `recheck_at` says when the node's state changes by time alone (its grace
  period ending, the next pod's toleration ending), for the shell to requeue.

Full disruption: when no node at all is Ready (`full_disruption`), the control
plane assumes it is the one cut off. It still marks statuses, but withholds
the NoExecute taints and evicts nothing; when a node is Ready again the taints
come back with a fresh `timeAdded`, so every pod gets its full toleration
(what Kubernetes does when it leaves its full-disruption mode).

Time is only ever judged from `settings.not_before` on (the controller's
start): a restarted control plane gives every node a full grace period, as
Kubernetes' locally observed probe timestamps do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from controlplane.controllers.nodelifecycle.tolerations import (
    NO_EXECUTE,
    NO_SCHEDULE,
    DefaultTolerations,
    eviction_deadline,
)
from protos import nodes as nodeutil
from protos import pods as podutil
from protos.corral.v1 import node_pb2, pod_pb2
from protos.times import as_datetime, earliest, latest, stamp
from protos.wellknown import TAINT_NOT_READY, TAINT_UNREACHABLE

STATUS_UNKNOWN_REASON = "NodeStatusUnknown"
STATUS_UNKNOWN_MESSAGE = "corral agent stopped posting node status."
NEVER_UPDATED_REASON = "NodeStatusNeverUpdated"
NEVER_UPDATED_MESSAGE = "corral agent never posted node status."
POD_NOT_READY_REASON = "NodeNotReady"
MANAGED_TAINTS = frozenset(
    (key, effect) for key in (TAINT_UNREACHABLE, TAINT_NOT_READY) for effect in (NO_SCHEDULE, NO_EXECUTE)
)


class Health(Enum):
    READY = "Ready"
    # The agent heartbeats but reports Ready False.
    NOT_READY = "NotReady"
    # No heartbeat within the grace period, or Ready already Unknown.
    UNREACHABLE = "Unreachable"
    # Never reported Ready and still within its grace period.
    NEW = "New"


@dataclass(frozen=True)
class Settings:
    grace: timedelta
    not_before: datetime
    tolerations: DefaultTolerations = field(default_factory=DefaultTolerations)


@dataclass(frozen=True)
class Eviction:
    pod: pod_pb2.Pod
    taint: str
    seconds: float

    def message(self, node: str) -> str:
        m = self.pod.metadata
        how = "does not tolerate it" if self.seconds == 0 else f"its toleration of {self.seconds:g}s ran out"
        return f"Deleting pod {m.namespace}/{m.name}: node {node} has taint {self.taint}:NoExecute and {how}"


@dataclass(frozen=True)
class NodePlan:
    health: Health
    # The node to write (status and/or taints changed), or None.
    node: node_pb2.Node | None
    # True when this plan turns the Ready condition to Unknown.
    marked_unknown: bool
    # Pods with Ready/ContainersReady turned False, to write.
    pods_not_ready: tuple[pod_pb2.Pod, ...]
    # Pods due for eviction now, earliest deadline first.
    evictions: tuple[Eviction, ...]
    # Pods being deleted gracefully whose node cannot finish it: delete them now.
    force_deletions: tuple[pod_pb2.Pod, ...]
    # When this node's state next changes by time alone; None if never.
    recheck_at: datetime | None


# -- health --------------------------------------------------------------------


def last_seen(node: node_pb2.Node, not_before: datetime, renewed: datetime | None = None) -> datetime:
    """The last heartbeat — the later of the Lease's renewal and the Ready condition's stamp — or,
    never heard from, the creation time; not before `not_before`."""
    cond = nodeutil.ready_condition(node)
    heartbeat = latest(as_datetime(cond.last_heartbeat_time) if cond is not None else None, renewed)
    if heartbeat is None:
        heartbeat = as_datetime(node.metadata.creation_timestamp)
    return latest(heartbeat, not_before) or not_before


def grace_deadline(
    node: node_pb2.Node,
    settings: Settings,
    renewed: datetime | None = None,
    lease_duration: timedelta | None = None,
) -> datetime:
    """When the node counts as unreachable unless it heartbeats before: the grace period after it
    was last heard from, or its Lease's duration when longer (a large cluster's stretched
    heartbeat period comes with a longer Lease: the holder is live until renewTime + duration)."""
    grace = settings.grace if lease_duration is None else max(settings.grace, lease_duration)
    return last_seen(node, settings.not_before, renewed) + grace


def node_health(
    node: node_pb2.Node,
    *,
    now: datetime,
    settings: Settings,
    renewed: datetime | None = None,
    lease_duration: timedelta | None = None,
) -> Health:
    if now > grace_deadline(node, settings, renewed, lease_duration):
        return Health.UNREACHABLE
    cond = nodeutil.ready_condition(node)
    if cond is None:
        return Health.NEW
    if cond.status == "True":
        return Health.READY
    if cond.status == "False":
        return Health.NOT_READY
    return Health.UNREACHABLE


def pods_matter(node: node_pb2.Node) -> bool:
    """Whether a change to one of the node's pods can change the node's plan: not while the node
    says it is Ready and carries no NoExecute taint (the plan then marks, evicts and deletes
    nothing; a missed heartbeat deadline is rechecked by the node's own timer)."""
    cond = nodeutil.ready_condition(node)
    return cond is None or cond.status != "True" or any(t.effect == NO_EXECUTE for t in node.spec.taints)


def adds_no_execute(node: node_pb2.Node, plan: NodePlan) -> bool:
    """Whether the plan gives the node a health NoExecute taint it carries none of (what the
    zone's eviction rate limits; swapping unreachable for not-ready is free, as in Kubernetes)."""
    if plan.node is None:
        return False

    def health_no_execute(n: node_pb2.Node) -> bool:
        return any((t.key, t.effect) in MANAGED_TAINTS and t.effect == NO_EXECUTE for t in n.spec.taints)

    return health_no_execute(plan.node) and not health_no_execute(node)


def full_disruption(healths: Iterable[Health]) -> bool:
    """Whether there is at least one node and none is Ready."""
    seen = list(healths)
    return bool(seen) and Health.READY not in seen


# -- node status and taints ---------------------------------------------------


def mark_unknown(node: node_pb2.Node, now: datetime) -> bool:
    """Set the Ready condition to Unknown in place; False if it already is."""
    cond = nodeutil.ready_condition(node)
    if cond is None:
        cond = node.status.conditions.add(type=nodeutil.NODE_READY)
        reason, message = NEVER_UPDATED_REASON, NEVER_UPDATED_MESSAGE
    else:
        reason, message = STATUS_UNKNOWN_REASON, STATUS_UNKNOWN_MESSAGE
    if cond.status == "Unknown":
        return False
    cond.status, cond.reason, cond.message = "Unknown", reason, message
    stamp(cond.last_transition_time, now)
    return True


def desired_taints(health: Health, *, disrupted: bool) -> frozenset[tuple[str, str]]:
    """The health taints the node should carry (other taints are not ours)."""
    key = {Health.UNREACHABLE: TAINT_UNREACHABLE, Health.NOT_READY: TAINT_NOT_READY}.get(health)
    if key is None:
        return frozenset()
    if disrupted:
        return frozenset({(key, NO_SCHEDULE)})
    return frozenset({(key, NO_SCHEDULE), (key, NO_EXECUTE)})


def sync_taints(node: node_pb2.Node, desired: frozenset[tuple[str, str]], now: datetime) -> bool:
    """Make the node's health taints `desired` in place, keeping the others; True if changed."""
    taints = node.spec.taints
    present = {(t.key, t.effect) for t in taints}
    stale = [t for t in taints if (t.key, t.effect) in MANAGED_TAINTS - desired]
    for taint in stale:
        taints.remove(taint)
    missing = sorted(desired - present)
    for key, effect in missing:
        stamp(taints.add(key=key, effect=effect).time_added, now)
    return bool(stale or missing)


def stamp_no_execute(node: node_pb2.Node, now: datetime) -> bool:
    """Give NoExecute taints without a timeAdded one (their toleration clocks start now)."""
    unstamped = [t for t in node.spec.taints if t.effect == NO_EXECUTE and as_datetime(t.time_added) is None]
    for taint in unstamped:
        stamp(taint.time_added, now)
    return bool(unstamped)


# -- pods ------------------------------------------------------------------------


def stranded(pods: Iterable[pod_pb2.Pod], health: Health, node: str, *, disrupted: bool) -> list[pod_pb2.Pod]:
    """Terminating pods of a node that will not confirm their end (it carries
    NoExecute health taints); none while the whole cluster looks disrupted."""
    if disrupted or health not in (Health.UNREACHABLE, Health.NOT_READY):
        return []
    return [p for p in pods if p.spec.node_name == node and podutil.is_terminating(p)]


def mark_pod_not_ready(pod: pod_pb2.Pod, message: str, now: datetime) -> bool:
    """Turn Ready and ContainersReady False in place; False if both already are."""
    changed = False
    for kind in (podutil.POD_READY, podutil.CONTAINERS_READY):
        cond = next((c for c in pod.status.conditions if c.type == kind), None)
        if cond is None:
            cond = pod.status.conditions.add(type=kind)
        if cond.status == "False":
            continue
        cond.status, cond.reason, cond.message = "False", POD_NOT_READY_REASON, message
        stamp(cond.last_transition_time, now)
        changed = True
    return changed


def pods_not_ready(pods: Iterable[pod_pb2.Pod], health: Health, node: str, now: datetime) -> list[pod_pb2.Pod]:
    """Copies of the pods that still look ready on an unhealthy node, marked not ready."""
    if health not in (Health.UNREACHABLE, Health.NOT_READY):
        return []
    message = f"node {node} is {'unreachable' if health is Health.UNREACHABLE else 'not ready'}"
    marked = []
    for pod in pods:
        copy = pod_pb2.Pod()
        copy.CopyFrom(pod)
        if mark_pod_not_ready(copy, message, now):
            marked.append(copy)
    return marked


def evictions(
    pods: Iterable[pod_pb2.Pod],
    taints: Iterable[node_pb2.Taint],
    *,
    now: datetime,
    settings: Settings,
) -> tuple[list[Eviction], datetime | None]:
    """The pods due for eviction now (earliest first) and the next deadline after now."""
    due: list[tuple[datetime, Eviction]] = []
    upcoming: datetime | None = None
    taint_list = list(taints)
    for pod in pods:
        deadline = eviction_deadline(pod, taint_list, defaults=settings.tolerations, not_before=settings.not_before)
        if deadline is None:
            continue
        if deadline.at <= now:
            due.append((deadline.at, Eviction(pod, deadline.taint, deadline.seconds)))
        elif upcoming is None or deadline.at < upcoming:
            upcoming = deadline.at
    due.sort(key=lambda item: (item[0], item[1].pod.metadata.namespace, item[1].pod.metadata.name))
    return [e for _, e in due], upcoming


# -- the plan ---------------------------------------------------------------------


def plan_node(
    node: node_pb2.Node,
    pods: Iterable[pod_pb2.Pod],
    *,
    now: datetime,
    settings: Settings,
    disrupted: bool,
    renewed: datetime | None = None,
    lease_duration: timedelta | None = None,
) -> NodePlan:
    """What to do about `node` and the pods bound to it, at `now`; `renewed` is when its Lease was
    last renewed, `lease_duration` the Lease's leaseDurationSeconds. `disrupted` withholds NoExecute
    taints (a full disruption, or the zone's eviction rate allows no new one now)."""
    health = node_health(node, now=now, settings=settings, renewed=renewed, lease_duration=lease_duration)
    updated = node_pb2.Node()
    updated.CopyFrom(node)
    marked_unknown = health is Health.UNREACHABLE and mark_unknown(updated, now)
    retainted = sync_taints(updated, desired_taints(health, disrupted=disrupted), now)
    stamped = stamp_no_execute(updated, now)
    name = node.metadata.name
    pods = list(pods)
    active = [p for p in pods if p.spec.node_name == name and podutil.is_active(p)]
    due: list[Eviction] = []
    next_eviction: datetime | None = None
    if not disrupted:
        due, next_eviction = evictions(active, updated.spec.taints, now=now, settings=settings)
    deadline = grace_deadline(node, settings, renewed, lease_duration)
    return NodePlan(
        health=health,
        node=updated if (marked_unknown or retainted or stamped) else None,
        marked_unknown=marked_unknown,
        pods_not_ready=tuple(pods_not_ready(active, health, name, now)),
        evictions=tuple(due),
        force_deletions=tuple(stranded(pods, health, name, disrupted=disrupted)),
        recheck_at=earliest(deadline if deadline > now else None, next_eviction),
    )
