"""What an HPA's fields mean when unset: Kubernetes' autoscaling/v2 defaults.

The API server fills them in (`apply_defaults`) as Kubernetes does: minReplicas
1, one cpu metric at 80% utilization, and, when `behavior` is given, every rule
it leaves out. The controller reads the rules through `effective_rules`, so an
HPA stored without `behavior` scales with the default rules too. Pure code.
"""

from __future__ import annotations

from typing import Final

from protos.corral.v1 import metrics_pb2, workloads_pb2

DEFAULT_MIN_REPLICAS: Final = 1
DEFAULT_CPU_UTILIZATION: Final = 80
DEFAULT_SCALE_UP_WINDOW: Final = 0
DEFAULT_SCALE_DOWN_WINDOW: Final = 300
MAX_STABILIZATION_WINDOW: Final = 3600
# Kubernetes caps a policy's period at 30 minutes.
MAX_POLICY_PERIOD: Final = 1800

METRIC_TYPES: Final = ("Resource", "Pods")
RESOURCES: Final = ("cpu", "memory")
# The per-pod metrics corral serves for `type: Pods`.
POD_METRICS: Final = ("requests_per_second",)
TARGET_TYPES: Final = ("Utilization", "AverageValue")
POLICY_TYPES: Final = ("Pods", "Percent")
SELECT_POLICIES: Final = ("Max", "Min", "Disabled")
# What an HPA may scale: the message types, and their kinds (scaleTargetRef.kind).
TARGET_MESSAGES: Final = (workloads_pb2.Deployment, workloads_pb2.ReplicaSet, workloads_pb2.StatefulSet)
TARGET_KINDS: Final = tuple(m.DESCRIPTOR.name for m in TARGET_MESSAGES)


def default_scale_up() -> metrics_pb2.HPAScalingRules:
    """Double, or add 4 pods, every 15 s, whichever is more; no stabilization."""
    return metrics_pb2.HPAScalingRules(
        stabilization_window_seconds=DEFAULT_SCALE_UP_WINDOW,
        select_policy="Max",
        policies=[
            metrics_pb2.HPAScalingPolicy(type="Percent", value=100, period_seconds=15),
            metrics_pb2.HPAScalingPolicy(type="Pods", value=4, period_seconds=15),
        ],
    )


def default_scale_down() -> metrics_pb2.HPAScalingRules:
    """Any number of pods every 15 s, after 5 minutes of lower recommendations."""
    return metrics_pb2.HPAScalingRules(
        stabilization_window_seconds=DEFAULT_SCALE_DOWN_WINDOW,
        select_policy="Max",
        policies=[metrics_pb2.HPAScalingPolicy(type="Percent", value=100, period_seconds=15)],
    )


def default_cpu_metric() -> metrics_pb2.MetricSpec:
    return metrics_pb2.MetricSpec(
        type="Resource",
        resource=metrics_pb2.ResourceMetricSource(
            name="cpu", target=metrics_pb2.MetricTarget(type="Utilization", average_utilization=DEFAULT_CPU_UTILIZATION)
        ),
    )


def filled_rules(
    rules: metrics_pb2.HPAScalingRules | None, default: metrics_pb2.HPAScalingRules
) -> metrics_pb2.HPAScalingRules:
    """`rules` with every unset part taken from `default` (Kubernetes' GenerateHPAScale*Rules)."""
    if rules is None:
        return default
    filled = metrics_pb2.HPAScalingRules()
    filled.CopyFrom(rules)
    if not filled.HasField("stabilization_window_seconds"):
        filled.stabilization_window_seconds = default.stabilization_window_seconds
    if not filled.select_policy:
        filled.select_policy = default.select_policy
    if not filled.policies:
        filled.policies.extend(default.policies)
    return filled


def default_hpa(spec: metrics_pb2.HorizontalPodAutoscalerSpec) -> None:
    """Fill in an HPA spec's defaults in place."""
    if not spec.HasField("min_replicas"):
        spec.min_replicas = DEFAULT_MIN_REPLICAS
    if not spec.metrics:
        spec.metrics.append(default_cpu_metric())
    if spec.HasField("behavior"):
        up, down = effective_rules(spec)
        spec.behavior.scale_up.CopyFrom(up)
        spec.behavior.scale_down.CopyFrom(down)


def effective_rules(
    spec: metrics_pb2.HorizontalPodAutoscalerSpec,
) -> tuple[metrics_pb2.HPAScalingRules, metrics_pb2.HPAScalingRules]:
    """The scale-up and scale-down rules the controller applies."""
    behavior = spec.behavior
    up = filled_rules(behavior.scale_up if behavior.HasField("scale_up") else None, default_scale_up())
    down = filled_rules(behavior.scale_down if behavior.HasField("scale_down") else None, default_scale_down())
    return up, down


def min_replicas(spec: metrics_pb2.HorizontalPodAutoscalerSpec) -> int:
    return spec.min_replicas if spec.HasField("min_replicas") else DEFAULT_MIN_REPLICAS


def metric_specs(spec: metrics_pb2.HorizontalPodAutoscalerSpec) -> list[metrics_pb2.MetricSpec]:
    return list(spec.metrics) or [default_cpu_metric()]
