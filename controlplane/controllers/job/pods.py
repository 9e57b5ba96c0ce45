"""A Job's pods, pure: a new pod from the template, and the active pods a Job has too many of.

A pod is named `<job>-<random>` (NonIndexed) or `<job>-<index>-<random>`
(Indexed), carries the template's labels (with the generated controller-uid
and job-name ones) and annotations, and is owned by the Job. An Indexed pod
also has its index as the `batch.kubernetes.io/job-completion-index`
annotation and label, its host name `<job>-<index>` (unless the template sets
one), and as the `JOB_COMPLETION_INDEX` variable in every
container (Kubernetes sets it from the annotation through the downward API;
the value is the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from controlplane.controllers.job.failures import completion_index
from controlplane.controllers.replicaset.victims import victim_order
from protos import jobs, owners
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.pods import every_container

MAX_HOST_NAME = 63


def new_pod(job: batch_pb2.Job, index: int | None) -> pod_pb2.Pod:
    template = job.spec.template
    pod = pod_pb2.Pod(api_version="v1", kind="Pod")
    m = pod.metadata
    m.generate_name = f"{job.metadata.name}-" if index is None else f"{job.metadata.name}-{index}-"
    m.namespace = job.metadata.namespace
    m.labels.update(template.metadata.labels)
    m.annotations.update(template.metadata.annotations)
    m.owner_references.append(owners.owner_reference(job))
    pod.spec.CopyFrom(template.spec)
    if index is not None:
        if not pod.spec.hostname:
            pod.spec.hostname = host_name(job.metadata.name, index)
        m.annotations[jobs.COMPLETION_INDEX] = str(index)
        m.labels[jobs.COMPLETION_INDEX] = str(index)
        for _, container in every_container(pod.spec):
            kept = [e for e in container.env if e.name != jobs.COMPLETION_INDEX_ENV]
            del container.env[:]
            container.env.add(name=jobs.COMPLETION_INDEX_ENV, value=str(index))
            container.env.extend(kept)
    return pod


def host_name(job_name: str, index: int) -> str:
    """`<job>-<index>`, the job name cut so the whole stays a DNS label (63 characters)."""
    suffix = f"-{index}"
    return f"{job_name[: MAX_HOST_NAME - len(suffix)].rstrip('-')}{suffix}"


def surplus(
    job: batch_pb2.Job, active: Sequence[pod_pb2.Pod], completed: set[int], keep: int, now: datetime
) -> list[pod_pb2.Pod]:
    """Active pods to delete: beyond `keep` (NonIndexed: parallelism or what is left to do), and
    for an Indexed Job beyond parallelism and those whose index is missing, out of range,
    already completed or duplicated."""
    spec = job.spec
    order = victim_order(active, min_ready_seconds=0, now=now)
    if spec.completion_mode != jobs.INDEXED:
        return order[: max(0, len(order) - keep)]
    delete: list[pod_pb2.Pod] = []
    seen: set[int] = set()
    for pod in reversed(order):  # the pods to keep first
        index = completion_index(pod)
        if index is None or index >= spec.completions or index in completed or index in seen:
            delete.append(pod)
        else:
            seen.add(index)
    kept = [p for p in reversed(order) if p not in delete]
    return delete + kept[spec.parallelism :][::-1]
