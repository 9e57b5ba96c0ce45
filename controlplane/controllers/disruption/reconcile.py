"""A PodDisruptionBudget's status, pure: Kubernetes' disruption math with `now` passed in.

- expected pods and desired healthy:
  - maxUnavailable (count or percent): expected = the sum of the desired
    replicas of the pods' controllers (each counted once: a Deployment's pods
    in two ReplicaSets count its replicas once); desired healthy = expected -
    maxUnavailable (a percent of expected, rounded up), at least 0;
  - minAvailable as a count: desired healthy = that count, expected = the
    number of selected pods;
  - minAvailable as a percent: expected from the controllers as for
    maxUnavailable; desired healthy = the percent of it, rounded up;
  - neither: 0 and 0.
  Pods without a controller are left out of the controllers' sum (and named,
  for a warning); a pod whose controller cannot be found fails the sync: the
  budget then allows no disruption (condition DisruptionAllowed False,
  reason SyncFailed) until it can be computed again.
- current healthy: selected pods that are Ready, not being deleted, and not
  recently evicted (in status.disruptedPods for less than 2 minutes);
- disruptions allowed: current healthy - desired healthy, at least 0, and 0
  when no pods are expected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from protos import disruption
from protos.conditions import set_condition
from protos.corral.v1 import pod_pb2, policy_pb2
from protos.intstr import scaled_value
from protos.owners import controller_ref
from protos.pods import is_ready, is_terminating
from protos.times import as_datetime


@dataclass(frozen=True)
class Scale:
    """The controller a pod's controllerRef leads to (a Deployment for a pod of its
    ReplicaSet) and the replicas it wants."""

    uid: str
    replicas: int


class SyncFailedError(Exception):
    """The budget's expected pods cannot be computed (a pod's controller is missing)."""


def expected_scale(pods: Sequence[pod_pb2.Pod], scales: Mapping[str, Scale | None]) -> tuple[int, list[str]]:
    """The sum of the pods' controllers' replicas, each controller once; and the pods without a controller.
    `scales` maps each controllerRef uid to its Scale, or None when no such controller was found."""
    found: dict[str, int] = {}
    unmanaged: list[str] = []
    for pod in pods:
        ref = controller_ref(pod)
        if ref is None:
            unmanaged.append(pod.metadata.name)
            continue
        scale = scales.get(ref.uid)
        if scale is None:
            raise SyncFailedError(f'found no controllers for pod "{pod.metadata.name}"')
        found[scale.uid] = scale.replicas
    return sum(found.values()), unmanaged


def expected_and_desired(
    spec: policy_pb2.PodDisruptionBudgetSpec, pods: Sequence[pod_pb2.Pod], scales: Mapping[str, Scale | None]
) -> tuple[int, int, list[str]]:
    """(expected pods, desired healthy, unmanaged pod names) for the budget's spec."""
    if spec.HasField("max_unavailable"):
        expected, unmanaged = expected_scale(pods, scales)
        unavailable = scaled_value(spec.max_unavailable, expected, round_up=True)
        return expected, max(0, expected - unavailable), unmanaged
    if spec.HasField("min_available"):
        if spec.min_available.HasField("int_val"):
            return len(pods), spec.min_available.int_val, []
        expected, unmanaged = expected_scale(pods, scales)
        return expected, scaled_value(spec.min_available, expected, round_up=True), unmanaged
    return 0, 0, []


def still_disrupted(
    recorded: Mapping[str, datetime], pods: Sequence[pod_pb2.Pod], now: datetime
) -> tuple[dict[str, datetime], datetime | None]:
    """The evictions still pending (the pod exists, is not being deleted, and was evicted
    less than DELETION_TIMEOUT ago), and the earliest moment one of them expires."""
    kept: dict[str, datetime] = {}
    recheck: datetime | None = None
    for pod in pods:
        at = recorded.get(pod.metadata.name)
        if at is None or is_terminating(pod):
            continue
        expires = at + disruption.DELETION_TIMEOUT
        if expires <= now:
            continue
        kept[pod.metadata.name] = at
        recheck = expires if recheck is None else min(recheck, expires)
    return kept, recheck


def count_healthy(pods: Sequence[pod_pb2.Pod], disrupted: Mapping[str, datetime]) -> int:
    return sum(1 for p in pods if not is_terminating(p) and p.metadata.name not in disrupted and is_ready(p))


@dataclass(frozen=True)
class BudgetResult:
    status: policy_pb2.PodDisruptionBudgetStatus
    # Pods selected that no controller owns (a warning: percentages cannot count them).
    unmanaged: list[str] = field(default_factory=list)
    # Why the status could not be computed ("" when it could).
    failed: str = ""
    # When an eviction recorded in disruptedPods expires: look again then.
    recheck: datetime | None = None


def _allowed_condition(status: policy_pb2.PodDisruptionBudgetStatus, allowed: bool, now: datetime) -> None:
    condition = set_condition(
        status.conditions,
        disruption.DISRUPTION_ALLOWED,
        "True" if allowed else "False",
        reason=disruption.SUFFICIENT_PODS if allowed else disruption.INSUFFICIENT_PODS,
        message="",
        now=now,
    )
    condition.observed_generation = status.observed_generation


def budget_status(
    pdb: policy_pb2.PodDisruptionBudget,
    pods: Sequence[pod_pb2.Pod],
    scales: Mapping[str, Scale | None],
    now: datetime,
) -> BudgetResult:
    """The budget's status from the pods it selects, at `now`."""
    now = now.astimezone(UTC).replace(microsecond=0)
    status = policy_pb2.PodDisruptionBudgetStatus()
    status.CopyFrom(pdb.status)
    try:
        expected, desired, unmanaged = expected_and_desired(pdb.spec, pods, scales)
    except SyncFailedError as e:
        status.disruptions_allowed = 0
        condition = set_condition(
            status.conditions,
            disruption.DISRUPTION_ALLOWED,
            "False",
            reason=disruption.SYNC_FAILED,
            message=str(e),
            now=now,
        )
        condition.observed_generation = status.observed_generation
        return BudgetResult(status, failed=str(e))
    recorded = {name: t for name, stamp in pdb.status.disrupted_pods.items() if (t := as_datetime(stamp)) is not None}
    disrupted, recheck = still_disrupted(recorded, pods, now)
    healthy = count_healthy(pods, disrupted)
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    status.current_healthy, status.desired_healthy = healthy, desired
    status.expected_pods, status.disruptions_allowed = expected, allowed
    status.observed_generation = pdb.metadata.generation
    status.disrupted_pods.clear()
    for name, at in disrupted.items():
        status.disrupted_pods[name].FromDatetime(at)
    _allowed_condition(status, allowed > 0, now)
    return BudgetResult(status, unmanaged=unmanaged, recheck=recheck)
