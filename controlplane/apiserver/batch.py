"""Jobs and CronJobs at the API: the generated selector, validation and update rules. Pure code: no I/O.

As Kubernetes: unless `spec.manualSelector` is true, a Job's selector is
generated when it is stored (`generate_selector`, once the uid is known) —
`batch.kubernetes.io/controller-uid: <uid>` — and the template gets the
controller-uid and job-name labels (both the `batch.kubernetes.io/` and the
legacy names). A stored Job keeps that selector and those labels when a
manifest without them is applied (`keep_generated_selector`).

The rules about the pod spec itself are the common ones (given as
`template`, so this module does not import the validation module that
dispatches to it).
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.apiserver.problems import Problems
from protos import cron, jobs
from protos.corral.v1 import batch_pb2, meta_pb2, pod_pb2

TemplateCheck = Callable[[Problems, str, meta_pb2.LabelSelector, pod_pb2.PodTemplateSpec], None]
SelectorCheck = Callable[[Problems, str, meta_pb2.LabelSelector], None]
NameCheck = Callable[..., None]

JOB_RESTART_POLICIES = ("OnFailure", "Never")
_GENERATED_LABELS = (jobs.CONTROLLER_UID, jobs.LEGACY_CONTROLLER_UID, jobs.JOB_NAME, jobs.LEGACY_JOB_NAME)
# Kubernetes' limit on an onExitCodes rule's values.
MAX_EXIT_CODES = 255


def manual(spec: batch_pb2.JobSpec) -> bool:
    return spec.HasField("manual_selector") and spec.manual_selector


def generate_selector(job: batch_pb2.Job) -> None:
    """Kubernetes' generateSelector, on a Job about to be stored with its uid."""
    if manual(job.spec):
        return
    m, template = job.metadata, job.spec.template.metadata.labels
    for key in (jobs.JOB_NAME, jobs.LEGACY_JOB_NAME):
        template.setdefault(key, m.name)
    for key in (jobs.CONTROLLER_UID, jobs.LEGACY_CONTROLLER_UID):
        template[key] = m.uid
    job.spec.selector.Clear()
    job.spec.selector.match_labels[jobs.CONTROLLER_UID] = m.uid


def keep_generated_selector(existing: batch_pb2.Job, merged: batch_pb2.Job) -> None:
    """A manifest without the generated selector and labels keeps the stored ones, and one
    without completions keeps the stored (defaulted) count, as `kubectl apply` leaves them."""
    if not merged.spec.HasField("completions") and existing.spec.HasField("completions"):
        merged.spec.completions = existing.spec.completions
    if manual(merged.spec) or manual(existing.spec):
        return
    if not merged.spec.selector.match_labels and not merged.spec.selector.match_expressions:
        merged.spec.selector.CopyFrom(existing.spec.selector)
    labels = merged.spec.template.metadata.labels
    for key in _GENERATED_LABELS:
        if key in existing.spec.template.metadata.labels and key not in labels:
            labels[key] = existing.spec.template.metadata.labels[key]


def validate_job(
    p: Problems, job: batch_pb2.Job, *, template: TemplateCheck, selector: SelectorCheck, label_value: NameCheck
) -> None:
    if not manual(job.spec):
        label_value(p, "metadata.name", job.metadata.name, label=True)
    validate_job_spec(p, "spec", job.spec, job.metadata.uid, template=template, selector=selector)


