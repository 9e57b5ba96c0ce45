from datetime import UTC, datetime

from protos.conditions import set_condition
from protos.corral.v1 import pod_pb2

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 1, 2, tzinfo=UTC)


def test_transition_time_moves_only_when_the_status_changes() -> None:
    status = pod_pb2.PodStatus()
    set_condition(status.conditions, "Ready", "False", reason="a", message="m", now=T1)
    set_condition(status.conditions, "Ready", "False", reason="b", message="n", now=T2)
    assert len(status.conditions) == 1
    cond = status.conditions[0]
    assert (cond.reason, cond.message) == ("b", "n")
    assert cond.last_transition_time.ToDatetime(tzinfo=UTC) == T1
    returned = set_condition(status.conditions, "Ready", "True", reason="", message="", now=T2)
    returned.last_probe_time.FromDatetime(T2)
    assert status.conditions[0].last_transition_time.ToDatetime(tzinfo=UTC) == T2
    assert status.conditions[0].last_probe_time.ToDatetime(tzinfo=UTC) == T2
