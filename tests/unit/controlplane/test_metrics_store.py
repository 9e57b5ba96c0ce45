"""The control plane's MetricsStore: freshness, forgetting, history and connection rates."""

from __future__ import annotations

import pytest

from controlplane.metrics.store import MetricsStore, counter_rate
from protos.corral.v1 import metrics_pb2


def report(
    node: str,
    *,
    cpu: int | None = None,
    pods: dict[str, int] | None = None,
    traffic: dict[str, dict[str, int]] | None = None,
    namespace: str = "default",
) -> metrics_pb2.MetricsReport:
    """A node's report: node cpu, pods' cpu (one container each), Services' per-pod connection totals."""
    r = metrics_pb2.MetricsReport(node_name=node)
    if cpu is not None:
        r.node.cpu_millis = cpu
        r.node.memory_bytes = 1 << 30
    for name, millis in (pods or {}).items():
        r.pods.add(namespace=namespace, name=name, uid=f"uid-{name}").containers.add(name="main", cpu_millis=millis)
    for service, backends in (traffic or {}).items():
        s = r.services.add(namespace=namespace, name=service)
        for pod, total in backends.items():
            s.backends.add(pod=pod, connections_total=total)
    return r


def test_latest_usage_while_fresh_then_none() -> None:
    store = MetricsStore(max_age=60)
    store.record(report("n1", cpu=100, pods={"web": 10}), now=0)
    store.record(report("n1", cpu=300, pods={"web": 30}), now=10)

    node, web = store.node_usage("n1", now=70), store.pod_usage("default", "web", now=70)

    assert node is not None and node.cpu_millis == 300
    assert web is not None and web.containers[0].cpu_millis == 30
    assert store.node_usage("n1", now=70.1) is None
    assert store.pod_usage("default", "web", now=70.1) is None
    assert store.node_usage("n2", now=10) is None
    assert store.pod_usage("other", "web", now=10) is None


def test_a_report_without_node_usage_keeps_the_last_one() -> None:
    store = MetricsStore()
    store.record(report("n1", cpu=100), now=0)
    store.record(report("n1", pods={"web": 5}), now=10)

    node = store.node_usage("n1", now=10)

    assert node is not None and node.cpu_millis == 100
    assert store.node_names(now=10) == ["n1"]


def test_nodes_and_pods_not_reported_for_max_age_are_forgotten() -> None:
    store = MetricsStore(max_age=60)
    store.record(report("n1", cpu=1, pods={"old": 1}, traffic={"web": {"old": 1}}), now=0)
    store.record(report("n1", cpu=1, pods={"old": 1}, traffic={"web": {"old": 2}}), now=10)
    for t in range(20, 200, 10):  # n2 keeps reporting, with other pods; n1 went away
        store.record(report("n2", cpu=2, pods={"new": 2}, traffic={"web": {"new": t}}), now=t)

    assert store._nodes.keys() == {"n2"}
    assert store._pods.keys() == {("default", "new")}
    assert store._traffic.keys() == {("default", "new")}
    assert store.pod_requests_per_second("default", "old", now=190) is None


def test_history_is_bounded_in_time_and_count() -> None:
    store = MetricsStore(history_seconds=100, max_samples=5)
    for t in range(0, 100, 10):
        store.record(report("n1", cpu=t), now=t)
    assert [p.cpu_millis for p in store.node_usage_history("n1", now=90)] == [50, 60, 70, 80, 90]

    store = MetricsStore(history_seconds=60, max_samples=100)
    for t in range(0, 100, 10):
        store.record(report("n1", pods={"web": t}), now=t)
    history = store.pod_usage_history("default", "web", now=95)
    assert [(p.seen, p.cpu_millis) for p in history] == [(t, t) for t in range(40, 100, 10)]
    assert store.pod_usage_history("default", "other", now=95) == []


def test_usage_is_copied_out_of_the_report() -> None:
    store = MetricsStore()
    sent = report("n1", cpu=5, pods={"web": 7})
    store.record(sent, now=0)
    sent.pods[0].containers[0].cpu_millis = 1000
    sent.node.cpu_millis = 1000

    web, node = store.pod_usage("default", "web", now=0), store.node_usage("n1", now=0)

    assert web is not None and web.containers[0].cpu_millis == 7
    assert node is not None and node.cpu_millis == 5


def test_requests_per_second_sums_every_node_and_service() -> None:
    store = MetricsStore(rate_window=60)
    for t in range(0, 70, 10):
        store.record(report("n1", traffic={"web": {"web-a": 5 * t, "web-b": t}}), now=t)  # 5/s and 1/s
        store.record(report("n2", traffic={"web": {"web-a": 2 * t}, "api": {"web-a": t}}), now=t + 1)  # 2/s, 1/s

    assert store.pod_requests_per_second("default", "web-a", now=70) == pytest.approx(8.0)
    assert store.pod_requests_per_second("default", "web-b", now=70) == pytest.approx(1.0)
    assert store.pod_requests_per_second("default", "web-c", now=70) is None


def test_requests_per_second_needs_two_samples_in_the_window() -> None:
    store = MetricsStore(rate_window=60)
    store.record(report("n1", traffic={"web": {"web-a": 10}}), now=0)
    assert store.pod_requests_per_second("default", "web-a", now=0) is None
    store.record(report("n1", traffic={"web": {"web-a": 10}}), now=10)
    assert store.pod_requests_per_second("default", "web-a", now=10) == 0.0
    assert store.pod_requests_per_second("default", "web-a", now=65) is None


@pytest.mark.parametrize(
    ("samples", "now", "expected"),
    [
        pytest.param([(0, 0), (10, 50)], 10, 5.0, id="steady"),
        pytest.param([(0, 100), (10, 150), (20, 30)], 20, 4.0, id="agent-restarted"),
        pytest.param([(0, 0), (30, 300), (80, 800), (90, 860)], 90, 560 / 60, id="older-samples-left-out"),
        pytest.param([(0, 0)], 0, None, id="one-sample"),
        pytest.param([(5, 0), (5, 10)], 5, None, id="no-time-between"),
        pytest.param([(0, 0), (10, 10), (20, 20)], 15, 1.0, id="later-samples-left-out"),
    ],
)
def test_counter_rate(samples: list[tuple[float, int]], now: float, expected: float | None) -> None:
    rate = counter_rate(samples, now=now, window=60)
    assert rate == (pytest.approx(expected) if expected is not None else None)
