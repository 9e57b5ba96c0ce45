"""Every score plugin, as named table cases: (pod, node) -> 0..100."""

from __future__ import annotations

import pytest

from controlplane.scheduler.framework import ScorePlugin
from controlplane.scheduler.plugins.least_allocated import LeastAllocated
from controlplane.scheduler.plugins.most_allocated import MostAllocated
from controlplane.scheduler.plugins.spread import Spread
from controlplane.scheduler.snapshot import NodeInfo, PodRequest, Resources

from .builders import GI, node, pod


@pytest.mark.parametrize(
    ("p", "n", "expected"),
    [
        pytest.param(pod(owner_uid="rs"), node(), 100, id="none-of-owner"),
        pytest.param(pod(owner_uid="rs"), node(pods_per_owner={"other": 5}), 100, id="only-other-owners"),
        pytest.param(pod(owner_uid="rs"), node(pods_per_owner={"rs": 1}), 50, id="one-of-owner"),
        pytest.param(pod(owner_uid="rs"), node(pods_per_owner={"rs": 3}), 25, id="three-of-owner"),
        pytest.param(pod(), node(pods_per_owner={"rs": 3}), 100, id="no-owner"),
    ],
)
def test_spread(p: PodRequest, n: NodeInfo, expected: int) -> None:
    assert Spread().score(p, n) == expected


@pytest.mark.parametrize(
    ("p", "n", "expected"),
    [
        # cpu (4000-1000)/4000 = 75, memory (8-2)/8 = 75
        pytest.param(pod(cpu=1000, memory=2 * GI), node(cpu=4000, memory=8 * GI), 75, id="empty-node"),
        # cpu (4000-3000)/4000 = 25, memory (8-4)/8 = 50 -> 37
        pytest.param(
            pod(cpu=1000, memory=2 * GI),
            node(cpu=4000, memory=8 * GI, nonzero_requested=Resources(2000, 2 * GI)),
            37,
            id="partly-used-averages-and-floors",
        ),
        pytest.param(pod(cpu=4000, memory=8 * GI), node(cpu=4000, memory=8 * GI), 0, id="full-after"),
        pytest.param(pod(cpu=5000, memory=GI), node(cpu=4000, memory=8 * GI), 43, id="over-capacity-resource-is-0"),
        pytest.param(pod(cpu=1000, memory=GI), node(cpu=0, memory=0), 0, id="nothing-allocatable"),
        # best-effort pod counts as 100m / 200Mi: cpu 97, memory 97 (200Mi of 8Gi)
        pytest.param(pod(), node(cpu=4000, memory=8 * GI), 97, id="best-effort-counts-defaults"),
    ],
)
def test_least_allocated(p: PodRequest, n: NodeInfo, expected: int) -> None:
    assert LeastAllocated().score(p, n) == expected


@pytest.mark.parametrize(
    ("p", "n", "expected"),
    [
        pytest.param(pod(cpu=1000, memory=2 * GI), node(cpu=4000, memory=8 * GI), 25, id="empty-node"),
        # cpu 3000/4000 = 75, memory 4/8 = 50 -> 62
        pytest.param(
            pod(cpu=1000, memory=2 * GI),
            node(cpu=4000, memory=8 * GI, nonzero_requested=Resources(2000, 2 * GI)),
            62,
            id="partly-used-averages-and-floors",
        ),
        pytest.param(pod(cpu=4000, memory=8 * GI), node(cpu=4000, memory=8 * GI), 100, id="full-after"),
        pytest.param(pod(cpu=8000, memory=GI), node(cpu=4000, memory=8 * GI), 56, id="over-capacity-capped-at-100"),
        pytest.param(pod(cpu=1000, memory=GI), node(cpu=0, memory=0), 0, id="nothing-allocatable"),
    ],
)
def test_most_allocated(p: PodRequest, n: NodeInfo, expected: int) -> None:
    assert MostAllocated().score(p, n) == expected


@pytest.mark.parametrize("plugin", [Spread(), LeastAllocated(), MostAllocated()], ids=lambda p: p.name)
@pytest.mark.parametrize(
    "n",
    [
        pytest.param(node(), id="empty"),
        pytest.param(node(nonzero_requested=Resources(10**9, 10**15), pods_per_owner={"rs": 99}), id="overfull"),
        pytest.param(node(cpu=0, memory=0), id="zero-node"),
    ],
)
def test_scores_stay_in_range(plugin: ScorePlugin, n: NodeInfo) -> None:
    assert 0 <= plugin.score(pod(cpu=500, memory=GI, owner_uid="rs"), n) <= 100
