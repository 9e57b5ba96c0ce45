"""`corral top nodes [NAME]` and `corral top pods [NAME]`: CPU and memory in use, as
`kubectl top` shows them, from the control plane's MetricsService (what agents
measured in the last metrics period).

    NAME   CPU(cores)   CPU%   MEMORY(bytes)   MEMORY%
    n1     1250m        62%    1830Mi          23%

    NAME        CPU(cores)   MEMORY(bytes)   CPU/REQ   MEM/REQ
    web-7d9f8   502m         12Mi            201%      9%
    job-x2      3m           1Mi             -         -

Percentages on nodes are of allocatable. CPU/REQ and MEM/REQ (corral's) are
the pod's usage against its requests summed over its containers (`-` without
a request); `--containers` shows each container's usage instead. With no
metrics reported yet, both say `metrics not available yet` and exit 1, as
kubectl does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import click

from corral import client as api
from corral.cli import printers
from corral.cli.context import Context
from corral.cli.rollout import CommandError
from protos.corral.v1 import metrics_pb2
from protos.wellknown import DEFAULT_NAMESPACE

pass_context = click.make_pass_decorator(Context)

NOT_AVAILABLE = "metrics not available yet"
UNKNOWN = "<unknown>"
MIB = 1024 * 1024
SORT_KEYS = ("cpu", "memory")


def cpu_text(millis: int) -> str:
    return f"{millis}m"


def memory_text(size: int) -> str:
    return f"{size // MIB}Mi"


def percent(used: int, total: int) -> str:
    return f"{used * 100 // total}%" if total > 0 else "-"


def pod_cpu(item: metrics_pb2.PodMetrics) -> int:
    return sum(c.cpu_millis for c in item.usage.containers)


def pod_memory(item: metrics_pb2.PodMetrics) -> int:
    return sum(c.memory_bytes for c in item.usage.containers)


def nodes_table(items: Sequence[metrics_pb2.NodeMetrics], *, sort_by: str = "") -> str:
    headers = ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    if sort_by:
        items = sorted(items, key=lambda i: -(i.usage.cpu_millis if sort_by == "cpu" else i.usage.memory_bytes))
    rows = []
    for item in items:
        if not item.HasField("usage"):
            rows.append([item.name, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN])
            continue
        usage = item.usage
        rows.append(
            [
                item.name,
                cpu_text(usage.cpu_millis),
                percent(usage.cpu_millis, item.allocatable_cpu_millis),
                memory_text(usage.memory_bytes),
                percent(usage.memory_bytes, item.allocatable_memory_bytes),
            ]
        )
    return printers.format_table(rows, headers)


def pods_table(
    items: Sequence[metrics_pb2.PodMetrics],
    *,
    all_namespaces: bool = False,
    containers: bool = False,
    sort_by: str = "",
) -> str:
    if sort_by:
        items = sorted(items, key=lambda i: -(pod_cpu(i) if sort_by == "cpu" else pod_memory(i)))
    namespace = ["NAMESPACE"] if all_namespaces else []
    if containers:
        rows = [
            ([item.namespace] if all_namespaces else [])
            + [item.name, c.name, cpu_text(c.cpu_millis), memory_text(c.memory_bytes)]
            for item in items
            for c in item.usage.containers
        ]
        return printers.format_table(rows, [*namespace, "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"])
    rows = []
    for item in items:
        cpu, memory = pod_cpu(item), pod_memory(item)
        rows.append(
            ([item.namespace] if all_namespaces else [])
            + [
                item.name,
                cpu_text(cpu),
                memory_text(memory),
                percent(cpu, item.request_cpu_millis),
                percent(memory, item.request_memory_bytes),
            ]
        )
    return printers.format_table(rows, [*namespace, "NAME", "CPU(cores)", "MEMORY(bytes)", "CPU/REQ", "MEM/REQ"])


class _TopGroup(click.Group):
    """`top node` and `top no` for `top nodes`, `top pod` and `top po` for `top pods`, as kubectl."""

    ALIASES: ClassVar[dict[str, str]] = {"node": "nodes", "no": "nodes", "pod": "pods", "po": "pods"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))


@click.group("top", cls=_TopGroup)
def top_group() -> None:
    """Show CPU and memory in use by nodes or pods."""


sort_option = click.option(
    "--sort-by", type=click.Choice(SORT_KEYS), default=None, help="List the biggest users of cpu or memory first."
)


@top_group.command("nodes")
@click.argument("name", required=False, default="")
@sort_option
@pass_context
def top_nodes(ctx: Context, name: str, sort_by: str | None) -> None:
    """CPU and memory in use on each node (or NAME), against its allocatable."""
    items = ctx.client().node_metrics(name)
    if not any(item.HasField("usage") for item in items):
        raise CommandError(NOT_AVAILABLE)
    click.echo(nodes_table(items, sort_by=sort_by or ""))


@top_group.command("pods")
@click.argument("name", required=False, default="")
@click.option("--namespace", "-n", default="", help="Namespace (default: default).")
@click.option("--all-namespaces", "-A", is_flag=True, help="Pods of every namespace.")
@click.option("--selector", "-l", default="", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--containers", is_flag=True, help="Each container's usage.")
@sort_option
@pass_context
def top_pods(
    ctx: Context, name: str, namespace: str, all_namespaces: bool, selector: str, containers: bool, sort_by: str | None
) -> None:
    """CPU and memory in use by each pod (or NAME), against its requests."""
    c = ctx.client()
    items = c.pod_metrics(namespace, name, all_namespaces=all_namespaces, selector=selector)
    if not items:
        _nothing_to_show(c, namespace, all_namespaces=all_namespaces, selector=selector, named=bool(name))
        return
    click.echo(pods_table(items, all_namespaces=all_namespaces, containers=containers, sort_by=sort_by or ""))


def _nothing_to_show(c: api.Client, namespace: str, *, all_namespaces: bool, selector: str, named: bool) -> None:
    """No pod has metrics: say whether there are no pods at all, or no metrics yet (exit 1)."""
    if not named:
        ns = "" if all_namespaces else (namespace or DEFAULT_NAMESPACE)
        if not c.list_page("Pod", ns, selector=selector, limit=1).items:
            where = "" if all_namespaces else f" in {ns} namespace"
            click.echo(f"No resources found{where}.", err=True)
            return
    raise CommandError(NOT_AVAILABLE)