def validate_job_spec(
    p: Problems, path: str, spec: batch_pb2.JobSpec, uid: str, *, template: TemplateCheck, selector: SelectorCheck
) -> None:
    for name, value in (
        ("parallelism", spec.parallelism),
        ("completions", spec.completions),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit),
        ("backoffLimitPerIndex", spec.backoff_limit_per_index),
        ("maxFailedIndexes", spec.max_failed_indexes),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished),
    ):
        p.at_least(f"{path}.{name}", value, 0)
    p.one_of(f"{path}.completionMode", spec.completion_mode, jobs.COMPLETION_MODES)
    p.one_of(f"{path}.podReplacementPolicy", spec.pod_replacement_policy, jobs.POD_REPLACEMENT_POLICIES)
    _validate_indexed(p, path, spec)
    if manual(spec):
        selector(p, f"{path}.selector", spec.selector)
        template(p, path, spec.selector, spec.template)
    else:
        sel = spec.selector
        written = bool(sel.match_labels or sel.match_expressions)
        generated = sel.match_labels.get(jobs.CONTROLLER_UID)
        own = generated is not None and len(sel.match_labels) == 1 and not sel.match_expressions
        if written and (not own or (uid and generated != uid)):
            p.add(f"{path}.selector", "`selector` not auto-generated (set manualSelector: true to choose your own)")
        template(p, path, meta_pb2.LabelSelector(), spec.template)
    restart = spec.template.spec.restart_policy
    if restart not in JOB_RESTART_POLICIES:
        p.add(f"{path}.template.spec.restartPolicy", f'must be one of "OnFailure", "Never", got "{restart}"')
    if spec.HasField("pod_failure_policy"):
        _validate_pod_failure_policy(p, f"{path}.podFailurePolicy", spec)


def _validate_indexed(p: Problems, path: str, spec: batch_pb2.JobSpec) -> None:
    indexed = spec.completion_mode == jobs.INDEXED
    if indexed and not spec.HasField("completions"):
        p.add(f"{path}.completions", "required when completionMode is Indexed")
    if indexed and spec.completions > jobs.MAX_INDEXED_COMPLETIONS:
        p.add(f"{path}.completions", f"must be <= {jobs.MAX_INDEXED_COMPLETIONS} when completionMode is Indexed")
    if indexed and spec.parallelism > jobs.MAX_INDEXED_COMPLETIONS:
        p.add(f"{path}.parallelism", f"must be <= {jobs.MAX_INDEXED_COMPLETIONS} when completionMode is Indexed")
    if spec.HasField("backoff_limit_per_index") and not indexed:
        p.add(f"{path}.backoffLimitPerIndex", "requires completionMode Indexed")
    if spec.HasField("max_failed_indexes"):
        if not spec.HasField("backoff_limit_per_index"):
            p.add(f"{path}.maxFailedIndexes", "requires backoffLimitPerIndex")
        elif spec.max_failed_indexes > spec.completions:
            p.add(f"{path}.maxFailedIndexes", f"must be <= completions ({spec.completions})")


def _validate_pod_failure_policy(p: Problems, path: str, spec: batch_pb2.JobSpec) -> None:
    if spec.template.spec.restart_policy != "Never":
        p.add(f"{path}", 'requires spec.template.spec.restartPolicy "Never"')
    if spec.pod_replacement_policy != jobs.FAILED_ONLY:
        p.add(
            f"{path[: -len('podFailurePolicy')]}podReplacementPolicy",
            f'must be "Failed" when podFailurePolicy is set, got "{spec.pod_replacement_policy}"',
        )
    containers = {c.name for c in (*spec.template.spec.init_containers, *spec.template.spec.containers)}
    for i, rule in enumerate(spec.pod_failure_policy.rules):
        at = f"{path}.rules[{i}]"
        p.one_of(f"{at}.action", rule.action, jobs.POD_FAILURE_ACTIONS)
        if rule.action == jobs.FAIL_INDEX and not spec.HasField("backoff_limit_per_index"):
            p.add(f"{at}.action", "FailIndex requires backoffLimitPerIndex")
        has_codes, has_conditions = rule.HasField("on_exit_codes"), bool(rule.on_pod_conditions)
        if has_codes == has_conditions:
            p.add(at, "must set exactly one of onExitCodes, onPodConditions")
        if has_codes:
            _validate_exit_codes(p, f"{at}.onExitCodes", rule.on_exit_codes, containers)
        for j, pattern in enumerate(rule.on_pod_conditions):
            if not pattern.type:
                p.add(f"{at}.onPodConditions[{j}].type", "required")
            p.one_of(f"{at}.onPodConditions[{j}].status", pattern.status, ("True", "False", "Unknown"))


