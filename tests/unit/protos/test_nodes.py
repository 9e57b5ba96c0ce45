"""Node facts (protos/nodes.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protos import nodes
from protos.corral.v1 import node_pb2

BEAT = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)


def node(*conditions: tuple[str, str], beat: bool = False) -> node_pb2.Node:
    n = node_pb2.Node()
    for type_, status in conditions:
        c = n.status.conditions.add(type=type_, status=status)
        if beat:
            c.last_heartbeat_time.FromDatetime(BEAT)
    return n


@pytest.mark.parametrize(
    ("n", "ready"),
    [
        pytest.param(None, False, id="no-node"),
        pytest.param(node(), False, id="no-condition"),
        pytest.param(node(("Ready", "True")), True, id="ready"),
        pytest.param(node(("Ready", "False")), False, id="not-ready"),
        pytest.param(node(("Ready", "Unknown")), False, id="unknown"),
        pytest.param(node(("MemoryPressure", "True")), False, id="other-condition"),
    ],
)
def test_is_ready(n: node_pb2.Node | None, ready: bool) -> None:
    assert nodes.is_ready(n) is ready


@pytest.mark.parametrize(
    ("n", "beat"),
    [
        pytest.param(node(), None, id="no-condition"),
        pytest.param(node(("Ready", "True")), None, id="never-beat"),
        pytest.param(node(("Ready", "False"), beat=True), BEAT, id="beat"),
    ],
)
def test_last_heartbeat(n: node_pb2.Node, beat: datetime | None) -> None:
    assert nodes.last_heartbeat(n) == beat
