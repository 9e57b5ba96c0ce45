"""`corral drain`'s evictions against a fake client: a pod a disruption budget
refuses is asked for again until it goes or the timeout passes, saying what it
waits for as kubectl does; --disable-eviction deletes instead; `corral get pdb`
shows kubectl's columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral import client as api
from corral.cli import nodes, printers
from protos.corral.v1 import pod_pb2, policy_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    return p


class FakeClient:
    """Refuses each pod's first `refusals[name]` evictions as a budget would."""

    def __init__(self, refusals: dict[str, int]) -> None:
        self.refusals = dict(refusals)
        self.calls: list[tuple[str, str]] = []

    def evict(self, name: str, namespace: str = "", **_: Any) -> pod_pb2.Pod:
        self.calls.append(("evict", name))
        if self.refusals.get(name, 0) > 0:
            self.refusals[name] -= 1
            cause = api.FieldCause(
                "DisruptionBudget", "The disruption budget web needs 1 healthy pods and has 1 currently"
            )
            raise api.TooManyRequestsError("Cannot evict pod as it would violate the pod's disruption budget.", [cause])
        return pod(name)

    def delete(self, kind: str, name: str, namespace: str = "", **_: Any) -> pod_pb2.Pod:
        self.calls.append(("delete", name))
        return pod(name)


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodes.time, "sleep", lambda _: None)


def test_a_refused_eviction_is_retried_until_the_budget_allows_it(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeClient({"web-2": 2})
    result = nodes._evict_pods(fake, [pod("web-1"), pod("web-2")], None, None, eviction=True)  # type: ignore[arg-type]
    assert [p.metadata.name for p in result.done] == ["web-1", "web-2"] and not result.refused
    assert fake.calls == [("evict", "web-1"), ("evict", "web-2"), ("evict", "web-2"), ("evict", "web-2")]
    err = capsys.readouterr().err
    assert (
        err.count(
            'error when evicting pods/"web-2" -n "default" (will retry after 5s): Cannot evict pod as it would '
            "violate the pod's disruption budget. The disruption budget web needs 1 healthy pods and has 1 currently"
        )
        == 2
    )


def test_a_refused_eviction_stops_at_the_deadline() -> None:
    fake = FakeClient({"web-2": 1000})
    result = nodes._evict_pods(fake, [pod("web-1"), pod("web-2")], 5, 0.0, eviction=True)  # type: ignore[arg-type]
    assert [p.metadata.name for p in result.done] == ["web-1"]
    assert [p.metadata.name for p in result.refused] == ["web-2"]


def test_disable_eviction_deletes_without_asking_a_budget() -> None:
    fake = FakeClient({"web-1": 1000})
    result = nodes._evict_pods(fake, [pod("web-1")], None, None, eviction=False)  # type: ignore[arg-type]
    assert fake.calls == [("delete", "web-1")] and len(result.done) == 1


def test_pdb_columns() -> None:
    b = policy_pb2.PodDisruptionBudget()
    b.metadata.name = "web"
    b.metadata.creation_timestamp.FromDatetime(NOW - timedelta(minutes=3))
    b.spec.min_available.str_val = "50%"
    b.status.disruptions_allowed = 1
    info = by_kind("PodDisruptionBudget")
    assert printers.table_headers(info, wide=False, all_namespaces=False) == [
        "NAME",
        "MIN AVAILABLE",
        "MAX UNAVAILABLE",
        "ALLOWED DISRUPTIONS",
        "AGE",
    ]
    assert printers.table_row(info, b, NOW, wide=False, all_namespaces=False) == ["web", "50%", "N/A", "1", "3m"]
