"""The HPA's replica calculator (`autoscaler.replicas.propose`): one metric's proposal."""

from __future__ import annotations

import pytest

from controlplane.controllers.autoscaler.replicas import (
    Failure,
    PodMetrics,
    Proposal,
    Tuning,
    format_bytes,
    format_milli,
    propose,
)
from protos.corral.v1 import metrics_pb2, pod_pb2
from tests.unit.controllers.hpa_builders import (
    NOW,
    cpu_each,
    cpu_metric,
    pod,
    pods,
    rps_metric,
    samples,
    value_metric,
)

MI = 1 << 20


def run(
    metric: metrics_pb2.MetricSpec, selected: list[pod_pb2.Pod], metrics: PodMetrics, current: int | None = None
) -> Proposal | Failure:
    return propose(metric, len(selected) if current is None else current, selected, metrics, now=NOW, tuning=Tuning())


@pytest.mark.parametrize(
    ("selected", "metric", "metrics", "expected", "utilization"),
    [
        pytest.param(pods(3), cpu_metric(50), samples(cpu_each([54, 54, 54])), 3, 54, id="within-tolerance"),
        pytest.param(pods(3), cpu_metric(50), samples(cpu_each([56, 56, 56])), 4, 56, id="just-above-tolerance"),
        pytest.param(pods(3), cpu_metric(50), samples(cpu_each([45, 45, 45])), 3, 45, id="tolerance-below"),
        pytest.param(pods(3), cpu_metric(50), samples(cpu_each([100, 100, 100])), 6, 100, id="scale-up"),
        pytest.param(pods(4), cpu_metric(50), samples(cpu_each([10, 10, 10, 10])), 1, 10, id="scale-down"),
        pytest.param(pods(4), cpu_metric(50), samples(cpu_each([0, 0, 0, 0])), 0, 0, id="idle-proposes-zero"),
        # Exact arithmetic: in floats, 1 - 88/80 is just over the tolerance, and 25/11 * 11 over 25.
        pytest.param(pods(10), cpu_metric(80), samples(cpu_each([88] * 10)), 10, 88, id="tolerance-is-exact"),
        pytest.param(pods(11), cpu_metric(11), samples(cpu_each([25] * 11)), 25, 25, id="ceiling-is-exact"),
        pytest.param(pods(2), cpu_metric(50), samples(cpu_each([100, 0])), 2, 50, id="utilization-is-of-the-sum"),
        # Missing samples: 0 on a scale-up, 100% of the request on a scale-down.
        pytest.param(
            pods(4), cpu_metric(50), samples(cpu_each([100, 100, 100])), 6, 100, id="missing-on-scale-up-counts-zero"
        ),
        pytest.param(
            pods(4), cpu_metric(50), samples(cpu_each([10, 10, 10])), 3, 10, id="missing-on-scale-down-counts-full"
        ),
        pytest.param(
            pods(2), cpu_metric(50), samples(cpu_each([40])), 2, 40, id="missing-turns-direction-nothing-changes"
        ),
        pytest.param(
            pods(4),
            cpu_metric(150),
            samples(cpu_each([30, 30, 30])),
            2,
            30,
            id="missing-on-scale-down-counts-target-above-100",
        ),
        # Unready pods: left out, and counted at 0 on a scale-up.
        pytest.param(
            [*pods(2), pod("web-2", phase="Pending", ready=None)],
            cpu_metric(50),
            samples(cpu_each([100, 100])),
            4,
            100,
            id="pending-pod-zero-on-scale-up",
        ),
        pytest.param(
            [*pods(2), pod("web-2", ready=False, ready_changed=598)],
            cpu_metric(50),
            samples(cpu_each([100, 100, 100])),
            4,
            100,
            id="never-ready-pod-zero-on-scale-up",
        ),
        pytest.param(
            [*pods(2), pod("web-2", ready=False, ready_changed=598)],
            cpu_metric(50),
            samples(cpu_each([10, 10, 10])),
            1,
            10,
            id="never-ready-pod-left-out-on-scale-down",
        ),
        pytest.param(
            [*pods(2), pod("web-2", started=10, ready_changed=5)],
            cpu_metric(50),
            samples(cpu_each([100, 100, 400])),
            4,
            100,
            id="cpu-of-a-new-pod-not-trusted",
        ),
        pytest.param(
            [*pods(2), pod("web-2", ready=False, ready_changed=60)],
            cpu_metric(50),
            samples(cpu_each([100, 100, 100])),
            6,
            100,
            id="once-ready-pod-counts",
        ),
        pytest.param(
            [*pods(2), pod("web-2", ready=None)],
            cpu_metric(50),
            samples(cpu_each([100, 100, 100])),
            4,
            100,
            id="no-ready-condition-is-unready",
        ),
        # Ignored pods.
        pytest.param(
            [*pods(2), pod("web-2", terminating=True), pod("web-3", phase="Failed")],
            cpu_metric(50),
            samples(cpu_each([100, 100, 500, 500])),
            4,
            100,
            id="deleted-and-failed-ignored",
        ),
        pytest.param(
            pods(2, cpu=None, limit_cpu="200m"),
            cpu_metric(50),
            samples(cpu_each([200, 200])),
            4,
            100,
            id="limit-stands-for-request",
        ),
        # Values per pod.
        pytest.param(
            pods(2), value_metric("cpu", "200m"), samples(cpu_each([500, 500])), 5, None, id="cpu-average-value"
        ),
        pytest.param(
            pods(2),
            value_metric("memory", "100Mi"),
            samples(memory={"web-0": 200 * MI, "web-1": 200 * MI}),
            4,
            None,
            id="memory-average-value",
        ),
        pytest.param(
            pods(2),
            value_metric("memory", "100Mi"),
            samples(memory={"web-0": 105 * MI, "web-1": 105 * MI}),
            2,
            None,
            id="memory-average-value-tolerance",
        ),
        pytest.param(
            pods(3), rps_metric("10"), samples(rps={"web-0": 12, "web-1": 12, "web-2": 12}), 4, None, id="rps-scale-up"
        ),
        pytest.param(
            pods(4), rps_metric("10"), samples(rps={f"web-{i}": 2.5 for i in range(4)}), 1, None, id="rps-scale-down"
        ),
        pytest.param(
            pods(3), rps_metric("10"), samples(rps={"web-0": 30, "web-1": 30}), 6, None, id="rps-missing-on-scale-up"
        ),
        pytest.param(
            pods(3),
            rps_metric("10"),
            samples(rps={"web-0": 2, "web-1": 2}),
            2,
            None,
            id="rps-missing-on-scale-down-counts-target",
        ),
        pytest.param(
            [*pods(2), pod("web-2", ready=False, ready_changed=598)],
            rps_metric("10"),
            samples(rps={"web-0": 20, "web-1": 20, "web-2": 20}),
            6,
            None,
            id="rps-readiness-only-matters-for-cpu",
        ),
        pytest.param(
            pods(2), rps_metric("500m"), samples(rps={"web-0": 1.5, "web-1": 1.5}), 6, None, id="rps-milli-target"
        ),
    ],
)
def test_proposals(
    selected: list[pod_pb2.Pod],
    metric: metrics_pb2.MetricSpec,
    metrics: PodMetrics,
    expected: int,
    utilization: int | None,
) -> None:
    result = run(metric, selected, metrics)
    assert isinstance(result, Proposal), result
    assert result.replicas == expected
    if utilization is not None:
        assert result.status.resource.current.average_utilization == utilization


