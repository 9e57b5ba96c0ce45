"""`corral drain`'s evictions against a fake client: a pod a disruption budget
refuses is asked for again until it goes or the timeout passes, saying what it
waits for as kubectl does; --disable-eviction deletes instead; DaemonSet-managed
pods are refused without --ignore-daemonsets and left running with it; `corral
get pdb` shows kubectl's columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from corral import client as api
from corral.cli import nodes, printers
from corral.cli.context import Context
from protos.corral.v1 import node_pb2, pod_pb2, policy_pb2
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


# -- DaemonSet-managed pods -------------------------------------------------------------


def owned(name: str, kind: str, *, phase: str = "Running") -> pod_pb2.Pod:
    p = pod(name)
    p.spec.node_name = "n1"
    p.status.phase = phase
    p.metadata.owner_references.add(kind=kind, name=name.rsplit("-", 1)[0], uid=f"{kind}-uid", controller=True)
    return p


class ClusterClient:
    """A node and the pods on it; an evicted pod is gone at once."""

    def __init__(self, pods: list[pod_pb2.Pod]) -> None:
        self.node = node_pb2.Node()
        self.node.metadata.name = "n1"
        self.pods = {p.metadata.name: p for p in pods}
        self.evicted: list[str] = []

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        assert (kind, name) == ("Node", "n1")
        copy = node_pb2.Node()
        copy.CopyFrom(self.node)
        return copy

    def update(self, obj: Message) -> Message:
        assert isinstance(obj, node_pb2.Node)
        self.node.CopyFrom(obj)
        return obj

    def list(self, kind: str, namespace: str = "", **_: Any) -> tuple[list[Message], str]:
        assert kind == "Pod"
        return list(self.pods.values()), "1"

    def evict(self, name: str, namespace: str = "", **_: Any) -> pod_pb2.Pod:
        self.evicted.append(name)
        return self.pods.pop(name)


def drain(client: ClusterClient, *args: str) -> Any:
    context = Context(server_flag=None)
    context._client = client  # type: ignore[assignment]
    return CliRunner().invoke(nodes.drain_cmd, ["n1", *args], obj=context)


def test_drain_refuses_daemon_set_pods_without_the_flag() -> None:
    client = ClusterClient([owned("web-1", "ReplicaSet"), owned("exporter-1", "DaemonSet")])
    result = drain(client)
    assert result.exit_code != 0
    assert (
        'unable to drain node "n1": cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): '
        "default/exporter-1"
    ) in result.output
    assert client.evicted == []
    assert client.node.spec.unschedulable  # cordoned first, as kubectl


def test_drain_names_both_refusals() -> None:
    bare = pod("lonely")
    bare.spec.node_name = "n1"
    result = drain(ClusterClient([bare, owned("exporter-1", "DaemonSet")]))
    assert "cannot delete Pods that declare no controller (use --force to override): default/lonely" in result.output
    assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)" in result.output


def test_drain_with_ignore_daemonsets_leaves_them_running() -> None:
    client = ClusterClient(
        [
            owned("web-1", "ReplicaSet"),
            owned("exporter-1", "DaemonSet"),
            owned("exporter-2", "DaemonSet", phase="Failed"),
        ]
    )
    result = drain(client, "--ignore-daemonsets")
    assert result.exit_code == 0, result.output
    assert "Warning: ignoring DaemonSet-managed Pods: default/exporter-1" in result.output
    assert sorted(client.evicted) == ["exporter-2", "web-1"]  # a finished DaemonSet pod goes
    assert list(client.pods) == ["exporter-1"]
    assert "node/n1 drained" in result.output


@pytest.mark.parametrize(
    ("pods", "daemon", "delete"),
    [
        pytest.param([owned("a-1", "DaemonSet")], ["a-1"], [], id="daemon-running"),
        pytest.param([owned("a-1", "DaemonSet", phase="Succeeded")], [], ["a-1"], id="daemon-finished"),
        pytest.param([owned("a-1", "ReplicaSet")], [], ["a-1"], id="replica-set"),
    ],
)
def test_plan_drain_sets_daemon_set_pods_apart(pods: list[pod_pb2.Pod], daemon: list[str], delete: list[str]) -> None:
    plan = nodes.plan_drain(pods, "n1", force=False)
    assert [p.metadata.name for p in plan.daemon] == daemon
    assert [p.metadata.name for p in plan.delete] == delete
