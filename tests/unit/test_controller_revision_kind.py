"""The ControllerRevision kind: resolved by its names (no short name), validated (revision >= 0,
data required), printed with kubectl's columns, collected with its owner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlplane.apiserver.validation import validate, validate_update
from controlplane.controllers.gc.controller import DEPENDENT_KINDS
from corral.cli import printers
from protos import kinds
from protos.corral.v1 import workloads_pb2

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INFO = kinds.by_kind("ControllerRevision")


def revision(number: int = 1, *, data: bool = True) -> workloads_pb2.ControllerRevision:
    r = workloads_pb2.ControllerRevision(revision=number)
    r.metadata.name, r.metadata.namespace = "exporter-abc", "default"
    r.metadata.creation_timestamp.FromDatetime(NOW - timedelta(minutes=3))
    r.metadata.owner_references.add(api_version="apps/v1", kind="DaemonSet", name="exporter", uid="u", controller=True)
    if data:
        r.data.spec.containers.add(name="c", image="busybox:1")
    return r


@pytest.mark.parametrize(
    "name", ["controllerrevision", "controllerrevisions", "ControllerRevision", "controllerrevisions.apps"]
)
def test_names(name: str) -> None:
    assert kinds.resolve(name) is INFO
    assert INFO.short_names == ()
    assert kinds.unwrap(kinds.wrap(revision()))[0] is INFO


@pytest.mark.parametrize(
    ("obj", "causes"),
    [
        pytest.param(revision(), [], id="valid"),
        pytest.param(revision(-1), ["revision: must be >= 0, got -1"], id="negative-revision"),
        pytest.param(revision(data=False), ["data: Required value"], id="no-data"),
    ],
)
def test_validation(obj: workloads_pb2.ControllerRevision, causes: list[str]) -> None:
    assert [str(c) for c in validate(INFO, obj)] == causes


def test_only_the_revision_number_may_change() -> None:
    renumbered = revision(5)
    assert validate_update(INFO, revision(1), renumbered) == []
    changed = revision(1)
    changed.data.spec.containers[0].image = "busybox:2"
    assert [str(c) for c in validate_update(INFO, revision(1), changed)] == ["data: field is immutable"]


def test_printer() -> None:
    assert printers.table_headers(INFO, wide=False, all_namespaces=False) == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    row = printers.table_row(INFO, revision(2), NOW, wide=False, all_namespaces=False)
    assert row == ["exporter-abc", "daemonset.apps/exporter", "2", "3m"]


def test_collected_with_its_owner() -> None:
    assert "ControllerRevision" in DEPENDENT_KINDS
