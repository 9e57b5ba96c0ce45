"""Which control plane replica an agent dials first."""

from __future__ import annotations

from collections import Counter

import pytest

from agent.node.session import first_server


@pytest.mark.parametrize(
    ("name", "servers", "expected"),
    [
        pytest.param("n1", 1, 0, id="one-server"),
        pytest.param("n1", 0, 0, id="no-list"),
    ],
)
def test_single_server_is_always_first(name: str, servers: int, expected: int) -> None:
    assert first_server(name, servers) == expected


def test_choice_is_stable_per_node() -> None:
    assert first_server("edge-0042", 3) == first_server("edge-0042", 3)


def test_a_thousand_agents_split_about_evenly_over_three_replicas() -> None:
    counts = Counter(first_server(f"hollow-{i:04d}", 3) for i in range(1000))
    assert set(counts) == {0, 1, 2}
    # An even split is 333 each; a fair hash stays well within ±15%.
    assert all(283 <= c <= 383 for c in counts.values()), counts


def test_names_that_differ_in_one_character_still_spread() -> None:
    counts = Counter(first_server(f"node{i}", 2) for i in range(200))
    assert min(counts.values()) >= 80, counts
