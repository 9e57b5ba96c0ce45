"""Backend selection for one Service port: agent/network/proxy/endpoints.py."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from agent.network.proxy.endpoints import LEAST_CONNECTIONS, Backend, Balancer, backends_of
from protos.corral.v1 import discovery_pb2

A = Backend("10.0.0.1", 8080, pod="a", group="blue")
B = Backend("10.0.0.2", 8080, pod="b", group="blue")
C = Backend("10.0.0.3", 8080, pod="c", group="green")
NOW = 1000.0


def picks(balancer: Balancer, count: int, *, now: float = NOW, exclude: frozenset[str] = frozenset()) -> list[str]:
    chosen = []
    for _ in range(count):
        backend = balancer.pick(now, exclude)
        chosen.append(backend.pod if backend else "-")
    return chosen


# -- round robin and least connections ------------------------------------------------


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        pytest.param([A, B, C], ["a", "b", "c", "a", "b", "c"], id="in-order"),
        pytest.param([A], ["a", "a", "a"], id="single"),
        pytest.param([], ["-", "-"], id="none"),
        pytest.param([A, A, B], ["a", "b", "a", "b"], id="duplicates-count-once"),
    ],
)
def test_round_robin(backends: list[Backend], expected: list[str]) -> None:
    assert picks(Balancer(backends), len(expected)) == expected


def test_round_robin_goes_on_after_the_previous_pick_when_backends_change() -> None:
    balancer = Balancer([A, B, C])
    assert picks(balancer, 2) == ["a", "b"]

    balancer.update([A, B, C, Backend("10.0.0.4", 8080, pod="d")])
    assert picks(balancer, 3) == ["c", "d", "a"]

    balancer.update([A, C])  # the previous pick ("a") remains
    assert picks(balancer, 2) == ["c", "a"]


def test_exclude_skips_backends_already_tried() -> None:
    balancer = Balancer([A, B, C])
    assert picks(balancer, 2, exclude=frozenset({A.key})) == ["b", "c"]
    assert picks(balancer, 1, exclude=frozenset({A.key, B.key, C.key})) == ["-"]


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        pytest.param({"a": 3, "b": 1, "c": 2}, ["b", "b"], id="fewest-wins"),
        pytest.param({"a": 1, "b": 0, "c": 0}, ["b", "c", "b"], id="ties-round-robin"),
        pytest.param({}, ["a", "b", "c"], id="all-idle"),
    ],
)
def test_least_connections(active: dict[str, int], expected: list[str]) -> None:
    balancer = Balancer([A, B, C], algorithm=LEAST_CONNECTIONS)
    for backend in (A, B, C):
        for _ in range(active.get(backend.pod, 0)):
            balancer.opened(backend.key)
    assert picks(balancer, len(expected)) == expected


def test_least_connections_follows_opened_and_closed() -> None:
    balancer = Balancer([A, B], algorithm=LEAST_CONNECTIONS)
    first = balancer.pick(NOW)
    assert first is not None
    balancer.opened(first.key)
    second = balancer.pick(NOW)
    assert second is not None and second != first
    balancer.opened(second.key)
    balancer.closed(first.key)

    assert balancer.pick(NOW) == first
    balancer.closed(first.key)
    balancer.closed(first.key)  # never below zero
    assert balancer.active(first.key) == 0


def test_unknown_algorithm_is_round_robin() -> None:
    assert picks(Balancer([A, B], algorithm="Random"), 3) == ["a", "b", "a"]


# -- passive health -------------------------------------------------------------------


def test_a_failed_backend_is_ejected_until_its_time_is_up() -> None:
    balancer = Balancer([A, B], eject_seconds=10)
    assert balancer.failed(A.key, NOW) == 10

    assert picks(balancer, 3, now=NOW + 9.9) == ["b", "b", "b"]
    assert balancer.ejected(A.key, NOW + 9.9)
    assert not balancer.ejected(A.key, NOW + 10)
    assert sorted(picks(balancer, 2, now=NOW + 10)) == ["a", "b"]


@pytest.mark.parametrize(
    ("failures", "ejected_for"),
    [
        pytest.param(1, 10, id="first"),
        pytest.param(2, 20, id="doubles"),
        pytest.param(3, 40, id="doubles-again"),
        pytest.param(4, 60, id="capped"),
        pytest.param(6, 60, id="stays-capped"),
    ],
)
def test_ejection_doubles_on_repeated_failures(failures: int, ejected_for: float) -> None:
    balancer = Balancer([A, B], eject_seconds=10, eject_max=60)
    now = NOW
    result = 0.0
    for _ in range(failures):
        result = balancer.failed(A.key, now)
        now += result  # tried again once the ejection ended, and failed again
    assert result == ejected_for


def test_a_successful_connect_resets_the_ejection() -> None:
    balancer = Balancer([A, B], eject_seconds=10)
    balancer.failed(A.key, NOW)
    balancer.failed(A.key, NOW + 10)
    balancer.opened(A.key)

    assert not balancer.ejected(A.key, NOW + 11)
    assert balancer.failed(A.key, NOW + 20) == 10


def test_when_every_backend_is_ejected_they_are_tried_anyway() -> None:
    balancer = Balancer([A, B])
    balancer.failed(A.key, NOW)
    balancer.failed(B.key, NOW)

    assert picks(balancer, 3) == ["a", "b", "a"]
    assert picks(balancer, 1, exclude=frozenset({A.key})) == ["b"]


def test_updates_keep_counts_and_ejections_of_remaining_backends() -> None:
    balancer = Balancer([A, B], algorithm=LEAST_CONNECTIONS)
    balancer.opened(B.key)
    balancer.failed(A.key, NOW)

    removed = balancer.update([A, B, C], algorithm=LEAST_CONNECTIONS)
    assert removed == set()
    assert balancer.active(B.key) == 1
    assert balancer.ejected(A.key, NOW + 1)

    removed = balancer.update([A, C])
    assert removed == {B.key}
    assert balancer.backend_keys() == {A.key, C.key}
    assert balancer.active(B.key) == 0


# -- weighted groups -------------------------------------------------------------------


def blue_green(blue: int = 10, green: int = 10) -> list[Backend]:
    return [Backend(f"10.0.1.{i}", 80, pod=f"blue-{i}", group="blue") for i in range(blue)] + [
        Backend(f"10.0.2.{i}", 80, pod=f"green-{i}", group="green") for i in range(green)
    ]


def group_counts(balancer: Balancer, count: int, *, now: float = NOW) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(count):
        backend = balancer.pick(now)
        counts[backend.group if backend else "-"] += 1
    return counts


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        pytest.param({"blue": 90, "green": 10}, {"blue": 1800, "green": 200}, id="canary-10-percent"),
        pytest.param({"blue": 1, "green": 1}, {"blue": 1000, "green": 1000}, id="even"),
        pytest.param({"blue": 100, "green": 0}, {"blue": 2000}, id="weight-0-never-picked"),
        pytest.param({"blue": 0, "green": 100}, {"green": 2000}, id="switched-over"),
        pytest.param({"green": 5}, {"green": 2000}, id="group-missing-from-map-gets-nothing"),
        pytest.param({"blue": 0, "green": 0}, {"-": 2000}, id="all-zero-no-backend"),
        pytest.param({}, {"blue": 1000, "green": 1000}, id="no-weights-all-equal"),
    ],
)
def test_smooth_weights_over_2000_picks(weights: dict[str, int], expected: dict[str, int]) -> None:
    balancer = Balancer(blue_green(), weights=weights)
    assert dict(group_counts(balancer, 2000)) == expected


def test_weighted_picks_are_spread_not_bunched() -> None:
    balancer = Balancer(blue_green(), weights={"blue": 90, "green": 10})
    groups = [b.group if b else "-" for b in (balancer.pick(NOW) for _ in range(100))]
    green_at = [i for i, g in enumerate(groups) if g == "green"]

    assert len(green_at) == 10
    assert all(later - earlier == 10 for earlier, later in itertools.pairwise(green_at))


def test_round_robin_within_a_weighted_group() -> None:
    balancer = Balancer(blue_green(blue=3, green=1), weights={"blue": 3, "green": 1})
    pods = [b.pod if b else "-" for b in (balancer.pick(NOW) for _ in range(8))]

    assert Counter(pods) == {"blue-0": 2, "blue-1": 2, "blue-2": 2, "green-0": 2}


def test_a_group_whose_backends_are_all_ejected_yields_to_the_others() -> None:
    backends = blue_green(blue=2, green=1)
    balancer = Balancer(backends, weights={"blue": 50, "green": 50})
    green = next(b for b in backends if b.group == "green")
    balancer.failed(green.key, NOW)

    assert group_counts(balancer, 100) == {"blue": 100}
    assert group_counts(balancer, 100, now=NOW + 10) == {"blue": 50, "green": 50}


def test_weight_0_group_is_not_a_fallback_when_the_others_are_ejected() -> None:
    backends = blue_green(blue=1, green=1)
    balancer = Balancer(backends, weights={"blue": 100, "green": 0})
    balancer.failed(backends[0].key, NOW)

    assert group_counts(balancer, 10) == {"blue": 10}


def test_backends_of_a_route_port() -> None:
    port = discovery_pb2.RoutePort(
        name="http",
        port=80,
        backends=[discovery_pb2.RouteBackend(address="10.0.0.1", port=31000, pod="web-1", node="n1", group="abc")],
    )

    assert backends_of(port) == [Backend("10.0.0.1", 31000, pod="web-1", node="n1", group="abc")]
    assert backends_of(port)[0].key == "10.0.0.1:31000"


def test_eject_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Balancer([A], eject_seconds=0)
