"""`corral logs POD` (or `job/NAME`): a container's output, relayed from its node.

For a Job, as kubectl: the logs of one of its pods, the first in kubectl's
logging order (on a node before unscheduled, Running before Unknown before
Pending, ready first, more restarts first, oldest first); with several,
"Found N pods, using pod/NAME" is said on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from corral.cli.context import Context
from protos import owners
from protos.corral.v1 import batch_pb2, pod_pb2
from protos.pods import is_ready
from protos.wellknown import DEFAULT_NAMESPACE

pass_context = click.make_pass_decorator(Context)

_PHASE_ORDER = {"Running": 0, "Unknown": 1, "Pending": 2}


def logging_order(pods: Sequence[pod_pb2.Pod]) -> list[pod_pb2.Pod]:
    """kubectl's ByLogging order: the pod whose logs are most worth reading first."""

    def key(p: pod_pb2.Pod) -> tuple[bool, int, bool, int, int, str]:
        return (
            not p.spec.node_name,
            _PHASE_ORDER.get(p.status.phase, 3),
            not is_ready(p),
            -max((s.restart_count for s in p.status.container_statuses), default=0),
            p.metadata.creation_timestamp.seconds,
            p.metadata.name,
        )

    return sorted(pods, key=key)


def _job_pod(ctx: Context, name: str, namespace: str) -> str:
    c = ctx.client()
    job = c.get("Job", name, namespace)
    assert isinstance(job, batch_pb2.Job)
    selector = ",".join(f"{k}={v}" for k, v in sorted(job.spec.selector.match_labels.items()))
    listed, _ = c.list("Pod", namespace, selector=selector)
    pods = [p for p in listed if isinstance(p, pod_pb2.Pod) and owners.is_controlled_by(p, job.metadata.uid)]
    if not pods:
        raise click.ClickException(f"no pods of job/{name} yet")
    chosen = logging_order(pods)[0].metadata.name
    if len(pods) > 1:
        click.echo(f"Found {len(pods)} pods, using pod/{chosen}", err=True)
    return chosen


@click.command("logs")
@click.argument("pod")
@click.option("--container", "-c", default="", help="Container name (required when the pod has several).")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new output.")
@click.option("--tail", "tail", type=int, default=-1, help="Only the last N lines (-1: all).")
@click.option("--previous", "-p", is_flag=True, help="The previous, terminated run of the container.")
@click.option("--namespace", "-n", default="", help="Namespace (default: default).")
@pass_context
def logs_cmd(ctx: Context, pod: str, container: str, follow: bool, tail: int, previous: bool, namespace: str) -> None:
    """Print the logs of a container in a pod (POD, pod/POD, or job/NAME for one of a Job's pods)."""
    kind, _, name = pod.rpartition("/")
    namespace = namespace or DEFAULT_NAMESPACE
    if kind.lower() in ("job", "jobs", "job.batch", "jobs.batch"):
        name = _job_pod(ctx, name, namespace)
    elif kind and kind.lower() not in ("pod", "pods", "po"):
        raise click.UsageError(f'logs works on pods and jobs, got "{pod}"')
    out = sys.stdout.buffer
    for chunk in ctx.client().logs(
        name,
        namespace,
        container=container,
        follow=follow,
        tail_lines=max(tail, 0),
        previous=previous,
    ):
        out.write(chunk)
        out.flush()
