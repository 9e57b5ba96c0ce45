"""`corral up`: a whole cluster on this machine, in the foreground.

Starts an embedded etcd, the control plane and a local agent (the Docker
runtime when an engine answers, otherwise the process runtime — it says
which), writes the CLI config so `corral get …` finds it, and runs until
Ctrl-C. Stopping leaves pods' containers running, as stopping a kubelet or
k3s does; the next `corral up` adopts them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from contextlib import AsyncExitStack
from pathlib import Path

import click
import yaml

from corral import logs
from corral.cli.agent_cmd import DEFAULT_METRICS_LISTEN as AGENT_METRICS_LISTEN
from corral.cli.config import config_path
from corral.cli.server import DEFAULT_METRICS_LISTEN, default_data_dir


def write_cli_config(address: str) -> Path:
    """Point the CLI at this cluster, keeping other settings in the file."""
    path = config_path()
    data: dict[str, object] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            data = loaded
    data["server"] = address
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


async def pick_runtime() -> str:
    from agent.runtime.docker import DockerRuntime
    from agent.runtime.errors import RuntimeFailure

    try:
        runtime = await DockerRuntime.connect()
    except RuntimeFailure:
        return "process"
    await runtime.close()
    return "docker"


async def up(data_dir: Path, listen: str, runtime: str | None, name: str, *,
             allow_privileged: bool = False, allow_host_path: bool = False) -> None:
    from agent.main import AgentConfig, run_agent
    from controlplane.server import ServerConfig, start

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        # Metrics on the default ports, as `corral server` and `corral agent` serve them (skipped when taken).
        running = await start(ServerConfig(listen=listen, data_dir=data_dir, metrics_listen=DEFAULT_METRICS_LISTEN,
                                           metrics_optional=True, allow_privileged=allow_privileged,
                                           allow_host_path=allow_host_path), stack)
        config_file = write_cli_config(running.address)
        chosen = runtime or await pick_runtime()
        reason = "a Docker engine answers" if chosen == "docker" else "no Docker engine answers"
        click.echo(f"corral is up: API on {running.address}, data in {data_dir}", err=True)
        click.echo(f"node {name} runs pods with the {chosen} runtime"
                   f"{'' if runtime else f' ({reason})'}; CLI config: {config_file}", err=True)
        click.echo("Try: corral apply -f examples/ && corral get pods -o wide   (Ctrl-C stops)", err=True)
        agent = AgentConfig(server=running.address, name=name, data_dir=data_dir / "agent", runtimes=[chosen],
                            metrics_listen=AGENT_METRICS_LISTEN, metrics_optional=True)
        await run_agent(agent, stop)
    click.echo("corral stopped (pod containers keep running; the next `corral up` adopts them)", err=True)


@click.command("up")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="State directory (default ~/.local/share/corral).")
@click.option("--listen", default="127.0.0.1:7443", show_default=True, help="Address of the API.")
@click.option("--runtime", type=click.Choice(["docker", "process"]), default=None,
              help="Runtime of the local node (default: docker when an engine answers, else process).")
@click.option("--name", default=None, help="Node name (default: this machine's hostname).")
@click.option("--allow-privileged", is_flag=True, default=False,
              help="Cluster policy: admit privileged containers (as corral server --allow-privileged).")
@click.option("--allow-host-path", is_flag=True, default=False,
              help="Cluster policy: admit hostPath volumes (as corral server --allow-host-path).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True)
def up_cmd(data_dir: str | None, listen: str, runtime: str | None, name: str | None, allow_privileged: bool,
           allow_host_path: bool, log_level: str) -> None:
    """Run a single-machine cluster: etcd, control plane and agent, until Ctrl-C."""
    from agent.main import AgentError
    from controlplane.server import ServerError
    from controlplane.store.errors import EmbeddedEtcdError, StoreError

    logs.configure(log_level)
    directory = Path(data_dir) if data_dir else default_data_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    node = (name or socket.gethostname()).lower()
    try:
        asyncio.run(up(directory, listen, runtime, node, allow_privileged=allow_privileged,
                       allow_host_path=allow_host_path))
    except (ServerError, StoreError, EmbeddedEtcdError, AgentError) as e:
        raise click.ClickException(str(e)) from e
