"""The replica calculator: how many pods one metric asks for. Pure code.

Kubernetes' `ReplicaCalculator`, metric by metric:

- Resource, Utilization: utilization = sum of usage * 100 / sum of requests over the
  pods with a sample (an integer percent, as Kubernetes truncates it), ratio =
  utilization / averageUtilization. A selected pod without a request (or a
  limit, which stands for it) for the resource in any container makes the
  metric fail.
- Resource, AverageValue: ratio = average usage per pod / averageValue.
- Pods (`requests_per_second`): ratio = average per pod / averageValue.

Proposal: ceil(ratio * pods counted); within the tolerance (|ratio - 1| <=
0.1) the current replica count stays. Pods are treated conservatively:

- being deleted, Failed or Succeeded: ignored;
- Pending, and for cpu also not Ready (and never ready since it started) or
  started less than 30 s ago: left out of the ratio, and counted at 0 when the
  ratio says scale up (their load is not known yet);
- Running without a sample: counted at 0 on a scale-up and at 100% of the
  request (Utilization, or the target itself for a value) on a scale-down;
- when those assumptions turn the direction around, or bring the ratio within
  the tolerance, nothing changes.

The arithmetic is exact (`Fraction`): 88% of a target of 80% on 10 pods is 11
pods, not 12.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction

from protos import pods as podutil
from protos import quantity, times
from protos.corral.v1 import metrics_pb2, pod_pb2

Values = dict[str, Fraction]


@dataclass(frozen=True)
class Tuning:
    """The calculator's knobs (Kubernetes' controller-manager flags)."""

    # |ratio - 1| at or below this changes nothing.
    tolerance: float = 0.1
    # A pod's cpu sample is not trusted this long after the pod started.
    cpu_initialization_seconds: float = 30.0
    # An unready pod whose readiness last changed this soon after it started has never been ready.
    readiness_delay_seconds: float = 30.0


@dataclass(frozen=True)
class PodMetrics:
    """What the metrics source had for the selected pods at this sync, by pod name
    (a pod absent from a map has no sample)."""

    usage: Mapping[str, metrics_pb2.PodUsage] = field(default_factory=dict)
    requests_per_second: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Proposal:
    replicas: int
    status: metrics_pb2.MetricStatus
    # How events name the metric: "cpu resource utilization (percentage of request)".
    name: str


@dataclass(frozen=True)
class Failure:
    # FailedGetResourceMetric or FailedGetPodsMetric.
    reason: str
    message: str


@dataclass(frozen=True)
class _Groups:
    values: Values
    unready: tuple[str, ...]
    missing: tuple[str, ...]


class _Unavailable(Exception):
    """A metric that cannot be computed (no pods, no samples, no request)."""


def metric_name(metric: metrics_pb2.MetricSpec) -> str:
    if metric.type == "Pods":
        return f"pods metric {metric.pods.metric.name}"
    if metric.resource.target.type == "Utilization":
        return f"{metric.resource.name} resource utilization (percentage of request)"
    return f"{metric.resource.name} resource"


def propose(
    metric: metrics_pb2.MetricSpec,
    current: int,
    pods: Sequence[pod_pb2.Pod],
    metrics: PodMetrics,
    *,
    now: datetime,
    tuning: Tuning,
) -> Proposal | Failure:
    """The replica count `metric` asks for, or why it cannot say."""
    if metric.type == "Resource":
        resource = metric.resource
        what = "utilization" if resource.target.type == "Utilization" else "usage"
        try:
            return _resource(metric, current, pods, metrics, now=now, tuning=tuning)
        except _Unavailable as e:
            return Failure("FailedGetResourceMetric", f"failed to get {resource.name} {what}: {e}")
    if metric.type == "Pods":
        try:
            return _pods_metric(metric, current, pods, metrics, now=now, tuning=tuning)
        except _Unavailable as e:
            return Failure("FailedGetPodsMetric", f"failed to get pods metric value: {e}")
    return Failure("InvalidMetricSourceType", f'unknown metric source type "{metric.type}"')


# -- metric kinds -------------------------------------------------------------------------------


def _resource(
    metric: metrics_pb2.MetricSpec,
    current: int,
    pods: Sequence[pod_pb2.Pod],
    metrics: PodMetrics,
    *,
    now: datetime,
    tuning: Tuning,
) -> Proposal:
    resource = metric.resource
    utilization = resource.target.type == "Utilization"
    requests = _requests(pods, resource.name) if utilization else {}
    samples = {name: _usage(usage, resource.name) for name, usage in metrics.usage.items()}
    if not samples:
        raise _Unavailable(
            f"unable to get metrics for resource {resource.name}: no metrics returned from resource metrics API"
        )
    groups = _group(pods, samples, cpu=resource.name == "cpu", now=now, tuning=tuning)
    status = metrics_pb2.MetricStatus(
        type="Resource",
        resource=metrics_pb2.ResourceMetricStatus(
            name=resource.name,
            current=metrics_pb2.MetricValueStatus(average_value=_shown(resource.name, _average(groups.values))),
        ),
    )
    if not utilization:
        target = quantity.parse_quantity(resource.target.average_value) * (1000 if resource.name == "cpu" else 1)
        replicas = _plain_replicas(current, groups, target, tuning=tuning)
        return Proposal(replicas, status, metric_name(metric))
    target_percent = resource.target.average_utilization

    def ratio(values: Mapping[str, Fraction]) -> Fraction:
        return Fraction(_utilization(values, requests), target_percent)

    fallback = max(100, target_percent)
    replicas = _replicas(current, groups, ratio, lambda pod: requests[pod] * fallback / 100, tuning=tuning)
    status.resource.current.average_utilization = _utilization(groups.values, requests)
    return Proposal(replicas, status, metric_name(metric))


def _pods_metric(
    metric: metrics_pb2.MetricSpec,
    current: int,
    pods: Sequence[pod_pb2.Pod],
    metrics: PodMetrics,
    *,
    now: datetime,
    tuning: Tuning,
) -> Proposal:
    name = metric.pods.metric.name
    samples = {pod: Fraction(value) for pod, value in metrics.requests_per_second.items()}
    if not samples:
        raise _Unavailable(f"unable to get metric {name}: no metrics returned for the selected pods")
    groups = _group(pods, samples, cpu=False, now=now, tuning=tuning)
    target = quantity.parse_quantity(metric.pods.target.average_value)
    replicas = _plain_replicas(current, groups, target, tuning=tuning)
    identifier = metrics_pb2.MetricIdentifier()
    identifier.CopyFrom(metric.pods.metric)
    status = metrics_pb2.MetricStatus(
        type="Pods",
        pods=metrics_pb2.PodsMetricStatus(
            metric=identifier,
            current=metrics_pb2.MetricValueStatus(average_value=format_milli(_average(groups.values) * 1000)),
        ),
    )
    return Proposal(replicas, status, metric_name(metric))


# -- the calculation ----------------------------------------------------------------------------


def _group(
    pods: Sequence[pod_pb2.Pod], samples: Mapping[str, Fraction], *, cpu: bool, now: datetime, tuning: Tuning
) -> _Groups:
    """Kubernetes' groupPods: measured pods' values, unready pods, pods missing a sample."""
    if not pods:
        raise _Unavailable("no pods returned by selector while calculating replica count")
    values: Values = {}
    unready: list[str] = []
    missing: list[str] = []
    for pod in pods:
        name = pod.metadata.name
        if podutil.is_terminating(pod) or podutil.is_terminal(pod):
            continue
        if pod.status.phase == "Pending":
            unready.append(name)
            continue
        value = samples.get(name)
        if value is None:
            missing.append(name)
        elif cpu and cpu_sample_unready(pod, now, tuning):
            unready.append(name)
        else:
            values[name] = value
    if not values:
        raise _Unavailable("did not receive metrics for targeted pods (pods might be unready)")
    return _Groups(values, tuple(unready), tuple(missing))


def cpu_sample_unready(pod: pod_pb2.Pod, now: datetime, tuning: Tuning) -> bool:
    """Whether a pod's cpu sample is left out: no Ready condition or start time, started
    within the initialization period, or not ready and never ready since it started."""
    condition = podutil.ready_condition(pod)
    started = times.as_datetime(pod.status.start_time)
    if condition is None or started is None:
        return True
    if now < started + timedelta(seconds=tuning.cpu_initialization_seconds):
        return True
    if condition.status == "True":
        return False
    changed = times.as_datetime(condition.last_transition_time)
    return changed is None or changed < started + timedelta(seconds=tuning.readiness_delay_seconds)


def _plain_replicas(current: int, groups: _Groups, target: Fraction, *, tuning: Tuning) -> int:
    """Kubernetes' calcPlainMetricReplicas: the average per pod against a target value."""
    if target <= 0:
        raise _Unavailable(f"the target value must be positive, got {target}")

    def ratio(values: Mapping[str, Fraction]) -> Fraction:
        return _average(values) / target

    return _replicas(current, groups, ratio, lambda _pod: target, tuning=tuning)