def test_current_replicas_not_pod_count_is_kept_within_tolerance() -> None:
    result = run(cpu_metric(50), pods(3), samples(cpu_each([52, 52, 52])), current=5)
    assert isinstance(result, Proposal) and result.replicas == 5


@pytest.mark.parametrize(
    ("selected", "metric", "metrics", "reason", "message"),
    [
        pytest.param(
            [*pods(1), pod("web-1", cpu=None)],
            cpu_metric(50),
            samples(cpu_each([50, 50])),
            "FailedGetResourceMetric",
            "failed to get cpu utilization: missing request for cpu in container web of Pod web-1",
            id="no-cpu-request",
        ),
        pytest.param(
            pods(2, cpu=None),
            cpu_metric(50),
            samples(),
            "FailedGetResourceMetric",
            "failed to get cpu utilization: missing request for cpu in container web of Pod web-0",
            id="no-request-reported-before-missing-metrics",
        ),
        pytest.param(
            pods(2),
            cpu_metric(50),
            samples(),
            "FailedGetResourceMetric",
            "failed to get cpu utilization: unable to get metrics for resource cpu: "
            "no metrics returned from resource metrics API",
            id="no-metrics",
        ),
        pytest.param(
            [],
            cpu_metric(50),
            samples(cpu_each([50])),
            "FailedGetResourceMetric",
            "failed to get cpu utilization: no pods returned by selector while calculating replica count",
            id="no-pods",
        ),
        pytest.param(
            pods(2, started=5),
            cpu_metric(50),
            samples(cpu_each([50, 50])),
            "FailedGetResourceMetric",
            "failed to get cpu utilization: did not receive metrics for targeted pods (pods might be unready)",
            id="all-unready",
        ),
        pytest.param(
            pods(2),
            value_metric("memory", "1Gi"),
            samples(),
            "FailedGetResourceMetric",
            "failed to get memory usage: unable to get metrics for resource memory: "
            "no metrics returned from resource metrics API",
            id="memory-value-no-metrics",
        ),
        pytest.param(
            pods(2),
            rps_metric("10"),
            samples(),
            "FailedGetPodsMetric",
            "failed to get pods metric value: unable to get metric requests_per_second: "
            "no metrics returned for the selected pods",
            id="rps-no-metrics",
        ),
    ],
)
def test_failures(
    selected: list[pod_pb2.Pod], metric: metrics_pb2.MetricSpec, metrics: PodMetrics, reason: str, message: str
) -> None:
    assert run(metric, selected, metrics, current=2) == Failure(reason, message)


def test_status_shows_current_values() -> None:
    result = run(cpu_metric(50), pods(2), samples(cpu_each([30, 45])))
    assert isinstance(result, Proposal)
    assert result.name == "cpu resource utilization (percentage of request)"
    current = result.status.resource.current
    assert (result.status.type, result.status.resource.name) == ("Resource", "cpu")
    assert (current.average_utilization, current.average_value) == (37, "37m")
    rps = run(rps_metric("10"), pods(2), samples(rps={"web-0": 12, "web-1": 13}))
    assert isinstance(rps, Proposal) and rps.name == "pods metric requests_per_second"
    assert rps.status.pods.metric.name == "requests_per_second"
    assert rps.status.pods.current.average_value == "12500m"
    memory = run(value_metric("memory", "100Mi"), pods(2), samples(memory={"web-0": 100 * MI, "web-1": 100 * MI}))
    assert isinstance(memory, Proposal) and memory.name == "memory resource"
    assert memory.status.resource.current.average_value == "100Mi"


@pytest.mark.parametrize(("value", "text"), [(0, "0"), (250, "250m"), (2000, "2"), (12500, "12500m")])
def test_format_milli(value: int, text: str) -> None:
    assert format_milli(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (1000, "1000"), (1024, "1Ki"), (100 * MI, "100Mi"), (3 << 30, "3Gi"), (MI + 1, "1048577")],
)
def test_format_bytes(value: int, text: str) -> None:
    assert format_bytes(value) == text
