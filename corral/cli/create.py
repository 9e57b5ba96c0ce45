"""`corral create namespace NAME`: make an object from flags, as kubectl's `create` does.

corral create namespace team-a            namespace/team-a created
corral create ns team-a --dry-run         checked by the server, not written
corral create job now --from=cronjob/db   a run of a CronJob's template, now
"""

from __future__ import annotations

import sys
from typing import ClassVar

import click

from corral import client as api
from corral.cli.context import Context
from corral.cli.resources import object_ref
from protos import jobs
from protos.corral.v1 import batch_pb2, namespace_pb2
from protos.kinds import by_kind, meta, resolve
from protos.wellknown import DEFAULT_NAMESPACE

pass_context = click.make_pass_decorator(Context)


class _Aliases(click.Group):
    """kubectl's short names for create's subcommands (`create ns`)."""

    ALIASES: ClassVar[dict[str, str]] = {"ns": "namespace"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.ALIASES.get(cmd_name, cmd_name))


@click.group("create", cls=_Aliases)
def create_group() -> None:
    """Create an object from flags (for manifests: corral apply -f FILE)."""


@create_group.command("namespace")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Validate on the server and report; write nothing.")
@pass_context
def create_namespace_cmd(ctx: Context, name: str, dry_run: bool) -> None:
    """Create a namespace (alias: ns)."""
    ns = namespace_pb2.Namespace()
    ns.metadata.name = name
    try:
        created = ctx.client().create(ns, dry_run=dry_run)
    except api.AlreadyExistsError as e:
        click.echo(f"Error from server (AlreadyExists): {e}", err=True)
        sys.exit(1)
    suffix = " (dry run)" if dry_run else ""
    click.echo(f"{object_ref(by_kind('Namespace'), meta(created).name)} created{suffix}")


@create_group.command("job")
@click.argument("name")
@click.option("--from", "from_", required=True, help="cronjob/NAME: a Job from the CronJob's jobTemplate.")
@click.option("--namespace", "-n", default="", help="Namespace (default: default).")
@click.option("--dry-run", is_flag=True, help="Validate on the server and report; write nothing.")
@pass_context
def create_job_cmd(ctx: Context, name: str, from_: str, namespace: str, dry_run: bool) -> None:
    """Create a Job from a CronJob's template (--from=cronjob/NAME), as kubectl: owned by the
    CronJob and annotated cronjob.kubernetes.io/instantiate=manual."""
    kind, _, source = from_.partition("/")
    if not source or resolve(kind).kind != "CronJob":
        raise click.BadParameter(f'"{from_}": only cronjob/NAME is supported', param_hint="--from")
    c = ctx.client()
    cron_job = c.get("CronJob", source, namespace or DEFAULT_NAMESPACE)
    assert isinstance(cron_job, batch_pb2.CronJob)
    job = jobs.job_from_cron_job(cron_job, name)
    job.metadata.annotations[jobs.INSTANTIATE] = "manual"
    try:
        created = c.create(job, dry_run=dry_run)
    except api.AlreadyExistsError as e:
        click.echo(f"Error from server (AlreadyExists): {e}", err=True)
        sys.exit(1)
    suffix = " (dry run)" if dry_run else ""
    click.echo(f"{object_ref(by_kind('Job'), meta(created).name)} created{suffix}")
