"""Job reconcile over a driven clock: parallelism cap, completions, back-off, deadline, Indexed, suspend,
podFailurePolicy, finishing conditions and TTL."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.apiserver.batch import generate_selector
from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.job.failures import backoff_delay
from controlplane.controllers.job.pods import host_name
from controlplane.controllers.job.reconcile import JobActions, reconcile
from protos import jobs
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.kinds import by_kind

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(**spec: Any) -> batch_pb2.Job:
    j = batch_pb2.Job()
    j.metadata.name, j.metadata.namespace, j.metadata.uid = "pi", "default", "job-uid"
    j.metadata.creation_timestamp.FromDatetime(T0)
    j.spec.template.spec.restart_policy = "Never"
    j.spec.template.spec.containers.add(name="work", image="busybox:1")
    policy = spec.pop("pod_failure_policy", None)
    for key, value in spec.items():
        setattr(j.spec, key, value)
    if policy is not None:
        j.spec.pod_failure_policy.CopyFrom(policy)
    apply_defaults(by_kind("Job"), j)
    generate_selector(j)
    return j


class Cluster:
    """The Job's pods and the Job as reconcile leaves them, one sync at a time."""

    def __init__(self, j: batch_pb2.Job) -> None:
        self.job = j
        self.pods: dict[str, pod_pb2.Pod] = {}
        self.created: list[str] = []
        self.peak = 0
        self._names = itertools.count()

    def sync(self, now: datetime) -> JobActions:
        actions = reconcile(self.job, list(self.pods.values()), now=now)
        for p in actions.delete:
            self.pods[p.metadata.name].metadata.deletion_timestamp.FromDatetime(now)
        for p in actions.create:
            p.metadata.name = f"{p.metadata.generate_name}{next(self._names)}"
            p.metadata.uid = p.metadata.name
            p.metadata.creation_timestamp.FromDatetime(now)
            p.status.phase = "Running"
            self.pods[p.metadata.name] = p
            self.created.append(p.metadata.name)
        if actions.status is not None:
            self.job.status.CopyFrom(actions.status)
        self.peak = max(self.peak, sum(1 for p in self.pods.values() if is_running(p)))
        return actions

    def running(self) -> list[pod_pb2.Pod]:
        return [p for p in self.pods.values() if is_running(p)]

    def finish(self, name: str, *, code: int, at: datetime) -> None:
        pod = self.pods[name]
        pod.status.phase = "Succeeded" if code == 0 else "Failed"
        status = pod.status.container_statuses.add(name="work")
        status.state.terminated.exit_code = code
        status.state.terminated.finished_at.FromDatetime(at)

    def gone(self) -> None:
        """The nodes confirm: pods being deleted disappear."""
        for name in [n for n, p in self.pods.items() if p.metadata.HasField("deletion_timestamp")]:
            del self.pods[name]


def is_running(p: pod_pb2.Pod) -> bool:
    return p.status.phase == "Running" and not p.metadata.HasField("deletion_timestamp")


def condition(j: batch_pb2.Job, type_: str) -> tuple[str, str] | None:
    for c in j.status.conditions:
        if c.type == type_:
            return c.status, c.reason
    return None


# -- counts and completion ---------------------------------------------------------


@pytest.mark.parametrize(
    ("parallelism", "completions", "first"),
    [
        pytest.param(2, 3, 2, id="parallelism-caps"),
        pytest.param(5, 3, 3, id="completions-cap"),
        pytest.param(1, 1, 1, id="defaults"),
    ],
)
def test_pods_are_created_up_to_parallelism_while_completions_are_left(
    parallelism: int, completions: int, first: int
) -> None:
    c = Cluster(job(parallelism=parallelism, completions=completions))
    actions = c.sync(T0)
    assert len(actions.create) == first
    assert all(p.metadata.generate_name == "pi-" for p in actions.create)
    assert all(p.metadata.labels[jobs.JOB_NAME] == "pi" for p in actions.create)
    assert actions.create[0].metadata.owner_references[0].kind == "Job"
    assert c.sync(T0).create == ()  # level: nothing more while they run


