"""HPA reconciliation, pure: an HPA, its target, the target's pods and their metrics in,
what to write out.

`reconcile(hpa, target, pods, metrics, now=…)` is Kubernetes'
`reconcileAutoscaler`:

1. No target: `AbleToScale=False` (FailedGetScale). A target at 0 replicas
   has autoscaling switched off (`ScalingActive=False`, ScalingDisabled).
2. A target outside [minReplicas, maxReplicas] is brought to the bound.
3. Otherwise every metric proposes a count (`replicas.propose`); the highest
   wins. When every metric fails, or some fail and the others would scale
   down, nothing changes (`ScalingActive=False` with the first failure's
   reason; FailedComputeMetricsReplicas). The proposal is then stabilized,
   rate-limited and bounded (`behavior.normalize`) and remembered in the
   status.
4. A changed count is written to the target's `spec.replicas`, with a
   `SuccessfulRescale` event: `New size: 4; reason: cpu resource utilization
   (percentage of request) above target`.

The returned status carries the conditions (AbleToScale, ScalingActive,
ScalingLimited), the metrics' current values and the history the behavior
needs; it is None when nothing in it changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from controlplane.apiserver import labels
from controlplane.controllers.autoscaler import behavior
from controlplane.controllers.autoscaler.replicas import Failure, PodMetrics, Proposal, Tuning, propose
from protos import autoscaling
from protos.conditions import set_condition
from protos.corral.v1 import metrics_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind

Target = workloads_pb2.Deployment | workloads_pb2.ReplicaSet | workloads_pb2.StatefulSet
Status = metrics_pb2.HorizontalPodAutoscalerStatus

ABLE_TO_SCALE = "AbleToScale"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class HpaActions:
    # The target's new spec.replicas, or None to leave it as it is.
    scale_to: int | None = None
    # Why it scales, as the SuccessfulRescale event says it.
    reason: str = ""
    # The HPA's new status, or None when it is unchanged.
    status: Status | None = None
    events: tuple[Event, ...] = ()


@dataclass
class _Computed:
    desired: int
    name: str
    statuses: list[metrics_pb2.MetricStatus]
    failures: list[Failure]


def target_ref(hpa: metrics_pb2.HorizontalPodAutoscaler) -> str:
    """`deployments.apps "web"`, as errors about the target name it."""
    ref = hpa.spec.scale_target_ref
    try:
        info = by_kind(ref.kind)
    except ValueError:
        return f'{ref.kind.lower()} "{ref.name}"'
    plural = f"{info.plural}.{info.group}" if info.group else info.plural
    return f'{plural} "{ref.name}"'


def selected_pods(target: Target, pods: Iterable[pod_pb2.Pod]) -> list[pod_pb2.Pod]:
    """The pods of the target's namespace its selector matches (none for an empty selector)."""
    sel = target.spec.selector
    if not sel.match_labels and not sel.match_expressions:
        return []
    selector = labels.from_label_selector(sel)
    namespace = target.metadata.namespace
    return [p for p in pods if p.metadata.namespace == namespace and selector.matches(p.metadata.labels)]


def reconcile(
    hpa: metrics_pb2.HorizontalPodAutoscaler,
    target: Target | None,
    pods: Sequence[pod_pb2.Pod],
    metrics: PodMetrics,
    *,
    now: datetime,
    tuning: Tuning | None = None,
) -> HpaActions:
    """What to write for `hpa`; `pods` are the target's (see `selected_pods`)."""
    status = Status()
    status.CopyFrom(hpa.status)
    status.observed_generation = hpa.metadata.generation
    conditions = status.conditions
    if target is None:
        error = f"{target_ref(hpa)} not found"
        set_condition(
            conditions,
            ABLE_TO_SCALE,
            "False",
            reason="FailedGetScale",
            message=f"the HPA controller was unable to get the target's current scale: {error}",
            now=now,
        )
        return _actions(hpa, status, [Event("Warning", "FailedGetScale", error)])
    set_condition(
        conditions,
        ABLE_TO_SCALE,
        "True",
        reason="SucceededGetScale",
        message="the HPA controller was able to get the target's current scale",
        now=now,
    )
    current = target.spec.replicas
    status.current_replicas = current
    up, down = autoscaling.effective_rules(hpa.spec)
    low, high = autoscaling.min_replicas(hpa.spec), hpa.spec.max_replicas
    if current == 0:
        status.desired_replicas = 0
        del status.current_metrics[:]
        set_condition(
            conditions,
            SCALING_ACTIVE,
            "False",
            reason="ScalingDisabled",
            message="scaling is disabled since the replica count of the target is zero",
            now=now,
        )
        return _actions(hpa, status, [])
    events: list[Event] = []
    if current > high or current < low:
        above = current > high
        desired = high if above else low
        reason = (
            "Current number of replicas above Spec.MaxReplicas"
            if above
            else "Current number of replicas below Spec.MinReplicas"
        )
        bound = behavior.TOO_MANY if above else behavior.TOO_FEW
        set_condition(conditions, SCALING_LIMITED, "True", reason=bound.reason, message=bound.message, now=now)
    else:
        computed = _compute(hpa, current, pods, metrics, now=now, tuning=tuning or Tuning())
        del status.current_metrics[:]
        status.current_metrics.extend(computed.statuses)
        events += [Event("Warning", f.reason, f.message) for f in computed.failures]
        if computed.failures and (len(computed.failures) == len(computed.statuses) or computed.desired < current):
            first = computed.failures[0]
            set_condition(
                conditions,
                SCALING_ACTIVE,
                "False",
                reason=first.reason,
                message=f"the HPA was unable to compute the replica count: {first.message}",
                now=now,
            )
            events.append(
                Event(
                    "Warning",
                    "FailedComputeMetricsReplicas",
                    f"invalid metrics ({len(computed.failures)} invalid out of "
                    f"{len(computed.statuses)}), first error is: {first.message}",
                )
            )
            return _actions(hpa, status, events)
        set_condition(
            conditions,
            SCALING_ACTIVE,
            "True",
            reason="ValidMetricFound",
            message=f"the HPA was able to successfully calculate a replica count from {computed.name}",
            now=now,
        )
        desired, reason = _normalize(status, computed, current, low, high, up, down, now=now)
    rescale = desired != current
    scale_events = behavior.remember_scale(
        status.scale_events, desired - current, now=now, keep=behavior.longest_period(up, down)
    )
    del status.scale_events[:]
    status.scale_events.extend(scale_events)
    status.desired_replicas = desired
    if not rescale:
        return _actions(hpa, status, events)
    status.last_scale_time.FromDatetime(now)
    set_condition(
        conditions,
        ABLE_TO_SCALE,
        "True",
        reason="SucceededRescale",
        message=f"the HPA controller was able to update the target scale to {desired}",
        now=now,
    )
    events.append(Event("Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}"))
    return HpaActions(scale_to=desired, reason=reason, status=status, events=tuple(events))


