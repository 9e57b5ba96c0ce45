"""How `corral get` and `corral describe` show ResourceQuotas and LimitRanges (as kubectl does)."""

from __future__ import annotations

from datetime import UTC, datetime

from corral.cli import describe, printers
from protos import codec
from protos.corral.v1 import quota_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HARD = {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}


def team() -> quota_pb2.ResourceQuota:
    data = {
        "metadata": {"name": "team", "namespace": "default", "creationTimestamp": "2026-12-07T11:00:00Z"},
        "spec": {"hard": HARD},
        "status": {"hard": HARD, "used": {"pods": "1", "requests.cpu": "200m", "limits.memory": "256Mi"}},
    }
    message, errors = codec.from_dict(data, quota_pb2.ResourceQuota)
    assert not errors
    return message


def test_get_quota_shows_requests_and_limits_as_used_over_hard() -> None:
    info = by_kind("ResourceQuota")
    assert printers.table_headers(info, wide=False, all_namespaces=False) == ["NAME", "AGE", "REQUEST", "LIMIT"]
    row = printers.table_row(info, team(), NOW, wide=False, all_namespaces=False)
    assert row == ["team", "60m", "pods: 1/2, requests.cpu: 200m/1", "limits.memory: 256Mi/1Gi"]


def test_get_limits_shows_when_it_was_created() -> None:
    lr = quota_pb2.LimitRange()
    lr.metadata.name = "defaults"
    lr.metadata.creation_timestamp.FromJsonString("2026-12-07T11:00:00Z")
    info = by_kind("LimitRange")
    assert printers.table_headers(info, wide=False, all_namespaces=False) == ["NAME", "CREATED AT"]
    assert printers.table_row(info, lr, NOW, wide=False, all_namespaces=False) == ["defaults", "2026-12-07T11:00:00Z"]


def test_describe_tables() -> None:
    shown = describe.describe(team(), [], NOW).splitlines()
    assert [line.split() for line in shown if line.startswith(("Resource ", "pods", "limits"))] == [
        ["Resource", "Used", "Hard"],
        ["limits.memory", "256Mi", "1Gi"],
        ["pods", "1", "2"],
    ]
    lr, errors = codec.from_dict(
        {"metadata": {"name": "d"}, "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}},
        quota_pb2.LimitRange,
    )
    assert not errors
    lines = describe.describe(lr, [], NOW).splitlines()
    assert ["Container", "cpu", "-", "1", "-", "-", "-"] in [line.split() for line in lines]
