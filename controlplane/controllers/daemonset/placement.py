"""Which nodes a DaemonSet's pod belongs on (Kubernetes' NodeShouldRunDaemonPod). Pure.

A node should run the pod when it matches the template's nodeSelector and
required node affinity and every NoSchedule and NoExecute taint of the node is
tolerated by the pod (its tolerations plus the DaemonSet ones,
`protos.daemonsets.with_default_tolerations`). A pod already there may go on
running while the node matches and every NoExecute taint is tolerated: a node
that turns not-ready (tainted `not-ready:NoSchedule` and `:NoExecute`) keeps
its pod but gets no new one. A cordoned node gets one (the DaemonSet
tolerates `node.kubernetes.io/unschedulable`).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.scheduler.plugins.node_selector import affinity_matches
from controlplane.scheduler.plugins.taints import tolerated
from controlplane.scheduler.snapshot import LEAST_ALLOCATED, PodRequest, Taint, pod_request
from protos.corral.v1 import node_pb2, pod_pb2

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"


@dataclass(frozen=True)
class Fit:
    should_run: bool
    may_continue: bool


def template_request(spec: pod_pb2.PodSpec) -> PodRequest:
    """The scheduler's view of a pod from `spec` (with the DaemonSet tolerations already added)."""
    return pod_request(pod_pb2.Pod(spec=spec), default_strategy=LEAST_ALLOCATED)


def fit(node: node_pb2.Node, pod: PodRequest) -> Fit:
    name = node.metadata.name
    labels = node.metadata.labels
    selected = all(labels.get(k) == v for k, v in pod.node_selector.items())
    if not selected or not affinity_matches(pod.affinity_terms, labels, name):
        return Fit(should_run=False, may_continue=False)
    taints = [Taint(t.key, t.value, t.effect) for t in node.spec.taints]
    untolerated = {t.effect for t in taints if not tolerated(t, pod.tolerations)}
    return Fit(
        should_run=not untolerated & {NO_SCHEDULE, NO_EXECUTE},
        may_continue=NO_EXECUTE not in untolerated,
    )