def rescale_failed(
    hpa: metrics_pb2.HorizontalPodAutoscaler, actions: HpaActions, error: str, *, now: datetime
) -> tuple[Status, Event]:
    """The status and event to write when writing the target's replicas failed."""
    status = Status()
    status.CopyFrom(actions.status or hpa.status)
    status.desired_replicas = status.current_replicas
    status.last_scale_time.CopyFrom(hpa.status.last_scale_time)
    if not hpa.status.HasField("last_scale_time"):
        status.ClearField("last_scale_time")
    del status.scale_events[:]
    status.scale_events.extend(hpa.status.scale_events)
    set_condition(
        status.conditions,
        ABLE_TO_SCALE,
        "False",
        reason="FailedUpdateScale",
        message=f"the HPA controller was unable to update the target scale: {error}",
        now=now,
    )
    event = Event("Warning", "FailedRescale", f"New size: {actions.scale_to}; reason: {actions.reason}; error: {error}")
    return status, event


def _compute(
    hpa: metrics_pb2.HorizontalPodAutoscaler,
    current: int,
    pods: Sequence[pod_pb2.Pod],
    metrics: PodMetrics,
    *,
    now: datetime,
    tuning: Tuning,
) -> _Computed:
    """Every metric's proposal; the highest wins (the first of equals names it)."""
    computed = _Computed(0, "", [], [])
    for metric in autoscaling.metric_specs(hpa.spec):
        result = propose(metric, current, pods, metrics, now=now, tuning=tuning)
        if isinstance(result, Proposal):
            computed.statuses.append(result.status)
            if not computed.name or result.replicas > computed.desired:
                computed.desired, computed.name = result.replicas, result.name
        else:
            computed.statuses.append(_unknown(metric))
            computed.failures.append(result)
    return computed


def _normalize(
    status: Status,
    computed: _Computed,
    current: int,
    low: int,
    high: int,
    up: metrics_pb2.HPAScalingRules,
    down: metrics_pb2.HPAScalingRules,
    *,
    now: datetime,
) -> tuple[int, str]:
    """Stabilize and limit the metrics' recommendation; remember it. Returns the count
    and the reason a change would give."""
    history = list(status.recommendations)
    if not history:
        # As Kubernetes does for an HPA it has not seen: the current count counts as
        # recommended now, so a new HPA does not scale down before the window has passed.
        seed = metrics_pb2.ScaleRecommendation(replicas=current)
        seed.time.FromDatetime(now)
        history.append(seed)
    normalized = behavior.normalize(
        computed.desired,
        current,
        min_replicas=low,
        max_replicas=high,
        up=up,
        down=down,
        recommendations=history,
        scale_events=status.scale_events,
        now=now,
    )
    remembered = behavior.remember_recommendation(
        history, computed.desired, now=now, keep=behavior.longest_window(up, down)
    )
    del status.recommendations[:]
    status.recommendations.extend(remembered)
    set_condition(
        status.conditions,
        ABLE_TO_SCALE,
        "True",
        reason=normalized.stabilization.reason,
        message=normalized.stabilization.message,
        now=now,
    )
    set_condition(
        status.conditions,
        SCALING_LIMITED,
        "True" if normalized.limited else "False",
        reason=normalized.limit.reason,
        message=normalized.limit.message,
        now=now,
    )
    reason = f"{computed.name} above target" if computed.desired > current else "All metrics below target"
    return normalized.replicas, reason


def _unknown(metric: metrics_pb2.MetricSpec) -> metrics_pb2.MetricStatus:
    """A metric's status entry when its value is not known (shown as <unknown>)."""
    status = metrics_pb2.MetricStatus(type=metric.type)
    if metric.type == "Resource":
        status.resource.name = metric.resource.name
    elif metric.type == "Pods":
        status.pods.metric.CopyFrom(metric.pods.metric)
    return status


def _actions(hpa: metrics_pb2.HorizontalPodAutoscaler, status: Status, events: list[Event]) -> HpaActions:
    return HpaActions(status=None if status == hpa.status else status, events=tuple(events))