def test_completions_3_parallelism_2_completes_with_3_succeeded_never_more_than_2_running() -> None:
    c = Cluster(job(parallelism=2, completions=3))
    now = T0
    for _ in range(10):
        c.sync(now)
        if condition(c.job, jobs.COMPLETE):
            break
        for p in c.running()[:1]:
            c.finish(p.metadata.name, code=0, at=now)
        now += timedelta(seconds=1)
    assert condition(c.job, jobs.COMPLETE) == ("True", "CompletionsReached")
    assert condition(c.job, jobs.SUCCESS_CRITERIA_MET) == ("True", "CompletionsReached")
    assert (c.job.status.succeeded, c.job.status.failed, c.job.status.active) == (3, 0, 0)
    assert c.peak == 2 and len(c.created) == 3
    assert c.job.status.HasField("completion_time") and c.job.status.HasField("start_time")


def test_a_finished_job_changes_no_more() -> None:
    c = Cluster(job())
    c.sync(T0)
    c.finish(c.created[0], code=0, at=T0)
    c.sync(T0)
    assert condition(c.job, jobs.COMPLETE) is not None
    actions = c.sync(T0 + timedelta(hours=1))
    assert actions == JobActions()


def test_a_work_queue_job_completes_once_one_pod_succeeded_and_the_others_ended() -> None:
    c = Cluster(job(parallelism=2))
    c.sync(T0)
    first, second = c.created
    c.finish(first, code=0, at=T0)
    assert c.sync(T0).create == ()  # no new pods once one succeeded
    assert condition(c.job, jobs.COMPLETE) is None
    c.finish(second, code=0, at=T0)
    c.sync(T0)
    assert condition(c.job, jobs.COMPLETE) == ("True", "CompletionsReached")


def test_lowering_parallelism_deletes_the_surplus() -> None:
    c = Cluster(job(parallelism=3, completions=6))
    c.sync(T0)
    c.job.spec.parallelism = 1
    assert len(c.sync(T0).delete) == 2


# -- failures and back-off ---------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [
        pytest.param(0, 0, id="none"),
        pytest.param(1, 10, id="first"),
        pytest.param(2, 20, id="second"),
        pytest.param(3, 40, id="third"),
        pytest.param(6, 320, id="sixth"),
        pytest.param(7, 360, id="capped-at-6m"),
        pytest.param(50, 360, id="many"),
    ],
)
def test_backoff_doubles_from_10s_and_is_capped_at_6_minutes(failures: int, seconds: int) -> None:
    assert backoff_delay(failures) == timedelta(seconds=seconds)


def test_a_failed_pod_is_replaced_after_the_backoff_and_backoff_limit_2_fails_after_3_pods() -> None:
    c = Cluster(job(backoff_limit=2))
    c.sync(T0)
    c.finish(c.created[0], code=1, at=T0)
    actions = c.sync(T0 + timedelta(seconds=1))
    assert actions.create == () and actions.requeue_after == pytest.approx(9)
    assert len(c.sync(T0 + timedelta(seconds=10)).create) == 1
    c.finish(c.created[1], code=1, at=T0 + timedelta(seconds=11))
    assert c.sync(T0 + timedelta(seconds=30)).create == ()  # 20 s after the second failure
    assert len(c.sync(T0 + timedelta(seconds=31)).create) == 1
    c.finish(c.created[2], code=1, at=T0 + timedelta(seconds=32))
    actions = c.sync(T0 + timedelta(seconds=33))
    assert actions.create == ()
    assert condition(c.job, jobs.FAILED) == ("True", "BackoffLimitExceeded")
    assert condition(c.job, jobs.FAILURE_TARGET) == ("True", "BackoffLimitExceeded")
    assert (len(c.created), c.job.status.failed) == (3, 3)
    assert [(e.type, e.reason) for e in actions.events] == [("Warning", "BackoffLimitExceeded")]


def test_a_success_resets_the_backoff() -> None:
    c = Cluster(job(parallelism=2, completions=4))
    c.sync(T0)
    a, b = c.created
    c.finish(a, code=1, at=T0)
    c.finish(b, code=0, at=T0 + timedelta(seconds=1))
    assert len(c.sync(T0 + timedelta(seconds=2)).create) == 2


def test_on_failure_counts_container_restarts_toward_the_backoff_limit() -> None:
    j = job(backoff_limit=2)
    j.spec.template.spec.restart_policy = "OnFailure"
    c = Cluster(j)
    c.sync(T0)
    c.pods[c.created[0]].status.container_statuses.add(name="work", restart_count=2)
    c.sync(T0)
    assert condition(c.job, jobs.FAILURE_TARGET) == ("True", "BackoffLimitExceeded")
    assert condition(c.job, jobs.FAILED) is None  # its pod is still being stopped
    c.gone()
    c.sync(T0)
    assert condition(c.job, jobs.FAILED) == ("True", "BackoffLimitExceeded")


