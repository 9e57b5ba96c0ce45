"""`corral autoscale deploy/web --min 2 --max 10 --cpu-percent 50`: create a
HorizontalPodAutoscaler for a Deployment or ReplicaSet, as `kubectl autoscale`
does. Whatever is not given is left to the server's defaults (minReplicas 1,
cpu at 80% of the pods' requests)."""

from __future__ import annotations

import click

from corral import client as api
from corral.cli.context import Context
from corral.cli.resources import namespace_option, pass_context
from corral.cli.rollout import CommandError, fetch, parse_target
from protos.corral.v1 import metrics_pb2
from protos.kinds import KindInfo, meta
from protos.wellknown import DEFAULT_NAMESPACE


def build_hpa(
    info: KindInfo, target: str, namespace: str, *, name: str, min_replicas: int, max_replicas: int, cpu_percent: int
) -> metrics_pb2.HorizontalPodAutoscaler:
    """The HPA `kubectl autoscale` would create (negative numbers: not given)."""
    hpa = metrics_pb2.HorizontalPodAutoscaler(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
    hpa.metadata.name, hpa.metadata.namespace = name or target, namespace
    ref = hpa.spec.scale_target_ref
    ref.api_version, ref.kind, ref.name = info.api_version, info.kind, target
    if min_replicas >= 0:
        hpa.spec.min_replicas = min_replicas
    hpa.spec.max_replicas = max_replicas
    if cpu_percent >= 0:
        metric = hpa.spec.metrics.add(type="Resource")
        metric.resource.name = "cpu"
        metric.resource.target.type = "Utilization"
        metric.resource.target.average_utilization = cpu_percent
    return hpa


@click.command("autoscale")
@click.argument("target", nargs=-1, required=True)
@click.option(
    "--min",
    "min_replicas",
    type=click.IntRange(min=-1),
    default=-1,
    help="The fewest pods the autoscaler keeps (default: 1).",
)
@click.option(
    "--max", "max_replicas", type=click.IntRange(min=1), required=True, help="The most pods the autoscaler may run."
)
@click.option(
    "--cpu-percent",
    type=click.IntRange(min=-1),
    default=-1,
    help="The average cpu use to aim for, in percent of the pods' cpu requests (default: 80).",
)
@click.option("--name", default="", help="The autoscaler's name (default: the target's name).")
@namespace_option
@pass_context
def autoscale_cmd(
    ctx: Context,
    target: tuple[str, ...],
    min_replicas: int,
    max_replicas: int,
    cpu_percent: int,
    name: str,
    namespace: str,
) -> None:
    """Scale a deployment or replica set with its load (TYPE/NAME or TYPE NAME)."""
    info, target_name = parse_target(target, ("Deployment", "ReplicaSet"), "autoscale")
    ns = namespace or DEFAULT_NAMESPACE
    c = ctx.client()
    fetch(c, info, target_name, ns)
    hpa = build_hpa(
        info, target_name, ns, name=name, min_replicas=min_replicas, max_replicas=max_replicas, cpu_percent=cpu_percent
    )
    try:
        created = c.create(hpa)
    except api.AlreadyExistsError as e:
        raise CommandError(str(e), prefix="Error from server (AlreadyExists)") from e
    click.echo(f"horizontalpodautoscaler.autoscaling/{meta(created).name} autoscaled")
