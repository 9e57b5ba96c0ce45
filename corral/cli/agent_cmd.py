"""`corral agent`: run the node agent on this machine."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import click

from corral import logs
from corral.cli.config import resolve_server

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def default_agent_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "corral-agent"


def parse_labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f'"{item}": expected key=value', param_hint="--labels")
        labels[key.strip()] = value.strip()
    return labels


@click.command("agent")
@click.option("--server", "server_opt", default=None,
              help="Control plane host:port (default: as for every command: --server, CORRAL_SERVER, config).")
@click.option("--name", default=None, help="Node name (default: this machine's hostname).")
@click.option("--labels", default="", help="Node labels, k=v,k2=v2.")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(["docker", "process", "fake"]),
              help="Runtimes to offer (repeatable; default docker). `process` runs commands as this "
                   "agent's own user, so it is offered only when asked for.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Agent state (default ~/.local/share/corral-agent).")
@click.option("--address", default="", help="The address this node advertises (default: the local "
              "address that routes to the server).")
@click.option("--restart-backoff", type=float, default=10.0, show_default=True,
              help="Seconds before the first restart of a crashed container (doubles per crash).")
@click.option("--restart-backoff-max", type=float, default=300.0, show_default=True,
              help="Longest wait between restarts of a crash-looping container.")
@click.option("--poll-interval", type=float, default=1.0, show_default=True,
              help="Seconds between checks of each pod's containers.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.pass_context
def agent_cmd(ctx: click.Context, server_opt: str | None, name: str | None, labels: str,
              runtimes: tuple[str, ...], data_dir: str | None, address: str, restart_backoff: float,
              restart_backoff_max: float, poll_interval: float, log_level: str) -> None:
    """Run the node agent: register this machine and run the pods bound to it."""
    from agent.main import AgentConfig, AgentError, run_agent  # the agent loads only when asked for

    parent = ctx.obj.server_flag if ctx.obj is not None else None
    server = resolve_server(server_opt or parent).address
    node = (name or socket.gethostname()).lower()
    if not _NAME.match(node) or len(node) > 253:
        raise click.BadParameter(f'"{node}" is not a valid node name (lower case letters, digits, "-", ".")',
                                 param_hint="--name")
    logs.configure(log_level)
    config = AgentConfig(server=server, name=node, data_dir=Path(data_dir) if data_dir else default_agent_dir(),
                         runtimes=list(runtimes) or ["docker"], labels=parse_labels(labels), address=address,
                         poll_interval=poll_interval, restart_backoff=restart_backoff,
                         restart_backoff_max=restart_backoff_max)
    try:
        asyncio.run(run_agent(config))
    except AgentError as e:
        raise click.ClickException(str(e)) from e
