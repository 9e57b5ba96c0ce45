"""`corral logs POD`: a container's output, relayed from its node."""

from __future__ import annotations

import sys

import click

from corral.cli.context import Context
from protos.wellknown import DEFAULT_NAMESPACE

pass_context = click.make_pass_decorator(Context)


@click.command("logs")
@click.argument("pod")
@click.option("--container", "-c", default="", help="Container name (required when the pod has several).")
@click.option("--follow", "-f", is_flag=True, help="Keep streaming new output.")
@click.option("--tail", "tail", type=int, default=-1, help="Only the last N lines (-1: all).")
@click.option("--previous", "-p", is_flag=True, help="The previous, terminated run of the container.")
@click.option("--namespace", "-n", default="", help="Namespace (default: default).")
@pass_context
def logs_cmd(ctx: Context, pod: str, container: str, follow: bool, tail: int, previous: bool, namespace: str) -> None:
    """Print the logs of a container in a pod (POD or pod/POD)."""
    kind, _, name = pod.rpartition("/")
    if kind and kind.lower() not in ("pod", "pods", "po"):
        raise click.UsageError(f'logs works on pods, got "{pod}"')
    out = sys.stdout.buffer
    for chunk in ctx.client().logs(
        name,
        namespace or DEFAULT_NAMESPACE,
        container=container,
        follow=follow,
        tail_lines=max(tail, 0),
        previous=previous,
    ):
        out.write(chunk)
        out.flush()