def test_active_deadline_fails_the_job_and_deletes_its_pods() -> None:
    c = Cluster(job(active_deadline_seconds=30, parallelism=2, completions=2))
    assert c.sync(T0).requeue_after == pytest.approx(30)
    assert c.sync(T0 + timedelta(seconds=10)).requeue_after == pytest.approx(20)
    actions = c.sync(T0 + timedelta(seconds=30))
    assert len(actions.delete) == 2 and actions.create == ()
    assert condition(c.job, jobs.FAILURE_TARGET) == ("True", "DeadlineExceeded")
    c.gone()
    actions = c.sync(T0 + timedelta(seconds=31))
    assert condition(c.job, jobs.FAILED) == ("True", "DeadlineExceeded")
    assert [(e.type, e.reason) for e in actions.events] == [("Warning", "DeadlineExceeded")]
    assert c.job.status.failed == 2 and not c.job.status.HasField("completion_time")


# -- podFailurePolicy --------------------------------------------------------------


def policy(*rules: tuple[str, str, Sequence[int]]) -> batch_pb2.PodFailurePolicy:
    p = batch_pb2.PodFailurePolicy()
    for action, operator, values in rules:
        rule = p.rules.add(action=action)
        rule.on_exit_codes.operator = operator
        rule.on_exit_codes.values.extend(values)
    return p


@pytest.mark.parametrize(
    ("rules", "code", "outcome"),
    [
        pytest.param([("FailJob", "In", [42])], 42, "PodFailurePolicy", id="failjob-in"),
        pytest.param([("FailJob", "NotIn", [1, 2])], 42, "PodFailurePolicy", id="failjob-notin"),
        pytest.param([("FailJob", "NotIn", [42])], 42, "retry", id="notin-excluded"),
        pytest.param([("Ignore", "In", [42])], 42, "ignored", id="ignore"),
        pytest.param([("Count", "In", [42]), ("FailJob", "In", [42])], 42, "retry", id="first-rule-wins"),
        pytest.param([("FailJob", "In", [7])], 42, "retry", id="no-match-counts"),
    ],
)
def test_pod_failure_policy_on_exit_codes(rules: list[tuple[str, str, Sequence[int]]], code: int, outcome: str) -> None:
    c = Cluster(job(backoff_limit=3, pod_failure_policy=policy(*rules)))
    c.sync(T0)
    c.finish(c.created[0], code=code, at=T0)
    actions = c.sync(T0 + timedelta(seconds=1))
    if outcome == "PodFailurePolicy":
        assert condition(c.job, jobs.FAILED) == ("True", "PodFailurePolicy")
        assert "exit code 42 matching FailJob rule" in c.job.status.conditions[-1].message
    elif outcome == "ignored":
        assert c.job.status.failed == 0 and len(actions.create) == 1  # replaced at once: no back-off
    else:
        assert c.job.status.failed == 1 and actions.create == () and actions.requeue_after == pytest.approx(9)


# -- Indexed -----------------------------------------------------------------------


def test_indexed_pods_carry_their_index_and_every_index_must_succeed() -> None:
    c = Cluster(job(completions=3, parallelism=2, completion_mode="Indexed"))
    actions = c.sync(T0)
    indexes = [p.metadata.annotations[jobs.COMPLETION_INDEX] for p in actions.create]
    assert indexes == ["0", "1"]
    first = actions.create[0]
    assert first.metadata.generate_name == "pi-0-" and first.spec.hostname == "pi-0"
    assert (
        first.spec.containers[0].env[0].name == "JOB_COMPLETION_INDEX" and first.spec.containers[0].env[0].value == "0"
    )
    c.finish(c.created[1], code=0, at=T0)
    actions = c.sync(T0)
    assert [p.metadata.annotations[jobs.COMPLETION_INDEX] for p in actions.create] == ["2"]
    assert c.job.status.completed_indexes == "1"
    c.finish(c.created[0], code=1, at=T0)
    c.finish(c.created[2], code=0, at=T0)
    actions = c.sync(T0 + timedelta(seconds=10))
    assert [p.metadata.annotations[jobs.COMPLETION_INDEX] for p in actions.create] == ["0"]  # retried
    assert c.job.status.completed_indexes == "1-2"
    c.finish(c.created[3], code=0, at=T0 + timedelta(seconds=11))
    c.sync(T0 + timedelta(seconds=12))
    assert condition(c.job, jobs.COMPLETE) == ("True", "CompletionsReached")
    assert c.job.status.completed_indexes == "0-2" and c.job.status.succeeded == 3


