"""HPA reconciliation (`autoscaler.reconcile`): decisions, conditions, events, and behavior over time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.controllers.autoscaler.reconcile import (
    Event,
    HpaActions,
    reconcile,
    rescale_failed,
    selected_pods,
)
from controlplane.controllers.autoscaler.replicas import PodMetrics
from protos.corral.v1 import metrics_pb2, workloads_pb2
from tests.unit.controllers.hpa_builders import (
    NOW,
    Rules,
    condition,
    cpu_each,
    cpu_metric,
    deployment,
    hpa,
    pod,
    pods,
    rps_metric,
    samples,
    value_metric,
)

CPU_REASON = "cpu resource utilization (percentage of request) above target"


class Sim:
    """An HPA and its Deployment over time: each step reconciles and applies the actions."""

    def __init__(self, h: metrics_pb2.HorizontalPodAutoscaler, replicas: int) -> None:
        self.hpa = h
        self.target = deployment(replicas)
        self.events: list[tuple[float, Event]] = []

    @property
    def replicas(self) -> int:
        return self.target.spec.replicas

    def step(self, at: float, percent: int) -> HpaActions:
        """Reconcile `at` seconds after NOW, every pod using `percent` of its cpu request (100m)."""
        now = NOW + timedelta(seconds=at)
        selected = pods(self.replicas, now=now)
        actions = reconcile(self.hpa, self.target, selected, samples(cpu_each([percent] * self.replicas)), now=now)
        if actions.status is not None:
            self.hpa.status.CopyFrom(actions.status)
        if actions.scale_to is not None:
            self.target.spec.replicas = actions.scale_to
        self.events += [(at, e) for e in actions.events]
        return actions

    def run(self, steps: list[tuple[float, int]]) -> list[int]:
        """The replica count after each (time, percent) step."""
        out = []
        for at, percent in steps:
            self.step(at, percent)
            out.append(self.replicas)
        return out


def every(start: float, stop: float, percent: int, period: float = 15) -> list[tuple[float, int]]:
    steps, t = [], start
    while t < stop:
        steps.append((t, percent))
        t += period
    return steps


# -- one decision -------------------------------------------------------------------------------


def test_scale_up_event_status_and_conditions() -> None:
    h = hpa()
    actions = reconcile(h, deployment(2), pods(2), samples(cpu_each([100, 100])), now=NOW)
    assert actions.scale_to == 4
    assert actions.events == (Event("Normal", "SuccessfulRescale", f"New size: 4; reason: {CPU_REASON}"),)
    status = actions.status
    assert status is not None
    assert (status.current_replicas, status.desired_replicas, status.observed_generation) == (2, 4, 1)
    assert status.last_scale_time.ToDatetime().replace(tzinfo=NOW.tzinfo) == NOW
    assert [m.resource.current.average_utilization for m in status.current_metrics] == [100]
    assert condition(status, "AbleToScale") == ("True", "SucceededRescale")
    assert condition(status, "ScalingActive") == ("True", "ValidMetricFound")
    assert condition(status, "ScalingLimited") == ("False", "DesiredWithinRange")
    assert [(e.change) for e in status.scale_events] == [2]
    assert [r.replicas for r in status.recommendations] == [2, 4]


def test_unchanged_inputs_write_nothing() -> None:
    h = hpa()
    first = reconcile(h, deployment(3), pods(3), samples(cpu_each([50, 50, 50])), now=NOW)
    assert first.scale_to is None and first.events == () and first.status is not None
    h.status.CopyFrom(first.status)
    again = reconcile(h, deployment(3), pods(3), samples(cpu_each([50, 50, 50])), now=NOW + timedelta(seconds=15))
    assert again == HpaActions()


@pytest.mark.parametrize(
    ("h", "replicas", "percent", "expected", "limited", "reason"),
    [
        pytest.param(hpa(high=5), 3, 300, 5, ("True", "TooManyReplicas"), CPU_REASON, id="capped-at-max"),
        pytest.param(hpa(low=3), 5, 0, 3, ("True", "TooFewReplicas"), "All metrics below target", id="floored-at-min"),
        pytest.param(
            hpa(high=50, up=Rules(0, "Max", [("Pods", 1, 60)])),
            4,
            200,
            5,
            ("True", "ScaleUpLimit"),
            CPU_REASON,
            id="rate-limited",
        ),
        pytest.param(
            hpa(high=4),
            6,
            50,
            4,
            ("True", "TooManyReplicas"),
            "Current number of replicas above Spec.MaxReplicas",
            id="target-above-max",
        ),
        pytest.param(
            hpa(low=3),
            1,
            50,
            3,
            ("True", "TooFewReplicas"),
            "Current number of replicas below Spec.MinReplicas",
            id="target-below-min",
        ),
    ],
)
def test_bounds_and_scaling_limited(
    h: metrics_pb2.HorizontalPodAutoscaler,
    replicas: int,
    percent: int,
    expected: int,
    limited: tuple[str, str],
    reason: str,
) -> None:
    sim = Sim(h, replicas)
    if "below target" in reason:
        sim.hpa.spec.behavior.scale_down.CopyFrom(Rules(0).message())  # no down window for this case
    actions = sim.step(0, percent)
    assert actions.scale_to == expected
    assert actions.reason == reason
    assert condition(sim.hpa, "ScalingLimited") == limited
    assert sim.events[-1][1].message == f"New size: {expected}; reason: {reason}"


def test_several_metrics_the_highest_wins() -> None:
    h = hpa(metrics=[cpu_metric(50), rps_metric("10")], high=20)
    metrics = samples(cpu_each([60, 60]), rps={"web-0": 30, "web-1": 30})
    actions = reconcile(h, deployment(2), pods(2), metrics, now=NOW)
    assert actions.scale_to == 6
    assert actions.reason == "pods metric requests_per_second above target"
    assert actions.status is not None and len(actions.status.current_metrics) == 2


def test_a_failed_metric_does_not_stop_a_scale_up() -> None:
    h = hpa(metrics=[value_metric("memory", "100Mi"), cpu_metric(50)])
    actions = reconcile(
        h,
        deployment(2),
        pods(2),
        PodMetrics(usage=samples(cpu_each([100, 100])).usage, requests_per_second={}),
        now=NOW,
    )
    assert actions.scale_to == 4
    assert actions.status is not None
    assert condition(actions.status, "ScalingActive") == ("True", "ValidMetricFound")


def test_a_failed_metric_stops_a_scale_down() -> None:
    h = hpa(metrics=[rps_metric("10"), cpu_metric(50)], down=Rules(0))
    actions = reconcile(h, deployment(4), pods(4), samples(cpu_each([5] * 4)), now=NOW)
    assert actions.scale_to is None
    assert actions.status is not None
    assert condition(actions.status, "ScalingActive") == ("False", "FailedGetPodsMetric")
    assert [e.reason for e in actions.events] == ["FailedGetPodsMetric", "FailedComputeMetricsReplicas"]
    assert actions.events[1].message.startswith("invalid metrics (1 invalid out of 2), first error is: ")
    # The failed metric's entry stays, without a value (shown as <unknown>).
    unknown = actions.status.current_metrics[0]
    assert (unknown.type, unknown.pods.metric.name, unknown.pods.current.average_value) == (
        "Pods",
        "requests_per_second",
        "",
    )


def test_no_cpu_request_fails_with_a_clear_message() -> None:
    selected = [*pods(1), pod("web-1", cpu=None)]
    actions = reconcile(hpa(), deployment(2), selected, samples(cpu_each([50, 50])), now=NOW)
    assert actions.scale_to is None and actions.status is not None
    message = "failed to get cpu utilization: missing request for cpu in container web of Pod web-1"
    assert actions.events == (
        Event("Warning", "FailedGetResourceMetric", message),
        Event(
            "Warning",
            "FailedComputeMetricsReplicas",
            f"invalid metrics (1 invalid out of 1), first error is: {message}",
        ),
    )
    active = next(c for c in actions.status.conditions if c.type == "ScalingActive")
    assert (active.status, active.reason) == ("False", "FailedGetResourceMetric")
    assert active.message == f"the HPA was unable to compute the replica count: {message}"


def test_target_at_zero_disables_scaling() -> None:
    actions = reconcile(hpa(), deployment(0), [], samples(), now=NOW)
    assert actions.scale_to is None and actions.status is not None
    assert condition(actions.status, "ScalingActive") == ("False", "ScalingDisabled")
    assert actions.status.desired_replicas == 0


def test_missing_target() -> None:
    actions = reconcile(hpa(), None, [], samples(), now=NOW)
    assert actions.scale_to is None and actions.status is not None
    assert condition(actions.status, "AbleToScale") == ("False", "FailedGetScale")
    assert actions.events == (Event("Warning", "FailedGetScale", 'deployments.apps "web" not found'),)


def test_rescale_failure_keeps_the_history_of_what_happened() -> None:
    h = hpa()
    actions = reconcile(h, deployment(2), pods(2), samples(cpu_each([100, 100])), now=NOW)
    status, event = rescale_failed(h, actions, "storage unavailable", now=NOW)
    assert condition(status, "AbleToScale") == ("False", "FailedUpdateScale")
    assert not status.scale_events and not status.HasField("last_scale_time")
    assert status.desired_replicas == 2
    assert event == Event("Warning", "FailedRescale", f"New size: 4; reason: {CPU_REASON}; error: storage unavailable")


def test_selected_pods_follow_the_target_selector() -> None:
    other = pod("db-0")
    other.metadata.labels["app"] = "db"
    elsewhere = pod("web-9")
    elsewhere.metadata.namespace = "prod"
    assert [p.metadata.name for p in selected_pods(deployment(1), [*pods(2), other, elsewhere])] == ["web-0", "web-1"]
    unselective = workloads_pb2.Deployment()
    assert selected_pods(unselective, pods(2)) == []


# -- over time ------------------------------------------------------------------------------------


def test_scale_down_waits_for_the_window() -> None:
    sim = Sim(hpa(), 2)
    assert sim.run([(0, 100)]) == [4]
    # Load halves: 4 pods at 25% recommend 2, but 4 was recommended within the last 300 s.
    assert set(sim.run(every(15, 300, 25))) == {4}
    assert condition(sim.hpa, "AbleToScale") == ("True", "ScaleDownStabilized")
    assert sim.run([(300, 25), (316, 25)]) == [4, 2]
    assert sim.events[-1] == (
        316,
        Event("Normal", "SuccessfulRescale", "New size: 2; reason: All metrics below target"),
    )


def test_a_dip_does_not_remove_pods() -> None:
    sim = Sim(hpa(), 4)
    steps = [*every(0, 600, 50), (600, 10), *every(615, 900, 50)]
    assert set(sim.run(steps)) == {4}


def test_new_hpa_does_not_scale_down_before_the_window() -> None:
    sim = Sim(hpa(), 8)
    assert set(sim.run(every(0, 300, 10))) == {8}
    assert sim.run([(301, 10)]) == [2]


def test_scale_up_window_takes_the_lowest() -> None:
    sim = Sim(hpa(up=Rules(60)), 2)
    assert sim.run([(0, 100), (30, 100), (59, 100)]) == [2, 2, 2]
    assert condition(sim.hpa, "AbleToScale") == ("True", "ScaleUpStabilized")
    assert sim.run([(61, 100)]) == [4]


def test_rate_limit_over_periods() -> None:
    sim = Sim(hpa(high=20, up=Rules(0, "Max", [("Pods", 1, 60)])), 2)
    assert sim.run([(0, 300), (15, 300), (45, 300), (61, 300)]) == [3, 3, 3, 4]


def test_history_stays_small() -> None:
    sim = Sim(hpa(), 4)
    for at, percent in every(0, 3600, 50):
        sim.step(at, percent + (10 if int(at) % 60 == 0 else 0))
    assert len(sim.hpa.status.recommendations) <= 300 // 15 + 1
    assert all(
        e.time.ToDatetime() > (NOW + timedelta(seconds=3600 - 30)).replace(tzinfo=None)
        for e in sim.hpa.status.scale_events
    )


@settings(max_examples=200, deadline=None)
@given(
    replicas=st.integers(1, 30),
    percents=st.lists(st.integers(0, 400), min_size=1, max_size=12),
    low=st.integers(1, 5),
    high=st.integers(5, 40),
)
def test_property_bounds_and_default_rate_hold(replicas: int, percents: list[int], low: int, high: int) -> None:
    """Whatever the load, a scale lands within [min, max] and never adds more than the default
    policies allow (double, or 4 pods, per 15 s)."""
    sim = Sim(hpa(low=low, high=high), replicas)
    for i, percent in enumerate(percents):
        before = sim.replicas
        actions = sim.step(i * 15, percent)
        if actions.scale_to is None:
            continue
        assert low <= actions.scale_to <= high
        if low <= before <= high and actions.scale_to > before:
            assert actions.scale_to <= max(2 * before, before + 4)
