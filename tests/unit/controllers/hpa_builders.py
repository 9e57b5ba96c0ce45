"""Builders for the HorizontalPodAutoscaler tests: pods, samples, HPAs, targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from controlplane.controllers.autoscaler.replicas import PodMetrics
from protos.corral.v1 import metrics_pb2, pod_pb2, workloads_pb2

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pod(
    name: str,
    *,
    cpu: str | None = "100m",
    memory: str | None = "100Mi",
    phase: str = "Running",
    ready: bool | None = True,
    started: float = 600.0,
    ready_changed: float = 590.0,
    terminating: bool = False,
    limit_cpu: str | None = None,
    now: datetime = NOW,
) -> pod_pb2.Pod:
    """A pod of the app `web`; `started` and `ready_changed` are seconds before `now`."""
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.metadata.labels["app"] = "web"
    container = p.spec.containers.add(name="web", image="httpd:2")
    if cpu is not None:
        container.resources.requests["cpu"] = cpu
    if memory is not None:
        container.resources.requests["memory"] = memory
    if limit_cpu is not None:
        container.resources.limits["cpu"] = limit_cpu
    p.status.phase = phase
    if phase != "Pending":
        p.status.start_time.FromDatetime(now - timedelta(seconds=started))
    if ready is not None:
        condition = p.status.conditions.add(type="Ready", status="True" if ready else "False")
        condition.last_transition_time.FromDatetime(now - timedelta(seconds=ready_changed))
    if terminating:
        p.metadata.deletion_timestamp.FromDatetime(now)
    return p


def pods(n: int, **kwargs: object) -> list[pod_pb2.Pod]:
    return [pod(f"web-{i}", **kwargs) for i in range(n)]  # type: ignore[arg-type]


def usage(name: str, *, cpu: int = 0, memory: int = 0) -> metrics_pb2.PodUsage:
    sample = metrics_pb2.PodUsage(namespace="default", name=name, uid=f"uid-{name}")
    sample.containers.add(name="web", cpu_millis=cpu, memory_bytes=memory)
    return sample


def samples(
    cpu: Mapping[str, int] | None = None,
    memory: Mapping[str, int] | None = None,
    rps: Mapping[str, float] | None = None,
) -> PodMetrics:
    names = set(cpu or {}) | set(memory or {})
    return PodMetrics(
        usage={n: usage(n, cpu=(cpu or {}).get(n, 0), memory=(memory or {}).get(n, 0)) for n in names},
        requests_per_second=dict(rps or {}),
    )


def cpu_each(values: Sequence[int]) -> dict[str, int]:
    """cpu millicores for web-0, web-1, …"""
    return {f"web-{i}": v for i, v in enumerate(values)}


def cpu_metric(percent: int) -> metrics_pb2.MetricSpec:
    return metrics_pb2.MetricSpec(
        type="Resource",
        resource=metrics_pb2.ResourceMetricSource(
            name="cpu", target=metrics_pb2.MetricTarget(type="Utilization", average_utilization=percent)
        ),
    )


def value_metric(resource: str, value: str) -> metrics_pb2.MetricSpec:
    return metrics_pb2.MetricSpec(
        type="Resource",
        resource=metrics_pb2.ResourceMetricSource(
            name=resource, target=metrics_pb2.MetricTarget(type="AverageValue", average_value=value)
        ),
    )


def rps_metric(value: str) -> metrics_pb2.MetricSpec:
    return metrics_pb2.MetricSpec(
        type="Pods",
        pods=metrics_pb2.PodsMetricSource(
            metric=metrics_pb2.MetricIdentifier(name="requests_per_second"),
            target=metrics_pb2.MetricTarget(type="AverageValue", average_value=value),
        ),
    )


@dataclass
class Rules:
    window: int | None = None
    select: str = ""
    # (type, value, periodSeconds)
    policies: list[tuple[str, int, int]] = field(default_factory=list)

    def message(self) -> metrics_pb2.HPAScalingRules:
        rules = metrics_pb2.HPAScalingRules(select_policy=self.select)
        if self.window is not None:
            rules.stabilization_window_seconds = self.window
        for type_, value, period in self.policies:
            rules.policies.add(type=type_, value=value, period_seconds=period)
        return rules


def hpa(
    *,
    low: int = 1,
    high: int = 10,
    metrics: Sequence[metrics_pb2.MetricSpec] | None = None,
    up: Rules | None = None,
    down: Rules | None = None,
    kind: str = "Deployment",
    generation: int = 1,
) -> metrics_pb2.HorizontalPodAutoscaler:
    h = metrics_pb2.HorizontalPodAutoscaler(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
    h.metadata.name, h.metadata.namespace, h.metadata.uid = "web", "default", "uid-hpa"
    h.metadata.generation = generation
    h.spec.scale_target_ref.kind, h.spec.scale_target_ref.name = kind, "web"
    h.spec.min_replicas, h.spec.max_replicas = low, high
    h.spec.metrics.extend(metrics if metrics is not None else [cpu_metric(50)])
    if up is not None:
        h.spec.behavior.scale_up.CopyFrom(up.message())
    if down is not None:
        h.spec.behavior.scale_down.CopyFrom(down.message())
    return h


def deployment(replicas: int) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace, d.metadata.uid = "web", "default", "uid-web"
    d.spec.replicas = replicas
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    container = d.spec.template.spec.containers.add(name="web", image="httpd:2")
    container.resources.requests["cpu"] = "100m"
    return d


def condition(
    h: metrics_pb2.HorizontalPodAutoscaler | metrics_pb2.HorizontalPodAutoscalerStatus, type_: str
) -> tuple[str, str]:
    status = h.status if isinstance(h, metrics_pb2.HorizontalPodAutoscaler) else h
    for c in status.conditions:
        if c.type == type_:
            return c.status, c.reason
    return "", ""
