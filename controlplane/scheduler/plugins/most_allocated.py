"""Score `MostAllocated`: prefer the fullest node that fits (bin-packing).

Kubernetes' formula, per resource, with the pod counted on the node:
`requested * 100 // allocatable` (requests capped at allocatable; 0 when
allocatable is 0), averaged over cpu and memory with equal weights. Packing
pods tightly leaves whole nodes empty, to drain or to power down.
"""

from __future__ import annotations

from controlplane.scheduler.framework import MAX_SCORE
from controlplane.scheduler.snapshot import NodeInfo, PodRequest


class MostAllocated:
    name = "MostAllocated"

    def score(self, pod: PodRequest, node: NodeInfo) -> int:
        after, have = node.nonzero_requested + pod.nonzero_requests, node.allocatable
        cpu = most_requested(after.cpu_millis, have.cpu_millis)
        memory = most_requested(after.memory_bytes, have.memory_bytes)
        return (cpu + memory) // 2


def most_requested(requested: int, allocatable: int) -> int:
    if allocatable == 0:
        return 0
    return min(requested, allocatable) * MAX_SCORE // allocatable
