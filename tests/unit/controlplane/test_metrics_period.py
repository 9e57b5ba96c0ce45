"""The metrics period the control plane hands out: 10 s, stretched on large clusters, capped
so that the metrics store's readers (corral top, the HPA) still see every node."""

from __future__ import annotations

import pytest

from controlplane.metrics import store
from controlplane.metrics.period import BASE_PERIOD, MAX_PERIOD, metrics_period
from controlplane.nodeapi.service import NodeService


@pytest.mark.parametrize(
    ("nodes", "period"),
    [
        pytest.param(0, 10, id="none"),
        pytest.param(100, 10, id="small"),
        pytest.param(1000, 10, id="1000-keeps-10s"),
        pytest.param(1001, 11, id="just-past-the-budget"),
        pytest.param(2000, 20, id="2000"),
        pytest.param(3000, 30, id="3000-at-the-ceiling"),
        pytest.param(5000, 30, id="5000-capped"),
    ],
)
def test_period_follows_the_budget(nodes: int, period: int) -> None:
    assert metrics_period(nodes) == period


def test_a_base_above_the_ceiling_wins() -> None:
    assert metrics_period(10, base=45, ceiling=30) == 45


def test_the_ceiling_leaves_the_store_two_reports_per_age_and_window() -> None:
    assert BASE_PERIOD <= MAX_PERIOD
    assert 2 * MAX_PERIOD <= store.DEFAULT_MAX_AGE
    assert 2 * MAX_PERIOD <= store.DEFAULT_RATE_WINDOW


@pytest.mark.parametrize(
    ("connected", "period"),
    [
        pytest.param(900, 10, id="900"),
        pytest.param(2500, 25, id="2500"),
        pytest.param(5000, 30, id="5000"),
    ],
)
def test_the_node_service_hands_out_the_period_for_its_nodes(connected: int, period: int) -> None:
    svc = NodeService.__new__(NodeService)
    svc.connected = {f"n{i}" for i in range(connected)}
    assert svc.metrics_period() == period
