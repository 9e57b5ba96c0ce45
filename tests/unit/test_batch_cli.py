"""`corral get jobs|cronjobs` columns, `corral wait`, `corral logs job/NAME`, `corral create job --from`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from corral import client as api
from corral.cli import printers
from corral.cli.context import Context
from corral.cli.create import create_group
from corral.cli.logs_cmd import logging_order, logs_cmd
from corral.cli.wait import wait_cmd
from protos import jobs
from protos.conditions import set_condition
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOB, CRON_JOB = by_kind("Job"), by_kind("CronJob")


def job(*, completions: int | None = 3, parallelism: int = 2, succeeded: int = 0) -> batch_pb2.Job:
    j = batch_pb2.Job()
    j.metadata.name, j.metadata.namespace, j.metadata.uid = "pi", "default", "job-uid"
    j.metadata.creation_timestamp.FromDatetime(NOW - timedelta(minutes=5))
    if completions is not None:
        j.spec.completions = completions
    j.spec.parallelism = parallelism
    j.spec.selector.match_labels[jobs.CONTROLLER_UID] = "job-uid"
    j.spec.template.spec.containers.add(name="pi", image="perl:5")
    j.status.succeeded = succeeded
    return j


def finished(j: batch_pb2.Job, type_: str, *, seconds: int) -> batch_pb2.Job:
    j.status.start_time.FromDatetime(NOW - timedelta(minutes=5))
    set_condition(j.status.conditions, type_, "True", reason="x", message="x", now=NOW)
    if type_ == jobs.COMPLETE:
        j.status.completion_time.FromDatetime(NOW - timedelta(minutes=5) + timedelta(seconds=seconds))
    return j


def row(obj: Message) -> list[str]:
    info = by_kind(obj.DESCRIPTOR.name)
    return printers.table_row(info, obj, NOW, wide=False, all_namespaces=False)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(job(), ["pi", "Running", "0/3", "", "5m"], id="not-started"),
        pytest.param(
            finished(job(succeeded=3), jobs.COMPLETE, seconds=95), ["pi", "Complete", "3/3", "95s", "5m"], id="complete"
        ),
        pytest.param(
            finished(job(), jobs.FAILED, seconds=0), ["pi", "Failed", "0/3", "5m", "5m"], id="failed-runs-to-now"
        ),
        pytest.param(job(completions=None, parallelism=3), ["pi", "Running", "0/1 of 3", "", "5m"], id="work-queue"),
        pytest.param(job(completions=None, parallelism=1), ["pi", "Running", "0/1", "", "5m"], id="one"),
    ],
)
def test_get_jobs_shows_kubectls_columns(obj: batch_pb2.Job, expected: list[str]) -> None:
    assert printers.table_headers(JOB, wide=False, all_namespaces=False) == [
        "NAME",
        "STATUS",
        "COMPLETIONS",
        "DURATION",
        "AGE",
    ]
    assert row(obj) == expected


def test_a_suspended_job_shows_suspended() -> None:
    j = job()
    set_condition(j.status.conditions, jobs.SUSPENDED, "True", reason="JobSuspended", message="", now=NOW)
    assert row(j)[1] == "Suspended"


def cron_job(**status: Any) -> batch_pb2.CronJob:
    c = batch_pb2.CronJob()
    c.metadata.name, c.metadata.namespace, c.metadata.uid = "backup", "default", "cj-uid"
    c.metadata.creation_timestamp.FromDatetime(NOW - timedelta(hours=3))
    c.spec.schedule, c.spec.suspend = "0 2 * * *", False
    c.spec.job_template.metadata.labels["app"] = "backup"
    c.spec.job_template.spec.template.spec.containers.add(name="dump", image="busybox:1")
    if status.get("zone"):
        c.spec.time_zone = status["zone"]
    if status.get("last"):
        c.status.last_schedule_time.FromDatetime(status["last"])
        c.status.active.add(name="backup-1")
    return c


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(cron_job(), ["backup", "0 2 * * *", "<none>", "False", "0", "<none>", "3h"], id="never-ran"),
        pytest.param(
            cron_job(zone="Europe/Berlin", last=NOW - timedelta(seconds=40)),
            ["backup", "0 2 * * *", "Europe/Berlin", "False", "1", "40s", "3h"],
            id="ran",
        ),
    ],
)
def test_get_cronjobs_shows_kubectls_columns(obj: batch_pb2.CronJob, expected: list[str]) -> None:
    assert printers.table_headers(CRON_JOB, wide=False, all_namespaces=False) == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST SCHEDULE",
        "AGE",
    ]
    assert row(obj) == expected


# -- a fake client -------------------------------------------------------------------


class FakeClient:
    def __init__(self, *objects: Message, pods: tuple[pod_pb2.Pod, ...] = ()) -> None:
        self.objects = {(o.DESCRIPTOR.name, o.metadata.name): o for o in objects}
        self.pods = list(pods)
        self.created: list[Message] = []
        self.reads = 0
        self.logged: list[str] = []
        # (kind, name) → the read after which the object changes: a callable applied once
        self.after: dict[tuple[str, str], tuple[int, Any]] = {}

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        self.reads += 1
        change = self.after.get((kind, name))
        if change is not None and self.reads >= change[0]:
            change[1](self)
            del self.after[(kind, name)]
        if (kind, name) not in self.objects:
            raise api.NotFoundError(f'{kind.lower()} "{name}" not found')
        return self.objects[(kind, name)]

    def list(self, kind: str, namespace: str = "", *, selector: str = "") -> tuple[list[Message], str]:
        if kind == "Pod":
            return list(self.pods), "1"
        return [o for (k, _), o in self.objects.items() if k == kind], "1"

    def create(self, obj: Message, *, dry_run: bool = False) -> Message:
        self.created.append(obj)
        return obj

    def logs(self, name: str, namespace: str = "", **kwargs: Any) -> Iterator[bytes]:
        self.logged.append(name)
        yield f"logs of {name}\n".encode()

    def close(self) -> None:
        pass


def invoke(command: Any, client: FakeClient, *args: str) -> Any:
    context = Context(server_flag=None)
    context._client = client  # type: ignore[assignment]
    return CliRunner().invoke(command, list(args), obj=context)


def test_wait_for_condition_complete_returns_once_the_job_completes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("corral.cli.wait.POLL_SECONDS", 0.0)
    client = FakeClient(job())
    client.after[("Job", "pi")] = (3, lambda c: finished(c.objects[("Job", "pi")], jobs.COMPLETE, seconds=9))
    result = invoke(wait_cmd, client, "--for=condition=complete", "job/pi", "--timeout=10s")
    assert result.exit_code == 0, result.output
    assert result.output == "job.batch/pi condition met\n" and client.reads == 3


def test_wait_times_out_with_an_error_naming_the_object() -> None:
    result = invoke(wait_cmd, FakeClient(job()), "--for=condition=Complete", "job/pi", "--timeout=0")
    assert result.exit_code == 1 and "timed out waiting for the condition on jobs/pi" in result.output


def test_wait_for_a_condition_value() -> None:
    j = finished(job(), jobs.FAILED, seconds=0)
    result = invoke(wait_cmd, FakeClient(j), "--for=condition=Complete=false", "job/pi", "--timeout=0")
    assert result.exit_code == 1  # no Complete condition at all is not Complete=False
    result = invoke(wait_cmd, FakeClient(j), "--for=condition=failed=True", "jobs", "pi", "--timeout=0")
    assert result.exit_code == 0 and result.output == "job.batch/pi condition met\n"


def test_wait_for_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("corral.cli.wait.POLL_SECONDS", 0.0)
    client = FakeClient(job())
    client.after[("Job", "pi")] = (2, lambda c: c.objects.pop(("Job", "pi")))
    result = invoke(wait_cmd, client, "--for=delete", "job/pi", "--timeout=5s")
    assert result.exit_code == 0 and result.output == "job.batch/pi deleted\n"


def test_wait_refuses_an_unknown_for() -> None:
    result = invoke(wait_cmd, FakeClient(job()), "--for=ready", "job/pi")
    assert result.exit_code == 2 and "condition=TYPE" in result.output


def pod(name: str, *, phase: str = "Running", node: str = "n1", age: int = 10, owner: str = "job-uid") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.creation_timestamp.FromDatetime(NOW - timedelta(seconds=age))
    p.metadata.owner_references.add(kind="Job", name="pi", uid=owner, controller=True)
    p.spec.node_name, p.status.phase = node, phase
    return p


def test_logging_order_prefers_scheduled_running_then_oldest() -> None:
    pods = [
        pod("pending", phase="Pending", node=""),
        pod("young", age=5),
        pod("old", age=50),
        pod("succeeded", phase="Succeeded", age=100),
    ]
    assert [p.metadata.name for p in logging_order(pods)] == ["old", "young", "succeeded", "pending"]


def test_logs_of_a_job_are_its_first_pods() -> None:
    client = FakeClient(job(), pods=(pod("pi-a", age=5), pod("pi-b", age=50), pod("other", owner="x")))
    result = invoke(logs_cmd, client, "job/pi")
    assert result.exit_code == 0, result.output
    assert client.logged == ["pi-b"]
    assert "Found 2 pods, using pod/pi-b" in result.output and "logs of pi-b" in result.output


def test_create_job_from_a_cron_job_as_kubectl() -> None:
    client = FakeClient(cron_job())
    result = invoke(create_group, client, "job", "manual-1", "--from=cronjob/backup")
    assert result.exit_code == 0, result.output
    assert result.output == "job.batch/manual-1 created\n"
    made = client.created[0]
    assert isinstance(made, batch_pb2.Job)
    assert made.metadata.annotations[jobs.INSTANTIATE] == "manual" and made.metadata.labels["app"] == "backup"
    ref = made.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller) == ("CronJob", "backup", "cj-uid", True)
    assert made.spec.template.spec.containers[0].name == "dump"


def test_create_job_from_something_else_is_refused() -> None:
    result = invoke(create_group, FakeClient(), "job", "x", "--from=deploy/web")
    assert result.exit_code == 2 and "only cronjob/NAME" in result.output
