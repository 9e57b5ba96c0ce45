"""`corral rollout history|undo ds/NAME|sts/NAME`: the set's ControllerRevisions listed as kubectl
lists them, one shown in detail, and undo writing the chosen revision's template into the set."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from corral.cli.context import Context
from corral.cli.rollout import rollout_group
from protos import revisions
from protos.corral.v1 import workloads_pb2
from protos.deployments import template_hash
from protos.wellknown import CHANGE_CAUSE

SetObject = workloads_pb2.DaemonSet | workloads_pb2.StatefulSet


def the_set(kind: str, image: str) -> SetObject:
    obj: SetObject = workloads_pb2.DaemonSet() if kind == "DaemonSet" else workloads_pb2.StatefulSet()
    obj.metadata.name, obj.metadata.namespace, obj.metadata.uid = "app", "default", "uid-1"
    obj.spec.template.metadata.labels["app"] = "app"
    obj.spec.template.spec.containers.add(name="app", image=image)
    return obj


def history(kind: str) -> list[workloads_pb2.ControllerRevision]:
    """Revisions 1 (busybox:1, with a change-cause), 2 (busybox:2), and another set's 3."""
    made = []
    for number, image in ((2, "busybox:2"), (1, "busybox:1")):
        owner = the_set(kind, image)
        if number == 1:
            owner.metadata.annotations[CHANGE_CAUSE] = "first"
        made.append(revisions.new_revision(owner, template_hash(owner.spec.template), number))
    stranger = the_set(kind, "other:1")
    stranger.metadata.uid = "uid-2"
    made.append(revisions.new_revision(stranger, "x", 3))
    return made


class SetClient:
    def __init__(self, stored: SetObject) -> None:
        self.stored = stored
        self.revisions = history(type(stored).__name__)

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        assert (kind, name) == (type(self.stored).__name__, "app")
        copy: Message = type(self.stored)()
        copy.MergeFrom(self.stored)
        return copy

    def list(self, kind: str, namespace: str = "", **_: Any) -> tuple[list[Message], str]:
        assert (kind, namespace) == ("ControllerRevision", "default")
        return list(self.revisions), "1"

    def update(self, obj: Message) -> Message:
        assert isinstance(obj, type(self.stored))
        self.stored = obj
        return obj

    def close(self) -> None:
        pass


def run(client: SetClient, *args: str) -> Any:
    context = Context(server_flag=None)
    context._client = client  # type: ignore[assignment]
    return CliRunner().invoke(rollout_group, list(args), obj=context)


KINDS = [
    pytest.param("DaemonSet", "ds/app", "daemonset.apps/app", id="daemonset"),
    pytest.param("StatefulSet", "sts/app", "statefulset.apps/app", id="statefulset"),
]


@pytest.mark.parametrize(("kind", "target", "ref"), KINDS)
def test_history_lists_the_sets_revisions(kind: str, target: str, ref: str) -> None:
    result = run(SetClient(the_set(kind, "busybox:2")), "history", target)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [ref, "REVISION   CHANGE-CAUSE", "1          first", "2          <none>"]


@pytest.mark.parametrize(("kind", "target", "ref"), KINDS)
def test_history_shows_one_revisions_template(kind: str, target: str, ref: str) -> None:
    result = run(SetClient(the_set(kind, "busybox:2")), "history", target, "--revision", "1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{ref} with revision #1"
    assert "Pod Template:" in lines
    assert any("busybox:1" in line for line in lines)


def test_history_of_a_missing_revision_fails() -> None:
    result = run(SetClient(the_set("DaemonSet", "busybox:2")), "history", "ds/app", "--revision", "3")
    assert result.exit_code == 1
    assert "unable to find the specified revision 3" in result.output


@pytest.mark.parametrize(("kind", "target", "ref"), KINDS)
def test_undo_writes_the_previous_template(kind: str, target: str, ref: str) -> None:
    client = SetClient(the_set(kind, "busybox:2"))
    result = run(client, "undo", target)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{ref} rolled back"
    assert client.stored.spec.template == the_set(kind, "busybox:1").spec.template


@pytest.mark.parametrize(
    ("args", "output", "code"),
    [
        pytest.param(
            ["--to-revision", "2"],
            "daemonset.apps/app skipped rollback (current template already matches revision 2)",
            0,
            id="already-there",
        ),
        pytest.param(["--to-revision", "7"], "error: unable to find specified revision 7 in history", 1, id="missing"),
        pytest.param(["--to-revision", "3"], "error: unable to find specified revision 3 in history", 1, id="not-ours"),
    ],
)
def test_undo_refusals(args: list[str], output: str, code: int) -> None:
    client = SetClient(the_set("DaemonSet", "busybox:2"))
    result = run(client, "undo", "ds/app", *args)
    assert result.exit_code == code
    assert result.output.strip() == output
    assert client.stored.spec.template.spec.containers[0].image == "busybox:2"


def test_undo_without_history() -> None:
    client = SetClient(the_set("StatefulSet", "busybox:2"))
    client.revisions = []
    result = run(client, "undo", "sts/app")
    assert result.exit_code == 1
    assert 'no rollout history found for statefulset "app"' in result.output


def test_other_kinds_are_refused() -> None:
    result = run(SetClient(the_set("DaemonSet", "busybox:2")), "undo", "rs/app")
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == "error: rollout undo works on deployments, daemonsets and statefulsets, not on replicasets"
    )
