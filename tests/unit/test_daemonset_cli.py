"""The CLI's view of DaemonSets: `corral get ds` (kubectl's columns), the `rollout status` lines
kubectl's daemon set viewer prints, and `rollout restart ds/NAME` (history and undo: test_set_history_cli.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from corral.cli import printers
from corral.cli.context import Context
from corral.cli.daemonset_view import NotRollingError, status_line
from corral.cli.rollout import rollout_group
from protos import wellknown
from protos.corral.v1 import workloads_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ds(
    *,
    desired: int = 3,
    current: int = 3,
    ready: int = 3,
    updated: int = 3,
    available: int = 3,
    generation: int = 2,
    observed: int = 2,
    strategy: str = "RollingUpdate",
) -> workloads_pb2.DaemonSet:
    d = workloads_pb2.DaemonSet()
    d.metadata.name, d.metadata.namespace, d.metadata.generation = "exporter", "default", generation
    d.metadata.creation_timestamp.FromDatetime(NOW - timedelta(minutes=5))
    d.spec.selector.match_labels["app"] = "exporter"
    d.spec.template.spec.node_selector["disk"] = "ssd"
    d.spec.template.spec.containers.add(name="exporter", image="busybox:1")
    d.spec.update_strategy.type = strategy
    st = d.status
    st.desired_number_scheduled, st.current_number_scheduled, st.number_ready = desired, current, ready
    st.updated_number_scheduled, st.number_available, st.observed_generation = updated, available, observed
    return d


def test_get_shows_kubectl_columns() -> None:
    info = by_kind("DaemonSet")
    assert printers.table_headers(info, wide=False, all_namespaces=False) == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE SELECTOR",
        "AGE",
    ]
    row = printers.table_row(info, ds(ready=2, updated=1, available=2), NOW, wide=False, all_namespaces=False)
    assert row == ["exporter", "3", "3", "2", "1", "2", "disk=ssd", "5m"]
    wide = printers.table_row(info, ds(), NOW, wide=True, all_namespaces=False)
    assert wide[-3:] == ["exporter", "busybox:1", "app=exporter"]


@pytest.mark.parametrize(
    ("the_set", "line", "done"),
    [
        pytest.param(ds(observed=1), "Waiting for daemon set spec update to be observed...", False, id="unobserved"),
        pytest.param(
            ds(updated=1),
            'Waiting for daemon set "exporter" rollout to finish: 1 out of 3 new pods have been updated...',
            False,
            id="updating",
        ),
        pytest.param(
            ds(available=2),
            'Waiting for daemon set "exporter" rollout to finish: 2 of 3 updated pods are available...',
            False,
            id="waiting-available",
        ),
        pytest.param(ds(), 'daemon set "exporter" successfully rolled out', True, id="done"),
    ],
)
def test_status_lines(the_set: workloads_pb2.DaemonSet, line: str, done: bool) -> None:
    assert status_line(the_set) == (line, done)


def test_on_delete_has_no_rollout_status() -> None:
    with pytest.raises(NotRollingError, match="only available for RollingUpdate"):
        status_line(ds(strategy="OnDelete"))


class DaemonSetClient:
    def __init__(self, stored: workloads_pb2.DaemonSet) -> None:
        self.stored = stored

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        assert (kind, name) == ("DaemonSet", "exporter")
        copy = workloads_pb2.DaemonSet()
        copy.CopyFrom(self.stored)
        return copy

    def update(self, obj: Message) -> Message:
        assert isinstance(obj, workloads_pb2.DaemonSet)
        self.stored.CopyFrom(obj)
        return obj

    def close(self) -> None:
        pass


def run(client: DaemonSetClient, *args: str) -> Any:
    context = Context(server_flag=None)
    context._client = client  # type: ignore[assignment]
    return CliRunner().invoke(rollout_group, list(args), obj=context)


def test_restart_stamps_the_template() -> None:
    client = DaemonSetClient(ds())
    result = run(client, "restart", "ds/exporter")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "daemonset.apps/exporter restarted"
    assert wellknown.RESTARTED_AT in client.stored.spec.template.metadata.annotations


def test_status_once() -> None:
    result = run(DaemonSetClient(ds(updated=2)), "status", "daemonset/exporter", "--no-watch")
    assert result.exit_code == 0, result.output
    assert "2 out of 3 new pods have been updated" in result.output
