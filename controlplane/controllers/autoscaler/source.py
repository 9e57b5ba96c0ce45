"""Where the autoscaler's numbers come from: a `MetricsSource` (the control plane's
in-memory metrics store, or a fake in tests), read once per sync into the
plain `PodMetrics` the pure core takes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from controlplane.controllers.autoscaler.replicas import PodMetrics
from protos import pods as podutil
from protos.corral.v1 import metrics_pb2, pod_pb2


class MetricsSource(Protocol):
    """Recent samples per pod; `now` is the control plane's monotonic clock."""

    def pod_usage(self, namespace: str, name: str, *, now: float) -> metrics_pb2.PodUsage | None:
        """The pod's latest cpu and memory sample, or None when there is no recent one."""
        ...

    def pod_requests_per_second(self, namespace: str, name: str, *, now: float) -> float | None:
        """New connections per second the node proxies sent the pod, or None when unknown."""
        ...


def collect(
    source: MetricsSource, pods: Iterable[pod_pb2.Pod], metrics: Sequence[metrics_pb2.MetricSpec], *, now: float
) -> PodMetrics:
    """The samples the HPA's metrics need, for the pods that count (not finished, not
    being deleted). A sample of an earlier pod of the same name (another uid) is none."""
    want_usage = any(m.type == "Resource" for m in metrics)
    want_rps = any(m.type == "Pods" for m in metrics)
    usage: dict[str, metrics_pb2.PodUsage] = {}
    rps: dict[str, float] = {}
    for pod in pods:
        if not podutil.is_active(pod):
            continue
        m = pod.metadata
        if want_usage:
            sample = source.pod_usage(m.namespace, m.name, now=now)
            if sample is not None and (not sample.uid or sample.uid == m.uid):
                usage[m.name] = sample
        if want_rps:
            value = source.pod_requests_per_second(m.namespace, m.name, now=now)
            if value is not None:
                rps[m.name] = value
    return PodMetrics(usage=usage, requests_per_second=rps)
