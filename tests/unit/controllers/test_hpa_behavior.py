"""Scaling behavior (`autoscaler.behavior`): stabilization windows, rate-limit policies, bounds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane.controllers.autoscaler import behavior
from protos import autoscaling
from protos.corral.v1 import metrics_pb2
from tests.unit.controllers.hpa_builders import NOW, Rules


def recs(*items: tuple[float, int]) -> list[metrics_pb2.ScaleRecommendation]:
    """Recommendations made `seconds` before NOW."""
    out = []
    for ago, replicas in items:
        rec = metrics_pb2.ScaleRecommendation(replicas=replicas)
        rec.time.FromDatetime(NOW - timedelta(seconds=ago))
        out.append(rec)
    return out


def events(*items: tuple[float, int]) -> list[metrics_pb2.ScaleEvent]:
    """Scale events `seconds` before NOW."""
    out = []
    for ago, change in items:
        event = metrics_pb2.ScaleEvent(change=change)
        event.time.FromDatetime(NOW - timedelta(seconds=ago))
        out.append(event)
    return out


@pytest.mark.parametrize(
    ("desired", "current", "history", "up_window", "down_window", "expected"),
    [
        pytest.param(4, 2, [], 0, 300, 4, id="no-history"),
        pytest.param(2, 4, recs((100, 4)), 0, 300, 4, id="down-held-by-window"),
        pytest.param(2, 4, recs((400, 4), (310, 2)), 0, 300, 2, id="down-after-window"),
        pytest.param(2, 4, recs((400, 4), (290, 2)), 0, 300, 4, id="held-until-replaced"),
        pytest.param(2, 6, recs((200, 6), (100, 3)), 0, 300, 6, id="highest-in-window"),
        pytest.param(2, 6, recs((400, 6), (350, 3)), 0, 300, 3, id="highest-still-in-window"),
        pytest.param(8, 4, recs((30, 4)), 0, 300, 8, id="up-without-window"),
        pytest.param(8, 4, recs((30, 4)), 60, 300, 4, id="up-held-by-window"),
        pytest.param(8, 4, recs((100, 4), (70, 6)), 60, 300, 6, id="up-lowest-in-window"),
        pytest.param(8, 4, recs((200, 4), (70, 8)), 60, 300, 8, id="up-after-window"),
        pytest.param(3, 4, recs((30, 4)), 0, 0, 3, id="no-down-window"),
    ],
)
def test_stabilize(
    desired: int,
    current: int,
    history: list[metrics_pb2.ScaleRecommendation],
    up_window: int,
    down_window: int,
    expected: int,
) -> None:
    assert (
        behavior.stabilize(desired, current, history, up_window=up_window, down_window=down_window, now=NOW) == expected
    )


@pytest.mark.parametrize(
    ("current", "rules", "history", "expected"),
    [
        pytest.param(2, None, [], 6, id="default-four-pods"),
        pytest.param(10, None, [], 20, id="default-double"),
        pytest.param(10, Rules(0, "Max", [("Percent", 50, 60)]), [], 15, id="percent"),
        pytest.param(3, Rules(0, "Max", [("Percent", 50, 60)]), [], 5, id="percent-rounds-up"),
        pytest.param(10, Rules(0, "Max", [("Pods", 2, 60)]), events((30, 1)), 11, id="pods-minus-recent-change"),
        pytest.param(10, Rules(0, "Max", [("Pods", 2, 60)]), events((90, 1)), 12, id="old-change-forgotten"),
        pytest.param(10, Rules(0, "Max", [("Pods", 2, 60)]), events((30, -3)), 15, id="removed-pods-count-back"),
        pytest.param(10, Rules(0, "Max", [("Pods", 2, 60), ("Percent", 50, 60)]), [], 15, id="select-max"),
        pytest.param(10, Rules(0, "Min", [("Pods", 2, 60), ("Percent", 50, 60)]), [], 12, id="select-min"),
        pytest.param(10, Rules(0, "Disabled", [("Pods", 2, 60)]), [], 10, id="disabled"),
    ],
)
def test_scale_up_limit(
    current: int, rules: Rules | None, history: list[metrics_pb2.ScaleEvent], expected: int
) -> None:
    message = rules.message() if rules else autoscaling.default_scale_up()
    assert behavior.scale_up_limit(current, message, history, NOW) == expected


@pytest.mark.parametrize(
    ("current", "rules", "history", "expected"),
    [
        pytest.param(10, None, [], 0, id="default-all-at-once"),
        pytest.param(10, Rules(0, "Max", [("Percent", 50, 60)]), [], 5, id="percent"),
        pytest.param(5, Rules(0, "Max", [("Percent", 50, 60)]), [], 2, id="percent-rounds-down"),
        pytest.param(10, Rules(0, "Max", [("Pods", 3, 60)]), events((30, -2)), 9, id="pods-minus-recent"),
        pytest.param(10, Rules(0, "Max", [("Pods", 3, 60), ("Percent", 50, 60)]), [], 5, id="select-max"),
        pytest.param(10, Rules(0, "Min", [("Pods", 3, 60), ("Percent", 50, 60)]), [], 7, id="select-min"),
        pytest.param(10, Rules(0, "Disabled", [("Pods", 3, 60)]), [], 10, id="disabled"),
    ],
)
def test_scale_down_limit(
    current: int, rules: Rules | None, history: list[metrics_pb2.ScaleEvent], expected: int
) -> None:
    message = rules.message() if rules else autoscaling.default_scale_down()
    assert behavior.scale_down_limit(current, message, history, NOW) == expected


@pytest.mark.parametrize(
    ("desired", "current", "low", "high", "expected", "reason"),
    [
        pytest.param(5, 4, 1, 10, 5, "DesiredWithinRange", id="within"),
        pytest.param(30, 10, 1, 12, 12, "TooManyReplicas", id="max"),
        pytest.param(30, 2, 1, 12, 6, "ScaleUpLimit", id="rate-up"),
        pytest.param(0, 4, 2, 10, 2, "TooFewReplicas", id="min"),
        pytest.param(1, 10, 1, 10, 5, "ScaleDownLimit", id="rate-down"),
    ],
)
def test_limit_rate(desired: int, current: int, low: int, high: int, expected: int, reason: str) -> None:
    down = Rules(300, "Max", [("Percent", 50, 15)]).message()
    replicas, why = behavior.limit_rate(
        desired,
        current,
        min_replicas=low,
        max_replicas=high,
        up=autoscaling.default_scale_up(),
        down=down,
        scale_events=[],
        now=NOW,
    )
    assert (replicas, why.reason) == (expected, reason)


def test_history_is_change_points_trimmed_to_the_longest_window() -> None:
    history = recs((500, 3), (400, 5), (200, 4))
    kept = behavior.remember_recommendation(history, 4, now=NOW, keep=300)
    # 3 was replaced 400 s ago (outside), 5 held until 200 s ago (inside); 4 is unchanged: no new point.
    assert [r.replicas for r in kept] == [5, 4]
    kept = behavior.remember_recommendation(kept, 2, now=NOW, keep=300)
    assert [r.replicas for r in kept] == [5, 4, 2]
    assert behavior.remember_recommendation(kept, 2, now=NOW, keep=0) == kept[-1:]


def test_scale_events_trimmed_to_the_longest_period() -> None:
    kept = behavior.remember_scale(events((100, 2), (10, 1)), -3, now=NOW, keep=60)
    assert [e.change for e in kept] == [1, -3]
    assert [e.change for e in behavior.remember_scale(kept, 0, now=NOW, keep=60)] == [1, -3]
