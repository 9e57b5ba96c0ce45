"""Node health from the Lease's renewTime and, for nodes without one (heartbeats served by a control
plane of the previous version), from the Ready condition's lastHeartbeatTime: over driven clocks."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from controlplane.controllers.nodelifecycle.reconcile import Health, Settings, node_health, plan_node
from tests.unit.controllers.lifecycle_builders import T0, at, node

SETTINGS = Settings(grace=timedelta(seconds=12), not_before=T0 - timedelta(hours=1))


@pytest.mark.parametrize(
    ("heartbeat", "renewed", "now", "health"),
    [
        pytest.param(0.0, 100.0, 105.0, Health.READY, id="lease-fresh-node-stamp-old"),
        pytest.param(0.0, 100.0, 113.0, Health.UNREACHABLE, id="lease-stale"),
        pytest.param(100.0, None, 105.0, Health.READY, id="old-style-fresh"),
        pytest.param(100.0, None, 113.0, Health.UNREACHABLE, id="old-style-stale"),
        pytest.param(100.0, 50.0, 105.0, Health.READY, id="node-stamp-newer-than-lease"),
        pytest.param(0.0, 0.0, 300.0, Health.UNREACHABLE, id="both-stale"),
    ],
)
def test_health_from_lease_or_heartbeat(heartbeat: float, renewed: float | None, now: float, health: Health) -> None:
    renewed_at: datetime | None = None if renewed is None else at(renewed)
    assert node_health(node(heartbeat=heartbeat), now=at(now), settings=SETTINGS, renewed=renewed_at) is health


def test_a_fresh_lease_keeps_the_node_ready_and_sets_the_next_check() -> None:
    plan = plan_node(node(heartbeat=0.0), [], now=at(200), settings=SETTINGS, disrupted=False, renewed=at(196))
    assert plan.health is Health.READY and plan.node is None
    assert plan.recheck_at == at(196 + 12)


def test_a_stale_lease_marks_the_node_unknown() -> None:
    plan = plan_node(node(heartbeat=0.0), [], now=at(200), settings=SETTINGS, disrupted=False, renewed=at(150))
    assert plan.health is Health.UNREACHABLE and plan.marked_unknown
    assert plan.node is not None
    assert {(t.key, t.effect) for t in plan.node.spec.taints} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
    }
