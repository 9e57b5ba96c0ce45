"""DaemonSet reconciliation, pure: one pod per fitting node, versus the pods there are.

`reconcile(ds, pods, nodes, now=…)` takes the DaemonSet, the candidate pods
(its own and the orphans of its namespace) and every node, and returns
`DaemonSetActions`. As Kubernetes' DaemonSet controller:

- claim: pods whose controller is the set are its own; orphans that match the
  selector are adopted; owned pods that no longer match are released;
- each pod belongs to the node it is bound to, or (still Pending) the node its
  required node affinity names (`daemonsets.node_of`); a pod for a node that no
  longer exists is deleted;
- manage, node by node (`placement.fit`): Succeeded and Failed pods are deleted
  (so they are replaced) — a Failed one not before `failed_not_before[node]`,
  the shell's back-off per node (Kubernetes' failedPodsBackoff), and the nodes
  where one was deleted are reported so the shell can lengthen it; a node that should run the pod and has none (not
  even one being deleted) gets one, made from the template with the
  DaemonSet tolerations, the `controller-revision-hash` label and required node
  affinity to that node, so the scheduler binds it there after checking
  resources and ports; a node that should not keep its pods (no longer
  selected, or a NoExecute taint not tolerated) has them deleted; a node with
  more than one running pod keeps the oldest (with maxSurge, the oldest of the
  updated and the oldest of the old) and the others are deleted;
- RollingUpdate without surge: an old pod that is not available is deleted at
  once; otherwise old pods are deleted while fewer than maxUnavailable nodes
  that should run the pod are without an available one (a node with no pod, an
  updated pod not yet available, or a pod being replaced counts as
  unavailable). With maxSurge: an updated pod is created beside the old one on
  at most maxSurge nodes at a time (at once where the old one is not
  available), and the old one is deleted once the new one is available.
  maxUnavailable and maxSurge are scaled from the number of nodes that should
  run the pod (rounded up); both 0 gives maxUnavailable 1. OnDelete leaves old
  pods until a user deletes them;
- status: desiredNumberScheduled, currentNumberScheduled, numberMisscheduled,
  numberReady, numberAvailable, numberUnavailable, updatedNumberScheduled (the
  oldest pod of each node counts), observedGeneration.

`manage=False` (expectations not met, or the set is being deleted) computes
status only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.controllers.daemonset.placement import Fit, fit, template_request
from controlplane.controllers.replicaset.reconcile import AVAILABILITY_SKEW, claim_pods
from protos import daemonsets, intstr, owners
from protos import pods as podutil
from protos.corral.v1 import node_pb2, pod_pb2, workloads_pb2
from protos.wellknown import CONTROLLER_REVISION_HASH

FAILED = "Failed"


@dataclass(frozen=True)
class DaemonSetActions:
    create: tuple[pod_pb2.Pod, ...] = ()
    delete: tuple[pod_pb2.Pod, ...] = ()
    adopt: tuple[pod_pb2.Pod, ...] = ()
    release: tuple[pod_pb2.Pod, ...] = ()
    # The new status, or None when it is unchanged.
    status: workloads_pb2.DaemonSetStatus | None = None
    requeue_after: float | None = None
    # Nodes where a Failed pod is deleted (the shell backs off the next one there).
    failed_on: tuple[str, ...] = ()


@dataclass
class _Plan:
    ds: workloads_pb2.DaemonSet
    hash: str
    now: datetime
    failed_not_before: Mapping[str, datetime] = field(default_factory=dict)
    create: list[str] = field(default_factory=list)
    delete: dict[str, pod_pb2.Pod] = field(default_factory=dict)
    failed_on: list[str] = field(default_factory=list)
    # Seconds until a Failed pod held back may be deleted.
    waits: list[float] = field(default_factory=list)

    def drop(self, pod: pod_pb2.Pod) -> None:
        self.delete.setdefault(pod.metadata.uid or pod.metadata.name, pod)

    def available(self, pod: pod_pb2.Pod) -> bool:
        return podutil.is_available(pod, self.ds.spec.min_ready_seconds, self.now)

    def updated(self, pod: pod_pb2.Pod) -> bool:
        return pod.metadata.labels.get(CONTROLLER_REVISION_HASH) == self.hash


def reconcile(
    ds: workloads_pb2.DaemonSet,
    pods: Iterable[pod_pb2.Pod],
    nodes: Iterable[node_pb2.Node],
    *,
    now: datetime,
    manage: bool = True,
    failed_not_before: Mapping[str, datetime] | None = None,
) -> DaemonSetActions:
    claim = claim_pods(ds, pods)
    members = [*claim.owned, *claim.adopt]
    node_list = sorted(nodes, key=lambda n: n.metadata.name)
    request = template_request(daemonsets.with_default_tolerations(ds.spec.template.spec))
    fits = {n.metadata.name: fit(n, request) for n in node_list}
    by_node: dict[str, list[pod_pb2.Pod]] = {name: [] for name in fits}
    strays: list[pod_pb2.Pod] = []
    for pod in members:
        node = daemonsets.node_of(pod)
        by_node.get(node, strays).append(pod)
    plan = _Plan(ds, daemonsets.revision(ds), now, failed_not_before or {})
    if manage and not podutil.is_terminating(ds):
        for pod in strays:
            if not podutil.is_terminating(pod):
                plan.drop(pod)
        _manage(plan, fits, by_node)
        if ds.spec.update_strategy.type == daemonsets.ROLLING_UPDATE:
            _roll(plan, fits, by_node)
    status = _status(plan, fits, by_node)
    return DaemonSetActions(
        create=tuple(new_pod(ds, node, plan.hash) for node in plan.create),
        delete=tuple(plan.delete.values()),
        adopt=claim.adopt,
        release=claim.release,
        status=None if status == ds.status else status,
        requeue_after=min((w for w in [*plan.waits, _requeue_after(ds, members, now)] if w is not None), default=None),
        failed_on=tuple(plan.failed_on),
    )


def _running(pods: Sequence[pod_pb2.Pod]) -> list[pod_pb2.Pod]:
    """Pods not being deleted and not finished, oldest first."""
    return sorted((p for p in pods if podutil.is_active(p)), key=_age_key)


def _age_key(pod: pod_pb2.Pod) -> tuple[int, int, str]:
    ts = pod.metadata.creation_timestamp
    return (ts.seconds, ts.nanos, pod.metadata.name)


def _manage(plan: _Plan, fits: dict[str, Fit], by_node: dict[str, list[pod_pb2.Pod]]) -> None:
    # Kubernetes' AllowsSurge: a RollingUpdate whose maxSurge is not 0 (scaled against one node).
    surge = plan.ds.spec.update_strategy.type == daemonsets.ROLLING_UPDATE and max_surge(plan.ds, 1) > 0
    for name, node_fit in fits.items():
        pods = by_node[name]
        for pod in pods:
            if podutil.is_terminal(pod) and not podutil.is_terminating(pod):
                _drop_finished(plan, name, pod)
        if node_fit.should_run and not pods:
            plan.create.append(name)
        elif not node_fit.may_continue:
            for pod in pods:
                if not podutil.is_terminating(pod):
                    plan.drop(pod)
        else:
            running = _running(pods)
            if surge:
                newest = [p for p in running if plan.updated(p)][1:]
                oldest = [p for p in running if not plan.updated(p)][1:]
                extra = newest + oldest
            else:
                extra = running[1:]
            for pod in extra:
                plan.drop(pod)


def _drop_finished(plan: _Plan, node: str, pod: pod_pb2.Pod) -> None:
    if pod.status.phase != FAILED:
        plan.drop(pod)
        return
    not_before = plan.failed_not_before.get(node)
    if not_before is not None and plan.now < not_before:
        plan.waits.append((not_before - plan.now).total_seconds())
        return
    plan.drop(pod)
    if node not in plan.failed_on:
        plan.failed_on.append(node)


def max_surge(ds: workloads_pb2.DaemonSet, desired: int) -> int:
    ru = ds.spec.update_strategy.rolling_update
    return intstr.scaled_value(ru.max_surge, desired, round_up=True) if ru.HasField("max_surge") else 0


def max_unavailable(ds: workloads_pb2.DaemonSet, desired: int) -> int:
    """maxUnavailable as a count of nodes; 1 when both it and maxSurge come to 0 (Kubernetes)."""
    ru = ds.spec.update_strategy.rolling_update
    value = (
        intstr.scaled_value(ru.max_unavailable, desired, round_up=True)
        if ru.HasField("max_unavailable")
        else daemonsets.DEFAULT_MAX_UNAVAILABLE
    )
    if value == 0 and max_surge(ds, desired) == 0:
        return 1
    return value


def _split(plan: _Plan, pods: Sequence[pod_pb2.Pod]) -> tuple[pod_pb2.Pod | None, pod_pb2.Pod | None, bool]:
    """The updated and the old running pod of a node; False when there is more than one of either."""
    running = _running(pods)
    new = [p for p in running if plan.updated(p)]
    old = [p for p in running if not plan.updated(p)]
    if len(new) > 1 or len(old) > 1:
        return None, None, False
    return (new[0] if new else None), (old[0] if old else None), True


def _roll(plan: _Plan, fits: dict[str, Fit], by_node: dict[str, list[pod_pb2.Pod]]) -> None:
    wanted = [name for name, f in fits.items() if f.should_run or (f.may_continue and by_node[name])]
    desired = sum(f.should_run for f in fits.values())
    surge_max = max_surge(plan.ds, desired)
    if surge_max == 0:
        _roll_unavailable(plan, wanted, by_node, max_unavailable(plan.ds, desired))
    else:
        _roll_surge(plan, wanted, by_node, surge_max)


def _roll_unavailable(plan: _Plan, wanted: list[str], by_node: dict[str, list[pod_pb2.Pod]], allowed: int) -> None:
    unavailable = 0
    replace: list[pod_pb2.Pod] = []
    candidates: list[pod_pb2.Pod] = []
    for name in wanted:
        new, old, ok = _split(plan, by_node[name])
        if not ok or (new is None) == (old is None) or any(p.metadata.uid in plan.delete for p in by_node[name]):
            unavailable += 1  # being created, replaced or cleaned up
        elif new is not None:
            unavailable += not plan.available(new)
        elif old is not None and not plan.available(old):
            replace.append(old)
        elif old is not None and unavailable < allowed:
            candidates.append(old)
    room = max(0, allowed - unavailable - len(replace))
    for pod in [*replace, *candidates[:room]]:
        plan.drop(pod)


def _roll_surge(plan: _Plan, wanted: list[str], by_node: dict[str, list[pod_pb2.Pod]], allowed: int) -> None:
    surging = 0
    create: list[str] = []
    for name in wanted:
        new, old, ok = _split(plan, by_node[name])
        if not ok:
            surging += 1
        elif old is None:
            continue
        elif new is None:
            if not plan.available(old):
                create.append(name)
            elif surging < allowed:
                surging += 1
                create.append(name)
        elif not plan.available(new):
            surging += 1
        else:
            plan.drop(old)
    plan.create.extend(n for n in create if n not in plan.create)


def new_pod(ds: workloads_pb2.DaemonSet, node: str, hash_: str) -> pod_pb2.Pod:
    """The set's pod for `node`: generateName `<set>-`, template labels and the revision hash,
    the DaemonSet tolerations, required node affinity to `node`, owned by `ds`."""
    template = ds.spec.template
    pod = pod_pb2.Pod(api_version="v1", kind="Pod")
    m = pod.metadata
    m.generate_name = f"{ds.metadata.name}-"
    m.namespace = ds.metadata.namespace
    m.labels.update(template.metadata.labels)
    m.labels[CONTROLLER_REVISION_HASH] = hash_
    m.annotations.update(template.metadata.annotations)
    m.owner_references.append(owners.owner_reference(ds))
    pod.spec.CopyFrom(daemonsets.with_node_affinity(daemonsets.with_default_tolerations(template.spec), node))
    return pod


def _status(plan: _Plan, fits: dict[str, Fit], by_node: dict[str, list[pod_pb2.Pod]]) -> workloads_pb2.DaemonSetStatus:
    ds = plan.ds
    status = workloads_pb2.DaemonSetStatus(
        observed_generation=ds.metadata.generation, collision_count=ds.status.collision_count
    )
    status.conditions.extend(ds.status.conditions)
    for name, node_fit in fits.items():
        pods = sorted(by_node[name], key=_age_key)
        if not node_fit.should_run:
            status.number_misscheduled += bool(pods)
            continue
        status.desired_number_scheduled += 1
        if not pods:
            continue
        status.current_number_scheduled += 1
        oldest = pods[0]
        if podutil.is_ready(oldest):
            status.number_ready += 1
            status.number_available += plan.available(oldest)
        status.updated_number_scheduled += plan.updated(oldest)
    status.number_unavailable = status.desired_number_scheduled - status.number_available
    return status


def _requeue_after(ds: workloads_pb2.DaemonSet, pods: Sequence[pod_pb2.Pod], now: datetime) -> float | None:
    wait = podutil.next_available(pods, ds.spec.min_ready_seconds, now)
    return None if wait is None else wait + AVAILABILITY_SKEW
