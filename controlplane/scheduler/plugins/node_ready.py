"""Filter `NodeReady`: only nodes that are Ready and not cordoned take new pods.

A node whose `Ready` condition is not "True" is rejected with "node not ready";
a cordoned node (`spec.unschedulable`) with "node is cordoned", unless the pod
tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint that
Kubernetes puts on a cordoned node (as a DaemonSet's pods do). A node that is
both reports both.
"""

from __future__ import annotations

from controlplane.scheduler.framework import SUCCESS, Status
from controlplane.scheduler.plugins.taints import tolerated
from controlplane.scheduler.snapshot import NodeInfo, PodRequest, Taint
from protos.wellknown import TAINT_UNSCHEDULABLE

NOT_READY = "node not ready"
CORDONED = "node is cordoned"
CORDON_TAINT = Taint(TAINT_UNSCHEDULABLE, "", "NoSchedule")


class NodeReady:
    name = "NodeReady"

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        reasons: list[str] = []
        if not node.ready:
            reasons.append(NOT_READY)
        if node.unschedulable and not tolerated(CORDON_TAINT, pod.tolerations):
            reasons.append(CORDONED)
        return Status(tuple(reasons)) if reasons else SUCCESS
