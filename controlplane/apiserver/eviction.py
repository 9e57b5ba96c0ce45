"""Evictions, pure: may a PodDisruptionBudget let this pod go now? No I/O.

Kubernetes' pods/eviction subresource, rule for rule:

- a pod that is finished (Succeeded, Failed), not started (Pending) or
  already being deleted is deleted without asking any budget;
- the budgets of the pod's namespace whose selector picks it (an absent
  selector picks nothing, an empty one every pod) decide; more than one is
  refused (an eviction cannot take from two budgets at once); none: delete;
- a pod that is not Ready is deleted without using the budget when the
  budget's unhealthyPodEvictionPolicy is AlwaysAllow, or (IfHealthyBudget, the
  default) when the budget is met (currentHealthy >= desiredHealthy > 0) —
  and then only the version read, so a pod that turned Ready meanwhile stays;
- otherwise the budget is checked and decremented (`check_and_decrement`):
  refused with "too many requests" while the controller has not seen the
  budget's current spec or when no disruption is allowed; the pod's name is
  recorded in status.disruptedPods so that the controller does not count it
  healthy until it is gone. The API server writes the budget back with a
  compare-and-swap on its resourceVersion before deleting the pod.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from controlplane.apiserver import labels
from controlplane.apiserver.errors import Cause, ForbiddenError, TooManyRequestsError
from protos import disruption
from protos.conditions import set_condition
from protos.corral.v1 import pod_pb2, policy_pb2
from protos.pods import is_ready, is_terminating

TOO_MANY: str = "Cannot evict pod as it would violate the pod's disruption budget."
BUDGET_CAUSE = "DisruptionBudget"


def selects(pdb: policy_pb2.PodDisruptionBudget, pod: pod_pb2.Pod) -> bool:
    """Whether the budget covers the pod: same namespace and its selector matches
    (policy/v1: absent picks nothing, `{}` every pod; a malformed one nothing)."""
    if pdb.metadata.namespace != pod.metadata.namespace or not pdb.spec.HasField("selector"):
        return False
    try:
        return labels.from_label_selector(pdb.spec.selector).matches(pod.metadata.labels)
    except labels.SelectorError:
        return False


def can_ignore_budget(pod: pod_pb2.Pod) -> bool:
    return pod.status.phase in ("Succeeded", "Failed", "Pending") or is_terminating(pod)


@dataclass(frozen=True)
class EvictionPlan:
    # The budget to check and decrement before deleting; None: delete without one.
    budget: policy_pb2.PodDisruptionBudget | None
    # Delete only the pod version read (an unready pod let go without using the budget).
    exact_version: bool = False


def plan_eviction(pod: pod_pb2.Pod, budgets: Iterable[policy_pb2.PodDisruptionBudget]) -> EvictionPlan:
    if can_ignore_budget(pod):
        return EvictionPlan(None)
    matching = [b for b in budgets if selects(b, pod)]
    if not matching:
        return EvictionPlan(None)
    if len(matching) > 1:
        raise ForbiddenError(
            "pods",
            pod.metadata.name,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        )
    pdb = matching[0]
    if not is_ready(pod):
        if pdb.spec.unhealthy_pod_eviction_policy == disruption.ALWAYS_ALLOW:
            return EvictionPlan(None, exact_version=True)
        if pdb.status.current_healthy >= pdb.status.desired_healthy > 0:
            return EvictionPlan(None, exact_version=True)
    return EvictionPlan(pdb)


def _too_many(message: str) -> TooManyRequestsError:
    return TooManyRequestsError(TOO_MANY, [Cause(BUDGET_CAUSE, message)])


def check_and_decrement(
    pdb: policy_pb2.PodDisruptionBudget, pod_name: str, now: datetime
) -> policy_pb2.PodDisruptionBudget:
    """The budget with one disruption taken for `pod_name`, or the refusal."""
    now = now.astimezone(UTC).replace(microsecond=0)
    status = pdb.status
    if status.observed_generation < pdb.metadata.generation:
        raise _too_many(f"The disruption budget {pdb.metadata.name} is still being processed by the server.")
    if status.disruptions_allowed < 0:
        raise ForbiddenError("poddisruptionbudget", pdb.metadata.name, "pdb disruptions allowed is negative")
    if len(status.disrupted_pods) > disruption.MAX_DISRUPTED_PODS:
        raise ForbiddenError(
            "poddisruptionbudget",
            pdb.metadata.name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        )
    if status.disruptions_allowed == 0:
        raise _too_many(
            f"The disruption budget {pdb.metadata.name} needs {status.desired_healthy} healthy pods "
            f"and has {status.current_healthy} currently"
        )
    taken = policy_pb2.PodDisruptionBudget()
    taken.CopyFrom(pdb)
    taken.status.disruptions_allowed -= 1
    if taken.status.disruptions_allowed == 0:
        condition = set_condition(
            taken.status.conditions,
            disruption.DISRUPTION_ALLOWED,
            "False",
            reason=disruption.INSUFFICIENT_PODS,
            message="",
            now=now,
        )
        condition.observed_generation = taken.status.observed_generation
    taken.status.disrupted_pods[pod_name].FromDatetime(now)
    return taken
