"""`corral up`: a whole cluster on this machine, in the foreground.

Starts an embedded etcd, the control plane and a local agent (the Docker
runtime when an engine answers, otherwise the process runtime — it says
which), writes the CLI config (the address and an admin credential, mode
0600) so `corral get …` finds it, gives the local agent its node certificate
straight from the cluster CA, and runs until
Ctrl-C. Stopping leaves pods' containers running, as stopping a kubelet or
k3s does; the next `corral up` adopts them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
from contextlib import AsyncExitStack
from pathlib import Path

import click

from corral.cli.agent_cmd import DEFAULT_METRICS_LISTEN as AGENT_METRICS_LISTEN
from corral.cli.config import write_config
from corral.cli.server import DEFAULT_METRICS_LISTEN, ETCD_BINARY_HELP, default_data_dir, pod_security_level
from corral.common import logs
from corral.common.pki.certs import DEFAULT_NODE_LIFETIME, Identity, Role
from protos.pod_security import DEFAULT_LEVEL, LEVELS, PRIVILEGED


async def pick_runtime() -> str:
    from agent.runtime.docker import DockerRuntime
    from agent.runtime.errors import RuntimeFailure

    try:
        runtime = await DockerRuntime.connect()
    except RuntimeFailure:
        return "process"
    await runtime.close()
    return "docker"


def up_pod_security(level: str | None, runtime: str) -> str:
    """The cluster level: as asked; else privileged when the node runs host processes (the only pods
    this cluster can run, which baseline refuses), else baseline."""
    return level or (PRIVILEGED if runtime == "process" else DEFAULT_LEVEL)


async def up(
    data_dir: Path,
    listen: str,
    runtime: str | None,
    name: str,
    *,
    pod_security: str | None = None,
    allow_host_path: bool = False,
    etcd_binary: Path | None = None,
    service_cidr: str = "10.43.0.0/16",
) -> None:
    from agent.main import PROCESS_USER, AgentConfig, run_agent
    from agent.node.credentials import PKI_DIR
    from controlplane.server import ServerConfig, start

    stop = asyncio.Event()

    def request_stop() -> None:
        if not stop.is_set():
            # Said at once: a container stop already under way (a deleted pod's grace period) finishes first.
            click.echo("corral stopping (container stops already under way finish first)", err=True)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    chosen = runtime or await pick_runtime()
    level = up_pod_security(pod_security, chosen)
    async with AsyncExitStack() as stack:
        # Metrics on the default ports, as `corral server` and `corral agent` serve them (skipped when taken).
        running = await start(
            ServerConfig(
                listen=listen,
                data_dir=data_dir,
                etcd_binary=etcd_binary,
                metrics_listen=DEFAULT_METRICS_LISTEN,
                metrics_optional=True,
                pod_security=level,
                allow_host_path=allow_host_path,
                service_cidr=service_cidr,
            ),
            stack,
        )
        assert running.admin is not None
        assert running.ca is not None
        config_file = write_config(running.address, running.admin)
        # The local agent is this process: its node certificate comes straight from the CA, no token.
        agent_dir = data_dir / "agent"
        running.ca.client_credentials(Identity(Role.NODE, name), dt.datetime.now(dt.UTC), DEFAULT_NODE_LIFETIME).save(
            agent_dir / PKI_DIR
        )
        reason = "a Docker engine answers" if chosen == "docker" else "no Docker engine answers"
        click.echo(f"corral is up: API on {running.address}, data in {data_dir}", err=True)
        click.echo(
            f"node {name} runs pods with the {chosen} runtime"
            f"{'' if runtime else f' ({reason})'}; CLI config: {config_file}",
            err=True,
        )
        as_root = chosen == "process" and os.geteuid() == 0
        click.echo(
            f"pod security level: {level}"
            + (
                f" (process pods run on this host as {PROCESS_USER} unless their runAsUser says otherwise)"
                if as_root
                else ""
            ),
            err=True,
        )
        example = "examples/pod-web.yaml" if chosen == "docker" else "examples/pod-process.yaml"
        click.echo(f"Try: corral apply -f {example} && corral get pods -o wide   (Ctrl-C stops)", err=True)
        # `corral up` on root with no Docker: the process runtime is its only way to run pods (said above).
        agent = AgentConfig(
            server=running.address,
            name=name,
            data_dir=agent_dir,
            runtimes=[chosen],
            metrics_listen=AGENT_METRICS_LISTEN,
            metrics_optional=True,
            allow_process_runtime_as_root=True,
        )
        await run_agent(agent, stop)


@click.command("up")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="CORRAL_DATA_DIR",
    help="State directory (default $CORRAL_DATA_DIR, else ~/.local/share/corral).",
)
@click.option("--listen", default="127.0.0.1:7443", show_default=True, help="Address of the API.")
@click.option(
    "--etcd-binary", type=click.Path(dir_okay=False, exists=True), default=None, metavar="PATH", help=ETCD_BINARY_HELP
)
@click.option(
    "--runtime",
    type=click.Choice(["docker", "process"]),
    default=None,
    help="Runtime of the local node (default: docker when an engine answers, else process).",
)
@click.option("--name", default=None, help="Node name (default: this machine's hostname).")
@click.option(
    "--pod-security",
    type=click.Choice(LEVELS),
    default=None,
    help="Cluster default Pod Security level, as corral server --pod-security (default baseline; "
    "privileged when the node runs the process runtime, the only pods it can run).",
)
@click.option("--allow-privileged", is_flag=True, default=False, help="Same as --pod-security privileged.")
@click.option(
    "--allow-host-path",
    is_flag=True,
    default=False,
    help="Below privileged, admit hostPath volumes (as corral server --allow-host-path).",
)
@click.option(
    "--service-cidr",
    default="10.43.0.0/16",
    show_default=True,
    help="IPv4 range Services' virtual IPs are allocated from (as corral server --service-cidr).",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning", show_default=True
)
def up_cmd(
    data_dir: str | None,
    listen: str,
    etcd_binary: str | None,
    runtime: str | None,
    name: str | None,
    pod_security: str | None,
    allow_privileged: bool,
    allow_host_path: bool,
    service_cidr: str,
    log_level: str,
) -> None:
    """Run a single-machine cluster: etcd, control plane and agent, until Ctrl-C."""
    from agent.main import AgentError
    from controlplane.server import ServerError
    from controlplane.store.errors import EmbeddedEtcdError, StoreError

    logs.configure(log_level)
    directory = Path(data_dir) if data_dir else default_data_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    node = (name or socket.gethostname()).lower()
    try:
        level = (
            pod_security_level(pod_security, allow_privileged=allow_privileged)
            if (pod_security or allow_privileged)
            else None
        )
        asyncio.run(
            up(
                directory,
                listen,
                runtime,
                node,
                pod_security=level,
                allow_host_path=allow_host_path,
                etcd_binary=Path(etcd_binary) if etcd_binary else None,
                service_cidr=service_cidr,
            )
        )
    except (ServerError, StoreError, EmbeddedEtcdError, AgentError) as e:
        raise click.ClickException(str(e)) from e
    # Only now, when asyncio.run has also waited for the agent's Docker calls in flight.
    click.echo("corral stopped (pod containers keep running; the next `corral up` adopts them)", err=True)