def _replicas(
    current: int,
    groups: _Groups,
    ratio_of: Callable[[Mapping[str, Fraction]], Fraction],
    scale_down_value: Callable[[str], Fraction],
    *,
    tuning: Tuning,
) -> int:
    tolerance = Fraction(str(tuning.tolerance))
    ratio = ratio_of(groups.values)
    scale_up_with_unready = bool(groups.unready) and ratio > 1
    if not scale_up_with_unready and not groups.missing:
        if abs(1 - ratio) <= tolerance:
            return current
        return math.ceil(ratio * len(groups.values))
    values = dict(groups.values)
    if groups.missing and ratio < 1:
        values.update((pod, scale_down_value(pod)) for pod in groups.missing)
    elif groups.missing and ratio > 1:
        values.update((pod, Fraction(0)) for pod in groups.missing)
    if scale_up_with_unready:
        values.update((pod, Fraction(0)) for pod in groups.unready)
    new_ratio = ratio_of(values)
    if abs(1 - new_ratio) <= tolerance or (ratio < 1 < new_ratio) or (new_ratio < 1 < ratio):
        return current
    proposed = math.ceil(new_ratio * len(values))
    if (new_ratio < 1 and proposed > current) or (new_ratio > 1 and proposed < current):
        return current
    return proposed


