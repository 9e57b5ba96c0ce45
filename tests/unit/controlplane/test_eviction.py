"""Evictions: the pure rules (which budget decides, when an unready pod may go,
check-and-decrement) and ObjectApi.evict over the memory store (the budget's
disruption taken with a compare-and-swap before the pod is deleted)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.eviction import TOO_MANY, EvictionPlan, check_and_decrement, plan_eviction
from controlplane.apiserver.handlers import ObjectApi
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import pod_pb2, policy_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def pod(name: str = "web-1", *, ready: bool = True, phase: str = "Running", app: str = "web") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.labels["app"] = app
    p.spec.containers.add(name="main", image="busybox:1")
    p.status.phase = phase
    p.status.conditions.add(type="Ready", status="True" if ready else "False")
    return p


def budget(
    name: str = "web",
    *,
    allowed: int = 1,
    healthy: int = 2,
    desired: int = 1,
    selector: dict[str, str] | None = None,
    policy: str = "",
    generation: int = 1,
    observed: int = 1,
) -> policy_pb2.PodDisruptionBudget:
    b = policy_pb2.PodDisruptionBudget()
    b.metadata.name, b.metadata.namespace, b.metadata.generation = name, "default", generation
    b.spec.min_available.int_val = 1
    if selector is not None:
        b.spec.selector.match_labels.update(selector)
        b.spec.selector.SetInParent()
    b.spec.unhealthy_pod_eviction_policy = policy
    b.status.disruptions_allowed, b.status.current_healthy, b.status.desired_healthy = allowed, healthy, desired
    b.status.observed_generation = observed
    return b


WEB = {"app": "web"}


@pytest.mark.parametrize(
    ("target", "budgets", "expected"),
    [
        pytest.param(pod(), [], EvictionPlan(None), id="no-budget"),
        pytest.param(pod(), [budget(selector={"app": "db"})], EvictionPlan(None), id="other-selector"),
        pytest.param(pod(), [budget()], EvictionPlan(None), id="absent-selector-picks-nothing"),
        pytest.param(pod(), [budget(selector={})], EvictionPlan(budget(selector={})), id="empty-selector-picks-all"),
        pytest.param(pod(), [budget(selector=WEB)], EvictionPlan(budget(selector=WEB)), id="ready-pod-uses-budget"),
        pytest.param(pod(phase="Pending"), [budget(selector=WEB)], EvictionPlan(None), id="pending-ignores-budget"),
        pytest.param(pod(phase="Succeeded"), [budget(selector=WEB)], EvictionPlan(None), id="finished-ignores"),
        pytest.param(
            pod(ready=False),
            [budget(selector=WEB, policy="AlwaysAllow", allowed=0)],
            EvictionPlan(None, exact_version=True),
            id="unready-always-allow",
        ),
        pytest.param(
            pod(ready=False),
            [budget(selector=WEB, allowed=0, healthy=2, desired=2)],
            EvictionPlan(None, exact_version=True),
            id="unready-budget-met",
        ),
        pytest.param(
            pod(ready=False),
            [budget(selector=WEB, allowed=0, healthy=1, desired=2)],
            EvictionPlan(budget(selector=WEB, allowed=0, healthy=1, desired=2)),
            id="unready-budget-not-met-asks-budget",
        ),
    ],
)
def test_plan_eviction(
    target: pod_pb2.Pod, budgets: list[policy_pb2.PodDisruptionBudget], expected: EvictionPlan
) -> None:
    assert plan_eviction(target, budgets) == expected


def test_two_budgets_for_one_pod_are_refused() -> None:
    with pytest.raises(errors.ForbiddenError, match="more than one PodDisruptionBudget"):
        plan_eviction(pod(), [budget("a", selector=WEB), budget("b", selector={})])


def test_check_and_decrement_takes_one_and_records_the_pod() -> None:
    taken = check_and_decrement(budget(allowed=1), "web-1", NOW)
    assert taken.status.disruptions_allowed == 0
    assert taken.status.disrupted_pods["web-1"].ToDatetime(tzinfo=UTC) == NOW
    [condition] = taken.status.conditions
    assert (condition.type, condition.status, condition.reason) == ("DisruptionAllowed", "False", "InsufficientPods")


@pytest.mark.parametrize(
    ("pdb", "error", "message"),
    [
        pytest.param(
            budget(allowed=0, healthy=1, desired=1),
            errors.TooManyRequestsError,
            "The disruption budget web needs 1 healthy pods and has 1 currently",
            id="none-allowed",
        ),
        pytest.param(
            budget(generation=2, observed=1),
            errors.TooManyRequestsError,
            "The disruption budget web is still being processed by the server.",
            id="spec-not-seen-yet",
        ),
        pytest.param(budget(allowed=-1), errors.ForbiddenError, "pdb disruptions allowed is negative", id="negative"),
    ],
)
def test_check_and_decrement_refusals(
    pdb: policy_pb2.PodDisruptionBudget, error: type[errors.ApiError], message: str
) -> None:
    with pytest.raises(error) as refused:
        check_and_decrement(pdb, "web-1", NOW)
    if isinstance(refused.value, errors.TooManyRequestsError):
        assert str(refused.value) == TOO_MANY
        assert [(c.field, c.message) for c in refused.value.causes] == [("DisruptionBudget", message)]
    else:
        assert message in str(refused.value)


# -- through ObjectApi ---------------------------------------------------------------


async def stored_budget(api: ObjectApi) -> policy_pb2.PodDisruptionBudget:
    found = await api.find(by_kind("PodDisruptionBudget"), "default", "web")
    assert isinstance(found, policy_pb2.PodDisruptionBudget)
    return found


async def setup(allowed: int) -> ObjectApi:
    """Two running pods on n1 and a budget whose status (as its controller wrote it) allows `allowed`."""
    api = ObjectApi(ObjectStore(MemoryStore()), now=lambda: NOW)
    for name in ("web-1", "web-2"):
        p = pod(name)
        p.spec.node_name = "n1"
        created = await api.create(p)
        assert isinstance(created, pod_pb2.Pod)
        created.status.CopyFrom(p.status)
        await api.update_status(created)
    b = budget(selector=WEB)
    b.ClearField("status")
    await api.create(b)
    live = await stored_budget(api)
    live.status.disruptions_allowed, live.status.current_healthy, live.status.desired_healthy = allowed, 2, 1
    live.status.observed_generation = 1
    await api.update_status(live)
    return api


async def test_evictions_take_the_budget_one_at_a_time() -> None:
    api = await setup(allowed=1)
    first = await api.evict("default", "web-1")
    assert isinstance(first, pod_pb2.Pod) and first.metadata.HasField("deletion_timestamp")
    after = await stored_budget(api)
    assert after.status.disruptions_allowed == 0 and list(after.status.disrupted_pods) == ["web-1"]
    with pytest.raises(errors.TooManyRequestsError) as refused:
        await api.evict("default", "web-2")
    assert refused.value.causes[0].message == "The disruption budget web needs 1 healthy pods and has 2 currently"
    still = await api.find(by_kind("Pod"), "default", "web-2")
    assert still is not None and not still.metadata.HasField("deletion_timestamp")


async def test_an_eviction_without_a_budget_deletes_and_a_missing_pod_is_not_found() -> None:
    api = await setup(allowed=0)
    other = pod("lone", app="lone")
    await api.create(other)
    gone = await api.evict("default", "lone")
    assert isinstance(gone, pod_pb2.Pod)
    assert await api.find(by_kind("Pod"), "default", "lone") is None
    with pytest.raises(errors.NotFoundError):
        await api.evict("default", "nope")
    with pytest.raises(errors.ConflictError):
        await api.evict("default", "web-1", uid="another-incarnation")
