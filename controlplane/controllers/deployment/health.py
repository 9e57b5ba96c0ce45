"""Is the canary failing? Pure: the canary's pods in, a reason or None out.

A canary pod fails (and, with `abortOnFailure`, the canary is aborted) when:

- a container (init containers too) waits in CrashLoopBackOff;
- a container (init containers too) has restarted `MAX_RESTARTS` (3) times or more;
- it runs but lost readiness: its Ready condition turned False after the pod
  started (a pod that never became ready has Ready False since its first
  status report, which is also when it started). Pods that a silent node made
  not ready (reason NodeNotReady) are the node's problem, not the canary's.

Pods being deleted or finished do not count.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.controllers.nodelifecycle.reconcile import POD_NOT_READY_REASON
from protos import pods as podutil
from protos import times
from protos.corral.v1 import pod_pb2

CRASH_LOOP = "CrashLoopBackOff"
MAX_RESTARTS = 3


def failure(pods: Iterable[pod_pb2.Pod]) -> str | None:
    """Why the canary fails (`canary pod web-abc12 crash-looping`), or None."""
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        if not podutil.is_active(pod):
            continue
        problem = pod_failure(pod)
        if problem is not None:
            return f"canary pod {pod.metadata.name} {problem}"
    return None


def pod_failure(pod: pod_pb2.Pod) -> str | None:
    statuses = [*pod.status.init_container_statuses, *pod.status.container_statuses]
    for status in statuses:
        if status.state.waiting.reason == CRASH_LOOP:
            return f"crash-looping (container {status.name})"
    for status in statuses:
        if status.restart_count >= MAX_RESTARTS:
            return f"restarted {status.restart_count} times (container {status.name})"
    if lost_readiness(pod):
        return "failed readiness after being ready"
    return None


def lost_readiness(pod: pod_pb2.Pod) -> bool:
    if pod.status.phase != "Running":
        return False
    condition = podutil.ready_condition(pod)
    if condition is None or condition.status != "False" or condition.reason == POD_NOT_READY_REASON:
        return False
    since = times.as_datetime(condition.last_transition_time)
    if since is None:
        return False
    started = times.as_datetime(pod.status.start_time)
    return started is None or since > started
