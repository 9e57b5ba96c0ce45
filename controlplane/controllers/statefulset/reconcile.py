"""StatefulSet reconciliation, pure: a set's pods and claims versus its spec.

`reconcile(sts, pods, claims, now=…)` takes the StatefulSet, the candidate pods
(its own and the orphans of its namespace) and the claims of its namespace by
name, and returns `StatefulSetActions`. As Kubernetes' StatefulSet controller:

- claim: pods whose controller is the set are its own; orphans named
  `<set>-<N>` that match the selector are adopted; owned pods that no longer
  match are released. Ordinals in [start, start+replicas) are the replicas,
  the others (and names without an ordinal) are condemned;
- replicas, in ordinal order: a missing pod is created (its claims first, each
  only if absent; a missing claim of a Pending pod is made too), with the update revision's template — or, for a
  RollingUpdate, below the partition the current revision's (from its
  ControllerRevision, or rebuilt from a pod that still carries it when there is
  none: `identity.template_of`); a Succeeded or Failed pod is deleted and
  made again under the same name once the old object is gone. OrderedReady
  stops at the first pod it creates or deletes, and at a pod that is
  terminating, not Running and Ready, or not yet available (minReadySeconds);
  Parallel goes on;
- condemned, highest ordinal first, only once every replica passed (OrderedReady):
  deleted one at a time, each only when the pods before it are healthy (the
  first unhealthy pod itself may go); Parallel deletes them all;
- update: RollingUpdate deletes, from the highest ordinal down to the
  partition, pods not at the update revision, at most maxUnavailable minus the
  unavailable pods at once (one at a time, waiting for Ready, by default);
  OnDelete leaves them until a user deletes them;
- claims: each existing claim of a pod gets the ownerReferences the
  persistentVolumeClaimRetentionPolicy asks for (`identity.claim_owners`),
  before any pod is deleted; a claim is never deleted here (the garbage
  collector deletes one whose owners are all gone);
- status: replicas, readyReplicas, availableReplicas, currentReplicas,
  updatedReplicas, currentRevision, updateRevision, observedGeneration; a
  RollingUpdate is complete (currentRevision := updateRevision) when every pod
  is updated and ready.

`manage=False` (a set being deleted) computes status only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.controllers.replicaset.reconcile import AVAILABILITY_SKEW, claim_pods
from controlplane.controllers.statefulset import identity
from protos import owners, statefulsets
from protos import pods as podutil
from protos import revisions as history
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2, workloads_pb2


@dataclass(frozen=True)
class StatefulSetActions:
    create_claims: tuple[storage_pb2.PersistentVolumeClaim, ...] = ()
    # Existing claims with changed ownerReferences (written before any pod is deleted).
    update_claims: tuple[storage_pb2.PersistentVolumeClaim, ...] = ()
    create: tuple[pod_pb2.Pod, ...] = ()
    delete: tuple[pod_pb2.Pod, ...] = ()
    adopt: tuple[pod_pb2.Pod, ...] = ()
    release: tuple[pod_pb2.Pod, ...] = ()
    # The new status, or None when it is unchanged.
    status: workloads_pb2.StatefulSetStatus | None = None
    requeue_after: float | None = None


@dataclass
class _Plan:
    sts: workloads_pb2.StatefulSet
    claims: Mapping[str, storage_pb2.PersistentVolumeClaim]
    current: str
    update: str
    current_template: pod_pb2.PodTemplateSpec | None
    create_claims: list[storage_pb2.PersistentVolumeClaim] = field(default_factory=list)
    update_claims: list[storage_pb2.PersistentVolumeClaim] = field(default_factory=list)
    create: list[pod_pb2.Pod] = field(default_factory=list)
    delete: list[pod_pb2.Pod] = field(default_factory=list)

    @property
    def monotonic(self) -> bool:
        return self.sts.spec.pod_management_policy != statefulsets.PARALLEL


def reconcile(
    sts: workloads_pb2.StatefulSet,
    pods: Iterable[pod_pb2.Pod],
    claims: Mapping[str, storage_pb2.PersistentVolumeClaim],
    *,
    now: datetime,
    manage: bool = True,
    revisions: Iterable[workloads_pb2.ControllerRevision] = (),
) -> StatefulSetActions:
    name = sts.metadata.name
    candidates = [p for p in pods if owners.is_controlled_by(p, sts.metadata.uid) or _is_member(sts, p)]
    claim = claim_pods(sts, candidates)
    members = [*claim.owned, *claim.adopt]
    update = statefulsets.revision(sts)
    current = sts.status.current_revision or update
    start, count = sts.spec.ordinals.start, sts.spec.replicas
    replicas: dict[int, pod_pb2.Pod] = {}
    condemned: list[pod_pb2.Pod] = []
    for pod in members:
        ordinal = statefulsets.ordinal_of(name, pod.metadata.name)
        if ordinal is not None and start <= ordinal < start + count:
            replicas[ordinal] = pod
        else:
            condemned.append(pod)
    condemned.sort(key=lambda p: -1 if (o := statefulsets.ordinal_of(name, p.metadata.name)) is None else o)
    condemned.reverse()
    plan = _Plan(sts, claims, current, update, _current_template(sts, members, current, update, revisions))
    if manage and not podutil.is_terminating(sts):
        _manage(plan, replicas, condemned, now)
    status = _status(sts, members, current, update, now)
    return StatefulSetActions(
        create_claims=tuple(plan.create_claims),
        update_claims=tuple(plan.update_claims),
        create=tuple(plan.create),
        delete=tuple(plan.delete),
        adopt=claim.adopt,
        release=claim.release,
        status=None if status == sts.status else status,
        requeue_after=_requeue_after(sts, members, now),
    )


def _is_member(sts: workloads_pb2.StatefulSet, pod: pod_pb2.Pod) -> bool:
    return statefulsets.ordinal_of(sts.metadata.name, pod.metadata.name) is not None


def _current_template(
    sts: workloads_pb2.StatefulSet,
    members: Iterable[pod_pb2.Pod],
    current: str,
    update: str,
    revisions: Iterable[workloads_pb2.ControllerRevision],
) -> pod_pb2.PodTemplateSpec | None:
    """The current revision's template: its ControllerRevision's, else rebuilt from a pod that
    carries it (a set whose revision is not recorded yet), else None."""
    if current == update:
        return sts.spec.template
    for rev in revisions:
        if rev.metadata.name == current and owners.is_controlled_by(rev, sts.metadata.uid):
            return history.template_of(rev)
    for pod in members:
        if identity.revision_of(pod) == current:
            template = identity.template_of(sts, pod, current)
            if template is not None:
                return template
    return None


def _healthy(pod: pod_pb2.Pod) -> bool:
    return _running_and_ready(pod) and not podutil.is_terminating(pod)


def _running_and_ready(pod: pod_pb2.Pod) -> bool:
    return pod.status.phase == "Running" and podutil.is_ready(pod)


def _manage(plan: _Plan, replicas: dict[int, pod_pb2.Pod], condemned: list[pod_pb2.Pod], now: datetime) -> None:
    sts = plan.sts
    start, count = sts.spec.ordinals.start, sts.spec.replicas
    for pod in [*replicas.values(), *condemned]:
        _fix_claim_owners(plan, pod, scaled=pod in condemned)
    for ordinal in range(start, start + count):
        if _process_replica(plan, ordinal, replicas.get(ordinal), now) and plan.monotonic:
            return
    unhealthy = next((p for p in [*[replicas[o] for o in sorted(replicas)], *condemned] if not _healthy(p)), None)
    for pod in condemned:
        if podutil.is_terminating(pod):
            if plan.monotonic:
                return
            continue
        available = _running_and_ready(pod) and podutil.is_available(pod, sts.spec.min_ready_seconds, now)
        if plan.monotonic and not available and pod is not unhealthy:
            return
        plan.delete.append(pod)
        if plan.monotonic:
            return
    if sts.spec.update_strategy.type == statefulsets.ROLLING_UPDATE:
        _roll(plan, replicas)


def _process_replica(plan: _Plan, ordinal: int, pod: pod_pb2.Pod | None, now: datetime) -> bool:
    """Act on one replica; True when OrderedReady must stop here."""
    sts = plan.sts
    if pod is None or (pod.status.phase in ("", "Pending") and not podutil.is_terminating(pod)):
        for template, existing in identity.claims_of(sts, ordinal, plan.claims):
            if existing is None:
                plan.create_claims.append(_owned_claim(sts, identity.new_claim(sts, template, ordinal)))
    if pod is None:
        plan.create.append(_versioned_pod(plan, ordinal))
        return True
    if podutil.is_terminal(pod):
        if not podutil.is_terminating(pod):
            plan.delete.append(pod)
        return True
    if podutil.is_terminating(pod) or not _running_and_ready(pod):
        return True
    return not podutil.is_available(pod, sts.spec.min_ready_seconds, now)


def _owned_claim(
    sts: workloads_pb2.StatefulSet, claim: storage_pb2.PersistentVolumeClaim
) -> storage_pb2.PersistentVolumeClaim:
    """A new claim of a replica with the set's ownerReference when whenDeleted is Delete."""
    return identity.claim_owners(claim, sts, None, scaled=False) or claim


