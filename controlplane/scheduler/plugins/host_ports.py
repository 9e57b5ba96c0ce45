"""Filter `HostPorts`: the pod's fixed host ports must be free on the node.

A host port is a (port, protocol) pair; the same number over TCP and UDP does
not conflict. `hostPort: 0` asks for no fixed port and never conflicts. The
reason names the ports in use: `host port 8080/TCP in use`.
"""

from __future__ import annotations

from controlplane.scheduler.framework import SUCCESS, Status
from controlplane.scheduler.snapshot import NodeInfo, PodRequest


class HostPorts:
    name = "HostPorts"

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        taken = sorted(pod.host_ports & node.host_ports)
        if not taken:
            return SUCCESS
        shown = ", ".join(f"{port}/{protocol}" for port, protocol in taken)
        return Status.reject(f"host port{'s' if len(taken) > 1 else ''} {shown} in use")
