"""Score `LeastAllocated`: prefer the node with the most room left (spread load).

Kubernetes' formula, per resource, with the pod counted on the node:
`(allocatable - requested) * 100 // allocatable` (0 when allocatable is 0 or
the requests exceed it), averaged over cpu and memory with equal weights.
Requests here are the scoring requests (`nonzero_requests`), so pods that set
none still weigh something.
"""

from __future__ import annotations

from controlplane.scheduler.framework import MAX_SCORE
from controlplane.scheduler.snapshot import NodeInfo, PodRequest


class LeastAllocated:
    name = "LeastAllocated"

    def score(self, pod: PodRequest, node: NodeInfo) -> int:
        after, have = node.nonzero_requested + pod.nonzero_requests, node.allocatable
        cpu = least_requested(after.cpu_millis, have.cpu_millis)
        memory = least_requested(after.memory_bytes, have.memory_bytes)
        return (cpu + memory) // 2


def least_requested(requested: int, allocatable: int) -> int:
    if allocatable == 0 or requested > allocatable:
        return 0
    return (allocatable - requested) * MAX_SCORE // allocatable
