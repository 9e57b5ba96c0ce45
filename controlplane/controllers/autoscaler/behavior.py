"""Scaling behavior: stabilization windows, rate-limit policies, min/max. Pure code.

Kubernetes' `normalizeDesiredReplicasWithBehaviors`, over history kept in the
HPA's status (so that it survives a control-plane failover):

- **Stabilization.** `status.recommendations` holds past recommendations as
  change points: each held from its time until the next one (the last one
  until now). A scale-up goes no higher than the lowest recommendation held
  within the scale-up window (default 0 s: none), a scale-down no lower than
  the highest held within the scale-down window (default 300 s), so a
  recommendation flapping down for a moment does not remove pods.
- **Rate limits.** `status.scale_events` holds the changes the controller made.
  Each policy allows, per `periodSeconds`, `value` pods or `value` percent of
  the replicas the period started with (current - added + removed within
  it); `selectPolicy` Max takes the policy allowing the biggest change, Min
  the smallest, Disabled forbids scaling that way.
- **Bounds.** minReplicas and maxReplicas; the `ScalingLimited` condition says
  when a rate or a bound held the count back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from google.protobuf import timestamp_pb2

from protos.corral.v1 import metrics_pb2


@dataclass(frozen=True)
class Reason:
    reason: str
    message: str


@dataclass(frozen=True)
class Normalized:
    replicas: int
    # The AbleToScale condition's reason: ScaleUpStabilized, ScaleDownStabilized or ReadyForNewScale.
    stabilization: Reason
    # True when a rate limit or a bound changed the stabilized recommendation.
    limited: bool
    limit: Reason


READY_FOR_NEW_SCALE = Reason("ReadyForNewScale", "recommended size matches current size")
WITHIN_RANGE = Reason("DesiredWithinRange", "the desired count is within the acceptable range")
TOO_MANY = Reason("TooManyReplicas", "the desired replica count is more than the maximum replica count")
TOO_FEW = Reason("TooFewReplicas", "the desired replica count is less than the minimum replica count")
UP_LIMIT = Reason("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
DOWN_LIMIT = Reason("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")


def at(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def normalize(
    desired: int,
    current: int,
    *,
    min_replicas: int,
    max_replicas: int,
    up: metrics_pb2.HPAScalingRules,
    down: metrics_pb2.HPAScalingRules,
    recommendations: Sequence[metrics_pb2.ScaleRecommendation],
    scale_events: Sequence[metrics_pb2.ScaleEvent],
    now: datetime,
) -> Normalized:
    """The replica count to set, from the metrics' recommendation `desired`."""
    stabilized = stabilize(
        desired,
        current,
        recommendations,
        up_window=up.stabilization_window_seconds,
        down_window=down.stabilization_window_seconds,
        now=now,
    )
    if stabilized == desired:
        stabilization = READY_FOR_NEW_SCALE
    elif desired >= current:
        stabilization = Reason(
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    else:
        stabilization = Reason(
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    replicas, limit = limit_rate(
        stabilized,
        current,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        up=up,
        down=down,
        scale_events=scale_events,
        now=now,
    )
    return Normalized(replicas, stabilization, replicas != stabilized, limit)


def stabilize(
    desired: int,
    current: int,
    recommendations: Sequence[metrics_pb2.ScaleRecommendation],
    *,
    up_window: int,
    down_window: int,
    now: datetime,
) -> int:
    """`desired`, held back by the recommendations of the stabilization windows."""
    up_cutoff = now - timedelta(seconds=up_window)
    down_cutoff = now - timedelta(seconds=down_window)
    up_bound = down_bound = desired
    for i, rec in enumerate(recommendations):
        held_until = at(recommendations[i + 1].time) if i + 1 < len(recommendations) else now
        if held_until > up_cutoff:
            up_bound = min(up_bound, rec.replicas)
        if held_until > down_cutoff:
            down_bound = max(down_bound, rec.replicas)
    return min(max(current, up_bound), down_bound)


def limit_rate(
    desired: int,
    current: int,
    *,
    min_replicas: int,
    max_replicas: int,
    up: metrics_pb2.HPAScalingRules,
    down: metrics_pb2.HPAScalingRules,
    scale_events: Sequence[metrics_pb2.ScaleEvent],
    now: datetime,
) -> tuple[int, Reason]:
    """`desired` within the scale rates and the bounds, and what limited it."""
    if desired > current:
        allowed = max(scale_up_limit(current, up, scale_events, now), current)
        ceiling, reason = (allowed, UP_LIMIT) if max_replicas > allowed else (max_replicas, TOO_MANY)
        if desired > ceiling:
            return ceiling, reason
    elif desired < current:
        allowed = min(scale_down_limit(current, down, scale_events, now), current)
        floor, reason = (allowed, DOWN_LIMIT) if min_replicas < allowed else (min_replicas, TOO_FEW)
        if desired < floor:
            return floor, reason
    return desired, WITHIN_RANGE


def scale_up_limit(
    current: int, rules: metrics_pb2.HPAScalingRules, events: Sequence[metrics_pb2.ScaleEvent], now: datetime
) -> int:
    """The most replicas the scale-up policies allow now."""
    if rules.select_policy == "Disabled" or not rules.policies:
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(current, policy.period_seconds, events, now)
        if policy.type == "Pods":
            proposals.append(start + policy.value)
        else:
            proposals.append(-(-start * (100 + policy.value) // 100))
    return min(proposals) if rules.select_policy == "Min" else max(proposals)


def scale_down_limit(
    current: int, rules: metrics_pb2.HPAScalingRules, events: Sequence[metrics_pb2.ScaleEvent], now: datetime
) -> int:
    """The fewest replicas the scale-down policies allow now."""
    if rules.select_policy == "Disabled" or not rules.policies:
        return current
    proposals = []
    for policy in rules.policies:
        start = _period_start(current, policy.period_seconds, events, now)
        if policy.type == "Pods":
            proposals.append(start - policy.value)
        else:
            proposals.append(math.trunc(Fraction(start * (100 - policy.value), 100)))
    return max(proposals) if rules.select_policy == "Min" else min(proposals)


def _period_start(current: int, period_seconds: int, events: Sequence[metrics_pb2.ScaleEvent], now: datetime) -> int:
    """The replicas there were when the policy's period began."""
    cutoff = now - timedelta(seconds=period_seconds)
    return current - sum(e.change for e in events if at(e.time) > cutoff)


# -- keeping the history ------------------------------------------------------------------------


def remember_recommendation(
    recommendations: Sequence[metrics_pb2.ScaleRecommendation],
    replicas: int,
    *,
    now: datetime,
    keep: int,
) -> list[metrics_pb2.ScaleRecommendation]:
    """The history with `replicas` recommended now, without what no window of `keep`
    seconds reaches any more."""
    history = list(recommendations)
    if not history or history[-1].replicas != replicas:
        rec = metrics_pb2.ScaleRecommendation(replicas=replicas)
        rec.time.FromDatetime(now)
        history.append(rec)
    cutoff = now - timedelta(seconds=keep)
    return [rec for i, rec in enumerate(history) if i + 1 == len(history) or at(history[i + 1].time) > cutoff]


def remember_scale(
    events: Sequence[metrics_pb2.ScaleEvent], change: int, *, now: datetime, keep: int
) -> list[metrics_pb2.ScaleEvent]:
    """The scale events with `change` added now, without those older than `keep` seconds."""
    cutoff = now - timedelta(seconds=keep)
    kept = [e for e in events if at(e.time) > cutoff]
    if change:
        event = metrics_pb2.ScaleEvent(change=change)
        event.time.FromDatetime(now)
        kept.append(event)
    return kept


def longest_window(up: metrics_pb2.HPAScalingRules, down: metrics_pb2.HPAScalingRules) -> int:
    return max(up.stabilization_window_seconds, down.stabilization_window_seconds)


def longest_period(up: metrics_pb2.HPAScalingRules, down: metrics_pb2.HPAScalingRules) -> int:
    return max((p.period_seconds for p in (*up.policies, *down.policies)), default=0)