def test_a_duplicate_index_is_deleted() -> None:
    c = Cluster(job(completions=2, parallelism=2, completion_mode="Indexed"))
    c.sync(T0)
    extra = pod_pb2.Pod()
    extra.CopyFrom(c.pods[c.created[0]])
    extra.metadata.name = extra.metadata.uid = "pi-0-dup"
    extra.metadata.creation_timestamp.FromDatetime(T0 + timedelta(seconds=1))
    c.pods["pi-0-dup"] = extra
    actions = c.sync(T0 + timedelta(seconds=2))
    assert [p.metadata.name for p in actions.delete] == ["pi-0-dup"] and actions.create == ()


def test_backoff_limit_per_index_fails_the_index_and_the_job_once_all_are_done() -> None:
    c = Cluster(job(completions=2, parallelism=2, completion_mode="Indexed", backoff_limit_per_index=0))
    c.sync(T0)
    c.finish(c.created[0], code=1, at=T0)
    actions = c.sync(T0 + timedelta(seconds=60))
    assert actions.create == () and c.job.status.failed_indexes == "0"
    c.finish(c.created[1], code=0, at=T0)
    c.sync(T0 + timedelta(seconds=61))
    assert condition(c.job, jobs.FAILED) == ("True", "FailedIndexes")


# -- suspend and TTL ---------------------------------------------------------------


def test_suspend_deletes_active_pods_and_resume_restarts_the_clock() -> None:
    c = Cluster(job(parallelism=2, completions=4, active_deadline_seconds=100))
    c.sync(T0)
    c.job.spec.suspend = True
    actions = c.sync(T0 + timedelta(seconds=50))
    assert len(actions.delete) == 2 and actions.create == ()
    assert condition(c.job, jobs.SUSPENDED) == ("True", "JobSuspended")
    assert [e.reason for e in actions.events] == ["Suspended"]
    c.gone()
    assert c.sync(T0 + timedelta(seconds=500)).create == ()  # no deadline while suspended
    c.job.spec.suspend = False
    actions = c.sync(T0 + timedelta(seconds=600))
    assert len(actions.create) == 2 and [e.reason for e in actions.events] == ["Resumed"]
    assert condition(c.job, jobs.SUSPENDED) == ("False", "JobResumed")
    assert c.job.status.start_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=600)
    assert actions.requeue_after == pytest.approx(100)


def test_a_job_created_suspended_starts_nothing_and_has_no_start_time() -> None:
    c = Cluster(job(suspend=True))
    actions = c.sync(T0)
    assert actions.create == () and not c.job.status.HasField("start_time")
    assert condition(c.job, jobs.SUSPENDED) == ("True", "JobSuspended")


def test_ttl_after_finished_deletes_the_job_after_the_time() -> None:
    c = Cluster(job(ttl_seconds_after_finished=60))
    c.sync(T0)
    c.finish(c.created[0], code=0, at=T0)
    c.sync(T0 + timedelta(seconds=5))
    assert c.sync(T0 + timedelta(seconds=6)).requeue_after == pytest.approx(59)
    assert c.sync(T0 + timedelta(seconds=65)).delete_job


def test_pods_stopped_by_a_suspend_are_not_failures() -> None:
    c = Cluster(job(parallelism=2, completions=2, backoff_limit=0))
    c.sync(T0)
    c.job.spec.suspend = True
    c.sync(T0 + timedelta(seconds=5))
    for name in c.created:  # the nodes stop them: exit 143 while being deleted
        c.finish(name, code=143, at=T0 + timedelta(seconds=6))
    c.job.spec.suspend = False
    actions = c.sync(T0 + timedelta(seconds=7))
    assert c.job.status.failed == 0 and condition(c.job, jobs.FAILURE_TARGET) is None
    assert len(actions.create) == 2  # no back-off either


@pytest.mark.parametrize(
    ("name", "index", "expected"),
    [
        pytest.param("pi", 7, "pi-7", id="short"),
        pytest.param("a" * 63, 12, "a" * 60 + "-12", id="cut-to-63"),
        pytest.param("a" * 60 + "-b", 3, "a" * 60 + "-3", id="no-dash-before-the-index"),
    ],
)
def test_an_indexed_pods_host_name_stays_a_dns_label(name: str, index: int, expected: str) -> None:
    assert host_name(name, index) == expected and len(expected) <= 63
