"""Filter `Runtime`: the node must offer the pod's runtime ("docker", "process").

A pod's runtime is its `runtimeClassName` ("docker" when empty); a node offers
the runtimes its agent reports ("docker" when it reports none).
"""

from __future__ import annotations

from controlplane.scheduler.framework import SUCCESS, Status
from controlplane.scheduler.snapshot import NodeInfo, PodRequest


class Runtime:
    name = "Runtime"

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        if pod.runtime in node.runtimes:
            return SUCCESS
        return Status.reject(f"runtime {pod.runtime} not offered")
