"""The node lifecycle's pure core: heartbeat age, tolerations, taints, full
disruption and the eviction rate limit, all with `now` passed in."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.controllers.nodelifecycle.ratelimit import TokenBucket
from controlplane.controllers.nodelifecycle.reconcile import (
    NEVER_UPDATED_REASON,
    STATUS_UNKNOWN_MESSAGE,
    STATUS_UNKNOWN_REASON,
    Health,
    Settings,
    full_disruption,
    node_health,
    plan_node,
    pods_matter,
)
from controlplane.controllers.nodelifecycle.tolerations import (
    DefaultTolerations,
    eviction_deadline,
    toleration_seconds,
)
from protos.corral.v1 import node_pb2, pod_pb2
from protos.nodes import ready_condition
from protos.wellknown import TAINT_NOT_READY as NOT_READY
from protos.wellknown import TAINT_UNREACHABLE as UNREACHABLE
from tests.unit.controllers.lifecycle_builders import T0, at, node, pod, toleration

GRACE = timedelta(seconds=12)
SETTINGS = Settings(grace=GRACE, not_before=at(-1000))
UNREACHABLE_NO_EXECUTE = node_pb2.Taint(key=UNREACHABLE, effect="NoExecute")
DEFAULTS = DefaultTolerations(owned=5, bare=300)


def taint_set(n: node_pb2.Node) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in n.spec.taints}


# -- heartbeat age vs grace ---------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "now", "settings", "expected"),
    [
        pytest.param(node(heartbeat=0), at(4), SETTINGS, Health.READY, id="fresh-heartbeat"),
        pytest.param(node(heartbeat=0), at(12), SETTINGS, Health.READY, id="exactly-at-grace"),
        pytest.param(node(heartbeat=0), at(12.001), SETTINGS, Health.UNREACHABLE, id="just-past-grace"),
        pytest.param(node(heartbeat=0), at(600), SETTINGS, Health.UNREACHABLE, id="long-silent"),
        pytest.param(node(heartbeat=0, ready="False"), at(3), SETTINGS, Health.NOT_READY, id="agent-says-not-ready"),
        pytest.param(node(heartbeat=0, ready="False"), at(13), SETTINGS, Health.UNREACHABLE, id="not-ready-and-silent"),
        pytest.param(node(heartbeat=0, ready="Unknown"), at(1), SETTINGS, Health.UNREACHABLE, id="already-unknown"),
        pytest.param(node(ready=None, created=0), at(5), SETTINGS, Health.NEW, id="never-reported-in-grace"),
        pytest.param(node(ready=None, created=0), at(13), SETTINGS, Health.UNREACHABLE, id="never-reported-past-grace"),
        pytest.param(
            node(heartbeat=0),
            at(100),
            Settings(grace=GRACE, not_before=at(95)),
            Health.READY,
            id="controller-restarted-gives-full-grace",
        ),
        pytest.param(
            node(heartbeat=0),
            at(108),
            Settings(grace=GRACE, not_before=at(95)),
            Health.UNREACHABLE,
            id="restarted-then-grace-ran-out",
        ),
    ],
)
def test_node_health(n: node_pb2.Node, now: datetime, settings: Settings, expected: Health) -> None:
    assert node_health(n, now=now, settings=settings) is expected


def test_silent_node_gets_unknown_status_and_both_taints() -> None:
    plan = plan_node(node(heartbeat=0), [], now=at(13), settings=SETTINGS, disrupted=False)
    assert plan.health is Health.UNREACHABLE and plan.marked_unknown
    assert plan.node is not None
    cond = ready_condition(plan.node)
    assert cond is not None
    assert (cond.status, cond.reason, cond.message) == ("Unknown", STATUS_UNKNOWN_REASON, STATUS_UNKNOWN_MESSAGE)
    assert cond.last_transition_time.ToDatetime().replace(tzinfo=T0.tzinfo) == at(13)
    assert cond.last_heartbeat_time.ToDatetime().replace(tzinfo=T0.tzinfo) == at(0)
    assert taint_set(plan.node) == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
    assert all(t.time_added.ToDatetime().replace(tzinfo=T0.tzinfo) == at(13) for t in plan.node.spec.taints)


def test_never_reported_node_says_so() -> None:
    plan = plan_node(node(ready=None, created=0), [], now=at(20), settings=SETTINGS, disrupted=False)
    assert plan.node is not None
    cond = ready_condition(plan.node)
    assert cond is not None and (cond.status, cond.reason) == ("Unknown", NEVER_UPDATED_REASON)


def test_unknown_node_with_taints_needs_no_write() -> None:
    n = node(heartbeat=0, ready="Unknown", taints=((UNREACHABLE, "NoSchedule", 13), (UNREACHABLE, "NoExecute", 13)))
    plan = plan_node(n, [], now=at(20), settings=SETTINGS, disrupted=False)
    assert plan.node is None and not plan.marked_unknown


# -- taints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "now", "disrupted", "expected"),
    [
        pytest.param(
            node(heartbeat=0),
            at(13),
            False,
            {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")},
            id="unreachable-gets-both",
        ),
        pytest.param(
            node(heartbeat=0, ready="False"),
            at(1),
            False,
            {(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")},
            id="not-ready-gets-not-ready-taints",
        ),
        pytest.param(
            node(heartbeat=10, taints=((UNREACHABLE, "NoSchedule", 5), (UNREACHABLE, "NoExecute", 5))),
            at(11),
            False,
            set(),
            id="heartbeats-resumed-taints-go",
        ),
        pytest.param(
            node(heartbeat=10, taints=(("dedicated", "NoSchedule", None), (UNREACHABLE, "NoExecute", 5))),
            at(11),
            False,
            {("dedicated", "NoSchedule")},
            id="user-taints-stay",
        ),
        pytest.param(
            node(heartbeat=0), at(13), True, {(UNREACHABLE, "NoSchedule")}, id="full-disruption-withholds-no-execute"
        ),
        pytest.param(
            node(
                heartbeat=0, ready="Unknown", taints=((UNREACHABLE, "NoSchedule", 13), (UNREACHABLE, "NoExecute", 13))
            ),
            at(20),
            True,
            {(UNREACHABLE, "NoSchedule")},
            id="entering-full-disruption-drops-no-execute",
        ),
        pytest.param(node(ready=None, created=0), at(5), False, set(), id="new-node-untouched"),
    ],
)
def test_taints(n: node_pb2.Node, now: datetime, disrupted: bool, expected: set[tuple[str, str]]) -> None:
    plan = plan_node(n, [], now=now, settings=SETTINGS, disrupted=disrupted)
    assert taint_set(plan.node or n) == expected


def test_existing_taint_keeps_its_time_added() -> None:
    n = node(heartbeat=0, ready="Unknown", taints=((UNREACHABLE, "NoSchedule", 13),))
    plan = plan_node(n, [], now=at(30), settings=SETTINGS, disrupted=False)
    assert plan.node is not None
    added = {t.effect: t.time_added.ToDatetime().replace(tzinfo=T0.tzinfo) for t in plan.node.spec.taints}
    assert added == {"NoSchedule": at(13), "NoExecute": at(30)}


def test_no_execute_taint_without_time_gets_stamped() -> None:
    n = node(heartbeat=29, taints=(("maintenance", "NoExecute", None),))
    plan = plan_node(n, [], now=at(30), settings=SETTINGS, disrupted=False)
    assert plan.node is not None
    assert plan.node.spec.taints[0].time_added.ToDatetime().replace(tzinfo=T0.tzinfo) == at(30)


# -- pods marked not ready ------------------------------------------------------------


def test_pods_of_an_unreachable_node_are_marked_not_ready() -> None:
    pods = [pod("a"), pod("b", ready=False), pod("done", phase="Succeeded"), pod("other", node_name="n2")]
    plan = plan_node(node(heartbeat=0), pods, now=at(13), settings=SETTINGS, disrupted=True)
    assert [p.metadata.name for p in plan.pods_not_ready] == ["a"]
    conds = {c.type: (c.status, c.reason) for c in plan.pods_not_ready[0].status.conditions}
    assert conds == {"Ready": ("False", "NodeNotReady"), "ContainersReady": ("False", "NodeNotReady")}
    assert pods[0].status.conditions[0].status == "True", "the cached pod is not changed"


def test_pods_of_a_ready_node_are_left_alone() -> None:
    plan = plan_node(node(heartbeat=0), [pod("a")], now=at(1), settings=SETTINGS, disrupted=False)
    assert plan.pods_not_ready == () and plan.evictions == () and plan.node is None


# -- whether a pod change matters to its node -------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(node(), False, id="ready"),
        pytest.param(
            node(taints=(("dedicated", "NoSchedule", None), (UNREACHABLE, "PreferNoSchedule", None))),
            False,
            id="ready-with-other-taints",
        ),
        pytest.param(node(heartbeat=-600), False, id="ready-but-silent-is-the-node-timers-job"),
        pytest.param(node(ready="False"), True, id="not-ready"),
        pytest.param(node(ready="Unknown"), True, id="unknown"),
        pytest.param(node(ready=None), True, id="no-ready-condition"),
        pytest.param(node(taints=(("maintenance", "NoExecute", None),)), True, id="ready-with-a-no-execute-taint"),
        pytest.param(node(taints=((UNREACHABLE, "NoExecute", 5),)), True, id="ready-with-a-health-no-execute-taint"),
    ],
)
def test_pods_matter(n: node_pb2.Node, expected: bool) -> None:
    assert pods_matter(n) is expected


# -- pods already terminating ------------------------------------------------------------


def _terminating(name: str, node_name: str = "n1") -> pod_pb2.Pod:
    p = pod(name, node_name=node_name)
    p.metadata.deletion_timestamp.FromDatetime(at(30))
    p.metadata.deletion_grace_period_seconds = 30
    return p


@pytest.mark.parametrize(
    ("n", "now", "disrupted", "expected"),
    [
        pytest.param(node(heartbeat=0), at(13), False, ["t"], id="unreachable-node"),
        pytest.param(node(heartbeat=0, ready="False"), at(1), False, ["t"], id="node-says-not-ready"),
        pytest.param(node(heartbeat=0), at(1), False, [], id="ready-node-finishes-it-itself"),
        pytest.param(node(heartbeat=0), at(13), True, [], id="full-disruption-deletes-nothing"),
    ],
)
def test_terminating_pods_of_an_unhealthy_node_are_deleted_at_once(
    n: node_pb2.Node, now: datetime, disrupted: bool, expected: list[str]
) -> None:
    pods = [_terminating("t"), _terminating("elsewhere", node_name="n2"), pod("running")]
    plan = plan_node(n, pods, now=now, settings=SETTINGS, disrupted=disrupted)
    assert [p.metadata.name for p in plan.force_deletions] == expected
    assert "t" not in {p.metadata.name for p in plan.pods_not_ready}
    assert "t" not in {e.pod.metadata.name for e in plan.evictions}


# -- tolerations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "taint", "expected"),
    [
        pytest.param(pod(owned=True), UNREACHABLE_NO_EXECUTE, 5.0, id="default-owned-5s"),
        pytest.param(pod(owned=False), UNREACHABLE_NO_EXECUTE, 300.0, id="default-bare-300s"),
        pytest.param(pod(tolerations=(toleration(seconds=60),)), UNREACHABLE_NO_EXECUTE, 60.0, id="custom-seconds"),
        pytest.param(pod(tolerations=(toleration(),)), UNREACHABLE_NO_EXECUTE, None, id="forever"),
        pytest.param(
            pod(owned=False, tolerations=(toleration("gpu", seconds=1),)),
            UNREACHABLE_NO_EXECUTE,
            300.0,
            id="unrelated-toleration",
        ),
        pytest.param(
            pod(tolerations=(toleration(effect="NoSchedule"),)),
            UNREACHABLE_NO_EXECUTE,
            5.0,
            id="other-effect-does-not-match",
        ),
        pytest.param(
            pod(tolerations=(toleration("", seconds=30),)), UNREACHABLE_NO_EXECUTE, 30.0, id="exists-empty-key-matches"
        ),
        pytest.param(
            pod(tolerations=(toleration("", effect=""),)), UNREACHABLE_NO_EXECUTE, None, id="tolerate-everything"
        ),
        pytest.param(
            pod(tolerations=(toleration(seconds=60), toleration(effect="", seconds=20))),
            UNREACHABLE_NO_EXECUTE,
            20.0,
            id="smallest-of-several",
        ),
        pytest.param(
            pod(tolerations=(toleration(seconds=60), toleration(effect=""))),
            UNREACHABLE_NO_EXECUTE,
            60.0,
            id="seconds-win-over-forever",
        ),
        pytest.param(pod(tolerations=(toleration(seconds=-5),)), UNREACHABLE_NO_EXECUTE, 0.0, id="negative-is-now"),
        pytest.param(
            pod(tolerations=(toleration(NOT_READY, seconds=1),)),
            node_pb2.Taint(key=NOT_READY, effect="NoExecute"),
            1.0,
            id="not-ready-taint",
        ),
        pytest.param(pod(), node_pb2.Taint(key="maintenance", effect="NoExecute"), 0.0, id="untolerated-user-taint"),
        pytest.param(
            pod(tolerations=(toleration("maintenance", operator="Equal", value="yes", seconds=9),)),
            node_pb2.Taint(key="maintenance", value="yes", effect="NoExecute"),
            9.0,
            id="equal-value-matches",
        ),
        pytest.param(
            pod(tolerations=(toleration("maintenance", operator="Equal", value="no", seconds=9),)),
            node_pb2.Taint(key="maintenance", value="yes", effect="NoExecute"),
            0.0,
            id="equal-other-value-does-not",
        ),
    ],
)
def test_toleration_seconds(p: pod_pb2.Pod, taint: node_pb2.Taint, expected: float | None) -> None:
    assert toleration_seconds(p, taint, DEFAULTS) == expected


@pytest.mark.parametrize(
    ("taint_added", "pod_created", "not_before", "expected"),
    [
        pytest.param(10, -50, -1000, 15, id="from-taint-time"),
        pytest.param(10, 12, -1000, 17, id="pod-created-after-taint"),
        pytest.param(10, -50, 30, 35, id="controller-restarted-after-taint"),
    ],
)
def test_eviction_clock_start(taint_added: float, pod_created: float, not_before: float, expected: float) -> None:
    taint = node_pb2.Taint(key=UNREACHABLE, effect="NoExecute")
    taint.time_added.FromDatetime(at(taint_added))
    deadline = eviction_deadline(pod(created=pod_created), [taint], defaults=DEFAULTS, not_before=at(not_before))
    assert deadline is not None and deadline.at == at(expected) and deadline.seconds == 5


# -- evictions in the plan ---------------------------------------------------------------


def _tainted(added: float) -> node_pb2.Node:
    return node(
        heartbeat=0, ready="Unknown", taints=((UNREACHABLE, "NoSchedule", added), (UNREACHABLE, "NoExecute", added))
    )


@pytest.mark.parametrize(
    ("p", "now", "evicted", "recheck"),
    [
        pytest.param(pod(), 17.9, False, 18.0, id="owned-before-5s"),
        pytest.param(pod(), 18.0, True, None, id="owned-at-5s"),
        pytest.param(pod(owned=False), 18.0, False, 313.0, id="bare-waits-300s"),
        pytest.param(pod(owned=False), 313.0, True, None, id="bare-after-300s"),
        pytest.param(pod(tolerations=(toleration(),)), 10_000.0, False, None, id="tolerates-forever"),
        pytest.param(pod(phase="Failed"), 100.0, False, None, id="finished-pods-stay"),
    ],
)
def test_eviction_timing(p: pod_pb2.Pod, now: float, evicted: bool, recheck: float | None) -> None:
    plan = plan_node(_tainted(13), [p], now=at(now), settings=SETTINGS, disrupted=False)
    assert bool(plan.evictions) is evicted
    assert plan.recheck_at == (at(recheck) if recheck is not None else None)


def test_full_disruption_evicts_nothing() -> None:
    pods = [pod("a"), pod("b", owned=False)]
    plan = plan_node(_tainted(13), pods, now=at(10_000), settings=SETTINGS, disrupted=True)
    assert plan.evictions == ()
    assert plan.recheck_at is None
    assert taint_set(plan.node or _tainted(13)) == {(UNREACHABLE, "NoSchedule")}


def test_evictions_come_earliest_first() -> None:
    pods = [pod("late", tolerations=(toleration(seconds=9),)), pod("early", tolerations=(toleration(seconds=1),))]
    plan = plan_node(_tainted(13), pods, now=at(100), settings=SETTINGS, disrupted=False)
    assert [e.pod.metadata.name for e in plan.evictions] == ["early", "late"]
    assert "toleration of 1s ran out" in plan.evictions[0].message("n1")


def test_healthy_node_rechecks_when_its_grace_ends() -> None:
    plan = plan_node(node(heartbeat=0), [pod()], now=at(4), settings=SETTINGS, disrupted=False)
    assert plan.recheck_at == at(12)


# -- full disruption ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("healths", "expected"),
    [
        pytest.param([], False, id="no-nodes"),
        pytest.param([Health.UNREACHABLE], True, id="the-only-node-silent"),
        pytest.param([Health.UNREACHABLE] * 3, True, id="all-silent"),
        pytest.param([Health.UNREACHABLE, Health.UNREACHABLE, Health.READY], False, id="one-ready"),
        pytest.param([Health.UNREACHABLE, Health.NOT_READY], True, id="none-ready"),
        pytest.param([Health.READY], False, id="healthy"),
    ],
)
def test_full_disruption(healths: list[Health], expected: bool) -> None:
    assert full_disruption(healths) is expected


# -- rate limiting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst", "takes", "expected"),
    [
        pytest.param(10.0, 1.0, [0.0], [True], id="full-bucket"),
        pytest.param(10.0, 1.0, [0.0, 0.0], [True, False], id="second-at-once-waits"),
        pytest.param(10.0, 1.0, [0.0, 0.05, 0.1], [True, False, True], id="refills-at-rate"),
        pytest.param(1.0, 3.0, [0.0, 0.0, 0.0, 0.0], [True, True, True, False], id="burst"),
        pytest.param(
            1.0, 2.0, [0.0, 0.0, 100.0, 100.0, 100.0], [True, True, True, True, False], id="refill-capped-at-burst"
        ),
        pytest.param(10.0, 1.0, [5.0, 1.0], [True, False], id="clock-going-back-adds-nothing"),
    ],
)
def test_token_bucket(rate: float, burst: float, takes: list[float], expected: list[bool]) -> None:
    bucket = TokenBucket.full(rate, burst)
    results = []
    for t in takes:
        taken, bucket = bucket.take(at(t))
        results.append(taken)
    assert results == expected


def test_token_bucket_wait() -> None:
    bucket = TokenBucket.full(10.0)
    _, bucket = bucket.take(at(0))
    assert bucket.wait(at(0)) == pytest.approx(0.1)
    assert bucket.wait(at(0.04)) == pytest.approx(0.06)
    assert bucket.wait(at(1)) == 0.0


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_token_bucket_needs_a_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket.full(rate)


@given(
    st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1, max_size=40),
    st.floats(min_value=0.5, max_value=50),
)
def test_token_bucket_never_exceeds_its_rate(gaps: list[float], rate: float) -> None:
    bucket = TokenBucket.full(rate)
    now = T0
    taken = 0
    for gap in gaps:
        now += timedelta(seconds=gap)
        ok, bucket = bucket.take(now)
        taken += ok
    elapsed = (now - T0).total_seconds()
    assert taken <= 1 + elapsed * rate + 1e-6


@given(
    st.lists(st.tuples(st.booleans(), st.one_of(st.none(), st.integers(-5, 400))), max_size=8),
    st.floats(min_value=0, max_value=1000),
)
def test_plan_never_evicts_before_the_deadline(specs: list[tuple[bool, int | None]], now: float) -> None:
    pods = [
        pod(f"p{i}", owned=owned, tolerations=() if s is None else (toleration(seconds=s),))
        for i, (owned, s) in enumerate(specs)
    ]
    tainted = _tainted(13)
    plan = plan_node(tainted, pods, now=at(now), settings=SETTINGS, disrupted=False)
    for eviction in plan.evictions:
        deadline = eviction_deadline(
            eviction.pod, tainted.spec.taints, defaults=SETTINGS.tolerations, not_before=SETTINGS.not_before
        )
        assert deadline is not None and deadline.at <= at(now)
    disrupted = plan_node(tainted, pods, now=at(now), settings=SETTINGS, disrupted=True)
    assert disrupted.evictions == ()