def _utilization(values: Mapping[str, Fraction], requests: Mapping[str, Fraction]) -> int:
    used = sum((values[pod] for pod in values if pod in requests), Fraction(0))
    requested = sum((requests[pod] for pod in values if pod in requests), Fraction(0))
    if requested == 0:
        raise _Unavailable("no metrics returned matched known pods")
    return math.floor(used * 100 / requested)


def _requests(pods: Sequence[pod_pb2.Pod], resource: str) -> dict[str, Fraction]:
    """Each pod's request for `resource`, summed over its containers (cpu in millicores)."""
    requests: dict[str, Fraction] = {}
    for pod in pods:
        total = Fraction(0)
        for container in pod.spec.containers:
            # A limit without a request stands for the request (Kubernetes defaults one to the other).
            text = container.resources.requests.get(resource) or container.resources.limits.get(resource)
            if text is None:
                raise _Unavailable(
                    f"missing request for {resource} in container {container.name} of Pod {pod.metadata.name}"
                )
            total += quantity.parse_quantity(text) * (1000 if resource == "cpu" else 1)
        requests[pod.metadata.name] = total
    return requests


def _usage(usage: metrics_pb2.PodUsage, resource: str) -> Fraction:
    if resource == "cpu":
        return Fraction(sum(c.cpu_millis for c in usage.containers))
    return Fraction(sum(c.memory_bytes for c in usage.containers))


def _average(values: Mapping[str, Fraction]) -> Fraction:
    return sum(values.values(), Fraction(0)) / len(values) if values else Fraction(0)


# -- showing values -----------------------------------------------------------------------------


def format_milli(millis: Fraction | int) -> str:
    """A quantity from thousandths: 1500 → "1500m", 2000 → "2"."""
    whole = math.floor(millis)
    return str(whole // 1000) if whole % 1000 == 0 else f"{whole}m"


def format_bytes(amount: Fraction | int) -> str:
    """Bytes, in the largest binary unit that is exact: 104857600 → "100Mi"."""
    whole = math.floor(amount)
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if whole and whole % size == 0:
            return f"{whole // size}{suffix}"
    return str(whole)


def _shown(resource: str, value: Fraction) -> str:
    return format_milli(value) if resource == "cpu" else format_bytes(value)