def _versioned_pod(plan: _Plan, ordinal: int) -> pod_pb2.Pod:
    """Below a RollingUpdate's partition the current revision (if its template is known), else the update."""
    sts = plan.sts
    strategy = sts.spec.update_strategy
    below = (
        strategy.type == statefulsets.ROLLING_UPDATE
        and ordinal < sts.spec.ordinals.start + strategy.rolling_update.partition
    )
    if below and plan.current_template is not None:
        return identity.new_pod(sts, ordinal, plan.current_template, plan.current)
    return identity.new_pod(sts, ordinal, sts.spec.template, plan.update)


def _fix_claim_owners(plan: _Plan, pod: pod_pb2.Pod, *, scaled: bool) -> None:
    ordinal = statefulsets.ordinal_of(plan.sts.metadata.name, pod.metadata.name)
    if ordinal is None:
        return
    for _, existing in identity.claims_of(plan.sts, ordinal, plan.claims):
        if existing is not None:
            fixed = identity.claim_owners(existing, plan.sts, pod, scaled=scaled)
            if fixed is not None:
                plan.update_claims.append(fixed)


def max_unavailable(sts: workloads_pb2.StatefulSet) -> int:
    """rollingUpdate.maxUnavailable as a number of pods (a percentage of replicas, rounded down), at least 1."""
    value = sts.spec.update_strategy.rolling_update.max_unavailable
    if value.HasField("int_val"):
        return max(1, value.int_val)
    text = value.str_val.rstrip("%")
    if not text.isdigit():
        return statefulsets.DEFAULT_MAX_UNAVAILABLE
    return max(1, sts.spec.replicas * int(text) // 100)


def _roll(plan: _Plan, replicas: dict[int, pod_pb2.Pod]) -> None:
    """Delete pods not at the update revision from the highest ordinal down to the partition."""
    sts = plan.sts
    start, count = sts.spec.ordinals.start, sts.spec.replicas
    unavailable = sum(1 for o in range(start, start + count) if o not in replicas or not _healthy(replicas[o]))
    budget = max_unavailable(sts) - unavailable
    floor = start + sts.spec.update_strategy.rolling_update.partition
    for ordinal in range(start + count - 1, floor - 1, -1):
        if budget <= 0:
            return
        pod = replicas.get(ordinal)
        if pod is None or podutil.is_terminating(pod) or identity.revision_of(pod) == plan.update:
            continue
        plan.delete.append(pod)
        budget -= 1


def _status(
    sts: workloads_pb2.StatefulSet, members: Iterable[pod_pb2.Pod], current: str, update: str, now: datetime
) -> workloads_pb2.StatefulSetStatus:
    status = workloads_pb2.StatefulSetStatus(
        observed_generation=sts.metadata.generation,
        collision_count=sts.status.collision_count,
        current_revision=current,
        update_revision=update,
    )
    for pod in members:
        status.replicas += 1
        if _running_and_ready(pod):
            status.ready_replicas += 1
            if podutil.is_available(pod, sts.spec.min_ready_seconds, now):
                status.available_replicas += 1
        if not podutil.is_terminating(pod):
            revision = identity.revision_of(pod)
            status.current_replicas += revision == current
            status.updated_replicas += revision == update
    if (
        sts.spec.update_strategy.type == statefulsets.ROLLING_UPDATE
        and status.updated_replicas == status.replicas
        and status.ready_replicas == status.replicas
    ):
        status.current_revision = update
        status.current_replicas = status.updated_replicas
    conditions: list[meta_pb2.Condition] = list(sts.status.conditions)
    status.conditions.extend(conditions)
    return status


def _requeue_after(sts: workloads_pb2.StatefulSet, members: Iterable[pod_pb2.Pod], now: datetime) -> float | None:
    wait = podutil.next_available(list(members), sts.spec.min_ready_seconds, now)
    return None if wait is None else wait + AVAILABILITY_SKEW
