"""The disruption math, pure: expected pods and desired healthy for each form of
the spec (percentages round up, as Kubernetes), healthy pods, pending evictions,
and the status with its DisruptionAllowed condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.controllers.disruption.reconcile import (
    Scale,
    SyncFailedError,
    budget_status,
    count_healthy,
    expected_and_desired,
    still_disrupted,
)
from protos.corral.v1 import meta_pb2, pod_pb2, policy_pb2

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def pod(name: str, *, owner: str = "rs-1", ready: bool = True, terminating: bool = False) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    if owner:
        p.metadata.owner_references.add(kind="ReplicaSet", name=owner, uid=owner, controller=True)
    p.status.conditions.add(type="Ready", status="True" if ready else "False")
    if terminating:
        p.metadata.deletion_timestamp.FromDatetime(NOW)
    return p


def pods(n: int, **kwargs: object) -> list[pod_pb2.Pod]:
    return [pod(f"web-{i}", **kwargs) for i in range(n)]  # type: ignore[arg-type]


def spec(
    *, min_available: int | str | None = None, max_unavailable: int | str | None = None
) -> policy_pb2.PodDisruptionBudgetSpec:
    s = policy_pb2.PodDisruptionBudgetSpec()
    for field, value in (("min_available", min_available), ("max_unavailable", max_unavailable)):
        if isinstance(value, int):
            getattr(s, field).int_val = value
        elif isinstance(value, str):
            getattr(s, field).str_val = value
    return s


def scales(replicas: int, *owners: str) -> dict[str, Scale | None]:
    """Every owner leads to one controller (a Deployment) wanting `replicas`."""
    return {owner: Scale("deploy-1", replicas) for owner in owners or ("rs-1",)}


@pytest.mark.parametrize(
    ("budget", "selected", "controllers", "expected"),
    [
        pytest.param(spec(min_available=2), pods(3), scales(5), (3, 2, []), id="min-count-expects-the-pods"),
        pytest.param(spec(min_available="50%"), pods(3), scales(7), (7, 4, []), id="min-percent-rounds-up"),
        pytest.param(spec(min_available="100%"), pods(3), scales(3), (3, 3, []), id="min-all"),
        pytest.param(spec(min_available="0%"), pods(3), scales(3), (3, 0, []), id="min-none"),
        pytest.param(spec(max_unavailable=1), pods(3), scales(3), (3, 2, []), id="max-count"),
        pytest.param(spec(max_unavailable="50%"), pods(3), scales(3), (3, 1, []), id="max-percent-rounds-up"),
        pytest.param(spec(max_unavailable="10%"), pods(3), scales(10), (10, 9, []), id="max-percent-of-replicas"),
        pytest.param(spec(max_unavailable=5), pods(3), scales(3), (3, 0, []), id="max-more-than-expected"),
        pytest.param(
            spec(max_unavailable=1),
            [pod("a", owner="rs-old"), pod("b", owner="rs-new")],
            scales(4, "rs-old", "rs-new"),
            (4, 3, []),
            id="two-replica-sets-one-deployment",
        ),
        pytest.param(
            spec(max_unavailable=0),
            [pod("a"), pod("bare", owner="")],
            scales(1),
            (1, 1, ["bare"]),
            id="bare-pods-named",
        ),
        pytest.param(spec(min_available=1), [pod("bare", owner="")], {}, (1, 1, []), id="min-count-bare-pods"),
        pytest.param(spec(), pods(2), scales(2), (0, 0, []), id="neither"),
    ],
)
def test_expected_and_desired(
    budget: policy_pb2.PodDisruptionBudgetSpec,
    selected: list[pod_pb2.Pod],
    controllers: dict[str, Scale | None],
    expected: tuple[int, int, list[str]],
) -> None:
    assert expected_and_desired(budget, selected, controllers) == expected


def test_a_missing_controller_fails_the_sync() -> None:
    with pytest.raises(SyncFailedError, match='found no controllers for pod "web-0"'):
        expected_and_desired(spec(max_unavailable=1), pods(1), {"rs-1": None})


def test_healthy_pods_are_ready_not_terminating_and_not_just_evicted() -> None:
    selected = [pod("a"), pod("b", ready=False), pod("c", terminating=True), pod("d")]
    assert count_healthy(selected, {"d": NOW}) == 1


@pytest.mark.parametrize(
    ("evicted_ago", "terminating", "kept"),
    [
        pytest.param(timedelta(seconds=30), False, True, id="recent-kept"),
        pytest.param(timedelta(minutes=2), False, False, id="expired-dropped"),
        pytest.param(timedelta(seconds=30), True, False, id="being-deleted-dropped"),
    ],
)
def test_still_disrupted(evicted_ago: timedelta, terminating: bool, kept: bool) -> None:
    at = NOW - evicted_ago
    result, recheck = still_disrupted({"a": at, "gone": at}, [pod("a", terminating=terminating)], NOW)
    assert result == ({"a": at} if kept else {})
    assert recheck == (at + timedelta(minutes=2) if kept else None)


def budget(s: policy_pb2.PodDisruptionBudgetSpec, *, generation: int = 3) -> policy_pb2.PodDisruptionBudget:
    b = policy_pb2.PodDisruptionBudget()
    b.metadata.name, b.metadata.namespace, b.metadata.generation = "web", "default", generation
    b.spec.CopyFrom(s)
    return b


def test_status_allows_what_is_healthy_beyond_the_budget() -> None:
    b = budget(spec(min_available=1))
    b.status.disrupted_pods["web-1"].FromDatetime(NOW - timedelta(seconds=10))
    result = budget_status(b, pods(3), scales(3), NOW)
    s = result.status
    assert (s.current_healthy, s.desired_healthy, s.expected_pods, s.disruptions_allowed) == (2, 1, 3, 1)
    assert s.observed_generation == 3 and list(s.disrupted_pods) == ["web-1"]
    [condition] = s.conditions
    assert (condition.type, condition.status, condition.reason) == ("DisruptionAllowed", "True", "SufficientPods")
    assert condition.observed_generation == 3
    assert result.recheck == NOW + timedelta(seconds=110)


def test_status_allows_nothing_when_the_budget_is_not_met_or_nothing_is_expected() -> None:
    low = budget_status(budget(spec(min_available=3)), pods(2), scales(2), NOW).status
    assert low.disruptions_allowed == 0 and low.conditions[0].reason == "InsufficientPods"
    empty = budget_status(budget(spec(max_unavailable=1)), [], {}, NOW).status
    assert (empty.expected_pods, empty.disruptions_allowed) == (0, 0)


def test_a_failed_sync_allows_no_disruption_and_keeps_the_observed_generation() -> None:
    b = budget(spec(max_unavailable=1))
    b.status.disruptions_allowed, b.status.observed_generation = 2, 2
    result = budget_status(b, pods(1), {"rs-1": None}, NOW)
    assert result.failed == 'found no controllers for pod "web-0"'
    assert result.status.disruptions_allowed == 0 and result.status.observed_generation == 2
    condition: meta_pb2.Condition = result.status.conditions[0]
    assert (condition.status, condition.reason, condition.message) == ("False", "SyncFailed", result.failed)


budgets = st.one_of(
    st.builds(lambda n: spec(min_available=n), st.integers(0, 12)),
    st.builds(lambda n: spec(min_available=f"{n}%"), st.integers(0, 100)),
    st.builds(lambda n: spec(max_unavailable=n), st.integers(0, 12)),
    st.builds(lambda n: spec(max_unavailable=f"{n}%"), st.integers(0, 100)),
)


@given(
    budget_spec=budgets,
    states=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=10),
    replicas=st.integers(0, 12),
)
def test_evicting_what_is_allowed_never_leaves_fewer_healthy_than_desired(
    budget_spec: policy_pb2.PodDisruptionBudgetSpec, states: list[tuple[bool, bool]], replicas: int
) -> None:
    selected = [pod(f"p{i}", ready=ready, terminating=gone) for i, (ready, gone) in enumerate(states)]
    s = budget_status(budget(budget_spec), selected, scales(replicas), NOW).status
    assert 0 <= s.disruptions_allowed <= s.current_healthy
    if s.disruptions_allowed:
        assert s.current_healthy - s.disruptions_allowed >= s.desired_healthy
        assert s.expected_pods > 0
