"""Filter `ResourcesFit`: the pod's requests fit in what the node has left.

What is left is allocatable minus what the pods already bound to the node
request. Each shortfall is its own reason ("insufficient cpu", "insufficient
memory"), so a node short of both counts under both. A node that reports a
`pods` allocatable also refuses pods beyond it ("too many pods"). A pod that
requests nothing fits anywhere (as in Kubernetes).
"""

from __future__ import annotations

from controlplane.scheduler.framework import SUCCESS, Status
from controlplane.scheduler.snapshot import NodeInfo, PodRequest

INSUFFICIENT_CPU = "insufficient cpu"
INSUFFICIENT_MEMORY = "insufficient memory"
TOO_MANY_PODS = "too many pods"


class ResourcesFit:
    name = "ResourcesFit"

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        reasons = [reason for reason, short in _shortfalls(pod, node) if short]
        return Status(tuple(reasons)) if reasons else SUCCESS


def _shortfalls(pod: PodRequest, node: NodeInfo) -> tuple[tuple[str, bool], ...]:
    want, used, have = pod.requests, node.requested, node.allocatable
    full = node.max_pods is not None and node.pod_count + 1 > node.max_pods
    return (
        (TOO_MANY_PODS, full),
        (INSUFFICIENT_CPU, _exceeds(want.cpu_millis, used.cpu_millis, have.cpu_millis)),
        (INSUFFICIENT_MEMORY, _exceeds(want.memory_bytes, used.memory_bytes, have.memory_bytes)),
    )


def _exceeds(wanted: int, used: int, allocatable: int) -> bool:
    return wanted > 0 and wanted > allocatable - used
