"""Jobs and CronJobs at the API: defaults, the generated selector, validation with field paths, update rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ApplyOutcome, ObjectApi
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import codec, jobs, kinds
from protos.corral.v1 import batch_pb2

POD: dict[str, Any] = {
    "restartPolicy": "Never",
    "containers": [{"name": "work", "image": "corral-test/busybox:1", "command": ["true"]}],
}


def job_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default"},
        "spec": {"template": {"spec": copy.deepcopy(POD)}, **spec},
    }


def cron_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "backup", "namespace": "default"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": copy.deepcopy(POD)}}},
            **spec,
        },
    }


def job(doc: dict[str, Any]) -> batch_pb2.Job:
    message, problems = codec.from_dict(doc, batch_pb2.Job)
    assert problems == []
    return message


def cron_job(doc: dict[str, Any]) -> batch_pb2.CronJob:
    message, problems = codec.from_dict(doc, batch_pb2.CronJob)
    assert problems == []
    return message


def api() -> ObjectApi:
    return ObjectApi(ObjectStore(MemoryStore()), new_uid=lambda: "u-1")


def test_the_kinds_resolve_as_kubectl_names_them() -> None:
    assert kinds.resolve("jobs").kind == "Job" and kinds.resolve("jobs.batch").kind == "Job"
    assert kinds.resolve("cj").kind == "CronJob" and kinds.resolve("cronjobs").api_version == "batch/v1"


async def test_a_job_gets_kubernetes_defaults_and_a_generated_selector() -> None:
    created = await api().create(job(job_doc()))
    assert isinstance(created, batch_pb2.Job)
    spec = created.spec
    assert (spec.parallelism, spec.completions, spec.backoff_limit) == (1, 1, 6)
    assert (spec.completion_mode, spec.suspend, spec.pod_replacement_policy) == (
        "NonIndexed",
        False,
        "TerminatingOrFailed",
    )
    assert dict(spec.selector.match_labels) == {jobs.CONTROLLER_UID: "u-1"}
    assert dict(spec.template.metadata.labels) == {
        jobs.CONTROLLER_UID: "u-1",
        jobs.LEGACY_CONTROLLER_UID: "u-1",
        jobs.JOB_NAME: "pi",
        jobs.LEGACY_JOB_NAME: "pi",
    }


async def test_parallelism_alone_leaves_completions_unset() -> None:
    created = await api().create(job(job_doc(parallelism=3)))
    assert isinstance(created, batch_pb2.Job)
    assert created.spec.parallelism == 3 and not created.spec.HasField("completions")


async def test_applying_the_same_manifest_again_keeps_the_generated_selector_unchanged() -> None:
    a = api()
    await a.apply(job(job_doc()))
    stored, outcome = await a.apply(job(job_doc()))
    assert outcome is ApplyOutcome.UNCHANGED
    assert isinstance(stored, batch_pb2.Job) and stored.spec.selector.match_labels[jobs.CONTROLLER_UID] == "u-1"


async def test_a_running_jobs_template_is_immutable_but_parallelism_may_change() -> None:
    a = api()
    await a.apply(job(job_doc()))
    _, outcome = await a.apply(job(job_doc(parallelism=2)))
    assert outcome is ApplyOutcome.CONFIGURED
    changed = job_doc()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    with pytest.raises(errors.InvalidError) as e:
        await a.apply(job(changed))
    assert [c.field for c in e.value.causes] == ["spec.template"]


async def test_a_suspended_job_that_never_started_may_change_its_node_selector() -> None:
    a = api()
    await a.apply(job(job_doc(suspend=True)))
    changed = job_doc(suspend=True)
    changed["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    _, outcome = await a.apply(job(changed))
    assert outcome is ApplyOutcome.CONFIGURED


def _with_pod(**pod: Any) -> dict[str, Any]:
    doc = job_doc()
    doc["spec"]["template"]["spec"].update(pod)
    return doc


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        pytest.param(_with_pod(restartPolicy="Always"), "spec.template.spec.restartPolicy", id="restart-always"),
        pytest.param(job_doc(parallelism=-1), "spec.parallelism", id="negative-parallelism"),
        pytest.param(job_doc(completions=-2), "spec.completions", id="negative-completions"),
        pytest.param(job_doc(backoffLimit=-1), "spec.backoffLimit", id="negative-backoff"),
        pytest.param(job_doc(activeDeadlineSeconds=-5), "spec.activeDeadlineSeconds", id="negative-deadline"),
        pytest.param(job_doc(ttlSecondsAfterFinished=-1), "spec.ttlSecondsAfterFinished", id="negative-ttl"),
        pytest.param(job_doc(parallelism=2, completionMode="Indexed"), "spec.completions", id="indexed-no-completions"),
        pytest.param(job_doc(completionMode="Sometimes"), "spec.completionMode", id="bad-mode"),
        pytest.param(job_doc(backoffLimitPerIndex=1), "spec.backoffLimitPerIndex", id="per-index-not-indexed"),
        pytest.param(job_doc(selector={"matchLabels": {"app": "x"}}), "spec.selector", id="selector-without-manual"),
        pytest.param(
            job_doc(manualSelector=True, selector={"matchLabels": {"app": "x"}}),
            "spec.template.metadata.labels",
            id="manual-selector-not-matching",
        ),
        pytest.param(
            job_doc(
                podFailurePolicy={"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0]}}]}
            ),
            "spec.podFailurePolicy.rules[0].onExitCodes.values",
            id="exit-code-zero-in",
        ),
        pytest.param(
            job_doc(
                podFailurePolicy={"rules": [{"action": "Explode", "onExitCodes": {"operator": "In", "values": [1]}}]}
            ),
            "spec.podFailurePolicy.rules[0].action",
            id="bad-action",
        ),
        pytest.param(
            job_doc(
                podFailurePolicy={
                    "rules": [
                        {"action": "Count", "onExitCodes": {"containerName": "nope", "operator": "In", "values": [1]}}
                    ]
                }
            ),
            "spec.podFailurePolicy.rules[0].onExitCodes.containerName",
            id="unknown-container",
        ),
    ],
)
async def test_bad_jobs_are_refused_with_field_paths(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidError) as e:
        await api().create(job(doc))
    assert field in [c.field for c in e.value.causes], e.value.causes


async def test_a_manual_selector_that_matches_is_kept() -> None:
    doc = job_doc(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    doc["spec"]["template"]["metadata"] = {"labels": {"app": "x"}}
    created = await api().create(job(doc))
    assert isinstance(created, batch_pb2.Job) and dict(created.spec.selector.match_labels) == {"app": "x"}


async def test_a_cron_job_gets_kubernetes_defaults() -> None:
    created = await api().create(cron_job(cron_doc()))
    assert isinstance(created, batch_pb2.CronJob)
    spec = created.spec
    assert (spec.concurrency_policy, spec.suspend) == ("Allow", False)
    assert (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit) == (3, 1)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"schedule": "61 * * * *"}, "spec.schedule", id="minute-out-of-range"),
        pytest.param({"schedule": "* * * *"}, "spec.schedule", id="four-fields"),
        pytest.param({"schedule": "@every 5m"}, "spec.schedule", id="every"),
        pytest.param({"schedule": "CRON_TZ=UTC 0 * * * *"}, "spec.schedule", id="cron-tz"),
        pytest.param({"schedule": "TZ=Europe/Berlin 0 * * * *"}, "spec.schedule", id="tz"),
        pytest.param({"timeZone": "Mars/Olympus"}, "spec.timeZone", id="unknown-zone"),
        pytest.param({"timeZone": "Local"}, "spec.timeZone", id="local-zone"),
        pytest.param({"timeZone": ""}, "spec.timeZone", id="empty-zone"),
        pytest.param({"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy", id="policy"),
        pytest.param({"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds", id="negative-deadline"),
        pytest.param({"successfulJobsHistoryLimit": -1}, "spec.successfulJobsHistoryLimit", id="negative-history"),
    ],
)
async def test_bad_cron_jobs_are_refused_with_field_paths(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidError) as e:
        await api().create(cron_job(cron_doc(**spec)))
    assert field in [c.field for c in e.value.causes], e.value.causes


async def test_a_cron_jobs_template_follows_the_job_rules() -> None:
    doc = cron_doc()
    doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(errors.InvalidError) as e:
        await api().create(cron_job(doc))
    assert [c.field for c in e.value.causes] == ["spec.jobTemplate.spec.template.spec.restartPolicy"]


async def test_a_cron_job_name_leaves_room_for_the_job_suffix() -> None:
    doc = cron_doc()
    doc["metadata"]["name"] = "x" * 53
    with pytest.raises(errors.InvalidError) as e:
        await api().create(cron_job(doc))
    assert [c.field for c in e.value.causes] == ["metadata.name"]


async def test_a_time_zone_and_a_macro_are_accepted() -> None:
    created = await api().create(cron_job(cron_doc(schedule="@daily", timeZone="Europe/Berlin")))
    assert isinstance(created, batch_pb2.CronJob) and created.spec.time_zone == "Europe/Berlin"
