"""Statuses, profiles, the registry and the default profile."""

from __future__ import annotations

import pytest

from controlplane.scheduler.framework import (
    SUCCESS,
    FilterPlugin,
    ScorePlugin,
    Status,
    WeightedScore,
    build_profile,
)
from controlplane.scheduler.plugins import REGISTRY, default_profile
from controlplane.scheduler.plugins.spread import Spread
from controlplane.scheduler.snapshot import LEAST_ALLOCATED, MOST_ALLOCATED

from .builders import pod


def test_weighted_score_defaults_to_weight_one() -> None:
    assert WeightedScore(Spread()).weight == 1


def test_status() -> None:
    assert SUCCESS.ok
    assert SUCCESS.reasons == ()
    rejected = Status.reject("insufficient cpu", "insufficient memory")
    assert not rejected.ok
    assert rejected.reasons == ("insufficient cpu", "insufficient memory")


def test_registry_maps_names_to_plugins() -> None:
    assert set(REGISTRY) == {
        "NodeReady",
        "Runtime",
        "ResourcesFit",
        "HostPorts",
        "NodeSelector",
        "Taints",
        "VolumeBinding",
        "Spread",
        "LeastAllocated",
        "MostAllocated",
    }
    for name, plugin in REGISTRY.items():
        assert plugin.name == name
        assert isinstance(plugin, FilterPlugin | ScorePlugin)


def test_default_profile_runs_filters_cheap_first() -> None:
    profile = default_profile()
    assert [f.name for f in profile.filters] == [
        "NodeReady",
        "Runtime",
        "ResourcesFit",
        "HostPorts",
        "NodeSelector",
        "Taints",
        "VolumeBinding",
    ]
    assert [(w.plugin.name, w.weight) for w in profile.scores] == [("Spread", 1)]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        pytest.param(LEAST_ALLOCATED, ["Spread", "LeastAllocated"], id="least"),
        pytest.param(MOST_ALLOCATED, ["Spread", "MostAllocated"], id="most"),
        pytest.param("Other", ["Spread"], id="unknown-strategy-adds-nothing"),
    ],
)
def test_profile_picks_the_strategy_score_per_pod(strategy: str, expected: list[str]) -> None:
    scores = default_profile().scores_for(pod(strategy=strategy))
    assert [w.plugin.name for w in scores] == expected


@pytest.mark.parametrize(
    ("filters", "scores", "message"),
    [
        pytest.param(["NodeReady", "Nope"], {}, "unknown scheduler plugin 'Nope'", id="unknown-name"),
        pytest.param(["Spread"], {}, "'Spread' is not a filter", id="score-as-filter"),
        pytest.param([], {"Taints": 1}, "'Taints' is not a score plugin", id="filter-as-score"),
        pytest.param([], {"Spread": 0}, "weight must be >= 1", id="zero-weight"),
    ],
)
def test_build_profile_refuses_bad_names(filters: list[str], scores: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_profile(REGISTRY, "custom", filters=filters, scores=scores, strategies={})


def test_build_profile_resolves_names() -> None:
    profile = build_profile(
        REGISTRY,
        "packer",
        filters=["ResourcesFit"],
        scores={"Spread": 3},
        strategies={LEAST_ALLOCATED: ("MostAllocated", 2)},
    )
    assert profile.name == "packer"
    assert [f.name for f in profile.filters] == ["ResourcesFit"]
    assert [(w.plugin.name, w.weight) for w in profile.scores] == [("Spread", 3)]
    assert isinstance(profile.scores[0].plugin, Spread)
    assert profile.strategies[LEAST_ALLOCATED].plugin.name == "MostAllocated"