def _validate_exit_codes(
    p: Problems, path: str, codes: batch_pb2.PodFailurePolicyOnExitCodesRequirement, containers: set[str]
) -> None:
    if codes.HasField("container_name") and codes.container_name not in containers:
        p.add(f"{path}.containerName", f'must name a container of the pod template, got "{codes.container_name}"')
    p.one_of(f"{path}.operator", codes.operator, ("In", "NotIn"))
    values = list(codes.values)
    if not values:
        p.add(f"{path}.values", "required: at least one exit code")
    if len(values) > MAX_EXIT_CODES:
        p.add(f"{path}.values", f"must have at most {MAX_EXIT_CODES} items, got {len(values)}")
    if len(set(values)) != len(values):
        p.add(f"{path}.values", "must not contain duplicates")
    if values != sorted(values):
        p.add(f"{path}.values", "must be ordered")
    if codes.operator == "In" and 0 in values:
        p.add(f"{path}.values", "must not contain 0 for the In operator")


def validate_cron_job(p: Problems, cj: batch_pb2.CronJob, *, template: TemplateCheck, selector: SelectorCheck) -> None:
    if len(cj.metadata.name) > jobs.MAX_CRON_JOB_NAME:
        p.add("metadata.name", f"must be no more than {jobs.MAX_CRON_JOB_NAME} characters")
    spec = cj.spec
    if spec.HasField("time_zone"):
        problem = cron.zone_problem(spec.time_zone)
        if problem is not None:
            p.add("spec.timeZone", problem)
    try:
        cron.parse(spec.schedule)
    except cron.ScheduleError as e:
        p.add("spec.schedule", f"invalid schedule {spec.schedule!r}: {e}")
    p.one_of("spec.concurrencyPolicy", spec.concurrency_policy, jobs.CONCURRENCY_POLICIES)
    p.at_least("spec.startingDeadlineSeconds", spec.starting_deadline_seconds, 0)
    p.at_least("spec.successfulJobsHistoryLimit", spec.successful_jobs_history_limit, 0)
    p.at_least("spec.failedJobsHistoryLimit", spec.failed_jobs_history_limit, 0)
    job_spec = spec.job_template.spec
    if manual(job_spec) or not (job_spec.selector.match_labels or job_spec.selector.match_expressions):
        validate_job_spec(p, "spec.jobTemplate.spec", job_spec, "", template=template, selector=selector)
    else:
        p.add("spec.jobTemplate.spec.selector", "`selector` will be auto-generated (or set manualSelector: true)")


def validate_job_update(p: Problems, old: batch_pb2.Job, new: batch_pb2.Job) -> None:
    """What may change in a stored Job, as Kubernetes' ValidateJobSpecUpdate."""
    o, n = old.spec, new.spec
    for name, field in (
        ("selector", "selector"),
        ("manualSelector", "manual_selector"),
        ("completionMode", "completion_mode"),
        ("podFailurePolicy", "pod_failure_policy"),
        ("backoffLimitPerIndex", "backoff_limit_per_index"),
    ):
        if _field(o, field) != _field(n, field):
            p.add(f"spec.{name}", "field is immutable")
    elastic = n.completion_mode == jobs.INDEXED and n.completions == n.parallelism
    if _field(o, "completions") != _field(n, "completions") and not elastic:
        p.add("spec.completions", "field is immutable (an Indexed Job may set it to its new parallelism)")
    if o.template != n.template and not _scheduling_change_allowed(old, new):
        p.add(
            "spec.template",
            "field is immutable (a suspended Job that has not started may change only its labels, annotations, "
            "nodeSelector, tolerations and affinity)",
        )


def _field(spec: batch_pb2.JobSpec, name: str) -> object:
    descriptor = spec.DESCRIPTOR.fields_by_name[name]
    if descriptor.has_presence and not spec.HasField(name):  # type: ignore[arg-type]
        return None
    return getattr(spec, name)


def _scheduling_change_allowed(old: batch_pb2.Job, new: batch_pb2.Job) -> bool:
    if not (old.spec.suspend and new.spec.suspend) or old.status.HasField("start_time"):
        return False
    a, b = pod_pb2.PodSpec(), pod_pb2.PodSpec()
    a.CopyFrom(old.spec.template.spec)
    b.CopyFrom(new.spec.template.spec)
    for spec in (a, b):
        spec.ClearField("node_selector")
        spec.ClearField("tolerations")
        spec.ClearField("affinity")
    return a == b
