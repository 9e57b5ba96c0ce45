"""`corral status`: the control plane's health as the answering replica sees it.

    $ corral status
    server   127.0.0.1:7443 (leading)
    etcd     3.4.23, healthy, db 1.2 MiB; embedded: /usr/bin/etcd (PATH), restarted 0 times

A release not recommended for production gets a warning line naming the risk
and the fix; an unreachable etcd, its error (and exit status 1).
"""

from __future__ import annotations

import click

from corral.cli.context import Context
from protos.corral.v1 import status_pb2

pass_context = click.make_pass_decorator(Context)


def format_status(status: status_pb2.ClusterStatus) -> list[str]:
    """The lines `corral status` prints."""
    etcd = status.etcd
    lines = [f"server   {status.server} ({'leading' if status.leading else 'standby'})"]
    times = "time" if etcd.restarts == 1 else "times"
    where = (
        f"embedded: {etcd.binary} ({etcd.binary_source}), restarted {etcd.restarts} {times}"
        if etcd.embedded
        else f"external: {','.join(etcd.endpoints)}"
    )
    version = etcd.version or "version unknown"
    if etcd.healthy:
        alarms = f", ALARMS: {', '.join(etcd.alarms)}" if etcd.alarms else ""
        lines.append(f"etcd     {version}, healthy, db {_mib(etcd.db_size_bytes)}{alarms}; {where}")
    else:
        lines.append(f"etcd     {version}, NOT ANSWERING ({etcd.error}); {where}")
    if etcd.warning:
        lines.append(f"warning: {etcd.warning}")
    return lines


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


@click.command("status")
@pass_context
def status_cmd(ctx: Context) -> None:
    """Show the control plane's health: the replica answering and its etcd (release, health, size)."""
    status = ctx.client().status()
    for line in format_status(status):
        click.echo(line)
    if not status.etcd.healthy:
        raise click.exceptions.Exit(1)
