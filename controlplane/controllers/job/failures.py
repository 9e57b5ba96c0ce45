"""A Job's failed pods, pure: what its podFailurePolicy says about each, and the retry back-off.

- `policy_action(policy, pod)`: the action of the first rule that matches a
  failed pod (FailJob, FailIndex, Ignore or Count), None when none matches
  (the failure counts). onExitCodes looks at every container (init containers
  too, not sidecars, which the agent stops when the pod ends; or the one named)
  that terminated with a non-zero exit code: `In` matches a code in the
  values, `NotIn` one outside them. onPodConditions matches a pod with a
  condition of that type and status.
- `backoff_delay(failures)`: Kubernetes' pod failure back-off, 10 s doubled
  for each failure since the last success, at most six minutes.
- `finished_at(pod)`: when a pod ended (its containers' latest finishedAt).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from protos import jobs
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.pods import is_sidecar
from protos.times import as_datetime

BASE_BACKOFF = timedelta(seconds=10)
MAX_BACKOFF = timedelta(minutes=6)


def policy_action(policy: batch_pb2.PodFailurePolicy, pod: pod_pb2.Pod) -> tuple[str, int] | None:
    """(action, rule index) of the first rule matching the failed pod; None: no rule matches."""
    for i, rule in enumerate(policy.rules):
        if rule.HasField("on_exit_codes") and _exit_codes_match(rule.on_exit_codes, pod):
            return rule.action, i
        if rule.on_pod_conditions and _conditions_match(rule.on_pod_conditions, pod):
            return rule.action, i
    return None


def _run_to_completion(pod: pod_pb2.Pod) -> list[pod_pb2.ContainerStatus]:
    """The statuses of the containers whose exit codes say how the pod ended: not the sidecars'
    (the agent stops them when the pod is finished)."""
    sidecars = {c.name for c in pod.spec.init_containers if is_sidecar(c)}
    inits = [s for s in pod.status.init_container_statuses if s.name not in sidecars]
    return [*inits, *pod.status.container_statuses]


def failing_exit(pod: pod_pb2.Pod) -> tuple[str, int] | None:
    """(container, exit code) of the first container that terminated with a non-zero code."""
    for status in _run_to_completion(pod):
        code = status.state.terminated.exit_code
        if status.state.HasField("terminated") and code != 0:
            return status.name, code
    return None


def _exit_codes_match(req: batch_pb2.PodFailurePolicyOnExitCodesRequirement, pod: pod_pb2.Pod) -> bool:
    values = set(req.values)
    for status in _run_to_completion(pod):
        if req.HasField("container_name") and status.name != req.container_name:
            continue
        if not status.state.HasField("terminated") or status.state.terminated.exit_code == 0:
            continue
        code = status.state.terminated.exit_code
        if (code in values) == (req.operator == "In"):
            return True
    return False


def _conditions_match(patterns: Sequence[batch_pb2.PodFailurePolicyOnPodConditionsPattern], pod: pod_pb2.Pod) -> bool:
    have = {(c.type, c.status) for c in pod.status.conditions}
    return any((p.type, p.status or "True") in have for p in patterns)


def finished_at(pod: pod_pb2.Pod) -> datetime | None:
    """When a pod ended: the latest finishedAt of its containers; None when unknown."""
    times = [
        t
        for s in (*pod.status.init_container_statuses, *pod.status.container_statuses)
        if s.state.HasField("terminated") and (t := as_datetime(s.state.terminated.finished_at)) is not None
    ]
    return max(times) if times else None


def backoff_delay(failures: int) -> timedelta:
    """The wait before the next pod after `failures` failures in a row (0: none)."""
    if failures <= 0:
        return timedelta()
    delay: timedelta = BASE_BACKOFF * (2 ** min(failures - 1, 16))
    return min(MAX_BACKOFF, delay)


def next_pod_at(succeeded: Sequence[pod_pb2.Pod], failed: Sequence[pod_pb2.Pod], created: datetime) -> datetime | None:
    """When the next pod may start: the last failure plus the back-off for the failures
    since the last success (a pod whose end is unknown ended at the Job's creation); None: now."""
    last_success = max((t for p in succeeded if (t := finished_at(p)) is not None), default=None)
    ends = [finished_at(p) or created for p in failed]
    since = [t for t in ends if last_success is None or t > last_success]
    if not since:
        return None
    return max(since) + backoff_delay(len(since))


def completion_index(pod: pod_pb2.Pod) -> int | None:
    """An Indexed Job's pod's index (its annotation, else its label), None when missing or not a number."""
    text = pod.metadata.annotations.get(jobs.COMPLETION_INDEX) or pod.metadata.labels.get(jobs.COMPLETION_INDEX, "")
    return int(text) if text.isdigit() else None
