"""`corral agent`: run the node agent on this machine."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path

import click

from corral.cli.config import resolve_server
from corral.common import logs

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# Where the agent serves Prometheus metrics unless told otherwise: loopback only, so the agent exposes
# nothing unauthenticated to the network (give --metrics-listen :9465 to let a Prometheus elsewhere scrape).
DEFAULT_METRICS_LISTEN = "127.0.0.1:9465"


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


def parse_process_user(text: str) -> str:
    """UID[:GID], numbers only, the user not root (give runAsUser: 0 in a pod for that)."""
    uid, sep, gid = text.partition(":")
    if not uid.isdigit() or (sep and not gid.isdigit()):
        raise click.BadParameter(f'"{text}": expected UID or UID:GID, numbers', param_hint="--process-user")
    if int(uid) == 0:
        raise click.BadParameter("must not be root (0)", param_hint="--process-user")
    return text


def proxy_addresses_of(values: tuple[str, ...]) -> list[str]:
    """Repeated and comma-separated addresses, in order, without repeats; each a specific IP address
    (a DNS server bound to 0.0.0.0 could not answer with the address it was reached at)."""
    addresses = list(dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip()))
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise click.BadParameter(f'"{address}" is not an IP address', param_hint="--proxy-address") from None
        if ip.is_unspecified:
            raise click.BadParameter(
                f'"{address}": give the addresses to listen on, not a wildcard', param_hint="--proxy-address"
            )
    return addresses


@click.command("agent")
@click.option(
    "--server",
    "server_opt",
    default=None,
    help="Control plane host:port, or its replicas a:7443,b:7443 (the first one a hash of the node name picks, "
    "so agents spread over the replicas; the next in turn on each reconnect). "
    "Default: as for every command: --server, CORRAL_SERVER, config.",
)
@click.option(
    "--token",
    envvar="CORRAL_TOKEN",
    default="",
    help="Join token from `corral token create` on the server ($CORRAL_TOKEN). Needed to join, and "
    "again only when the node certificate in --data-dir is missing or expired.",
)
@click.option(
    "--join",
    "join_addresses",
    envvar="CORRAL_JOIN",
    default="",
    metavar="HOST:PORT[,…]",
    help="The servers' join ports ($CORRAL_JOIN; default: each --server port + 1).",
)
@click.option("--name", default=None, help="Node name (default: this machine's hostname).")
@click.option("--labels", default="", help="Node labels, k=v,k2=v2.")
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    type=click.Choice(["docker", "process", "fake"]),
    help="Runtimes to offer (repeatable; default docker). `process` runs commands on this host as "
    "this agent's own user (as root: see --allow-process-runtime-as-root), so it is offered only "
    "when asked for; the API admits such pods only at the privileged pod security level.",
)
@click.option(
    "--allow-process-runtime-as-root",
    is_flag=True,
    default=False,
    help="Let an agent running as root offer --runtime process; its pods run as --process-user "
    "unless their runAsUser says otherwise (which the privileged level allows, 0 included).",
)
@click.option(
    "--process-user",
    default="65534:65534",
    show_default=True,
    metavar="UID[:GID]",
    help="Who process-runtime pods run as on a root agent when their securityContext names no user.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Agent state (default ~/.local/share/corral-agent).",
)
@click.option(
    "--address",
    default="",
    help="The address this node advertises (default: the local address that routes to the server).",
)
@click.option(
    "--restart-backoff",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds before the first restart of a crashed container (doubles per crash).",
)
@click.option(
    "--restart-backoff-max",
    type=float,
    default=300.0,
    show_default=True,
    help="Longest wait between restarts of a crash-looping container.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds between checks of each pod's containers.",
)
@click.option(
    "--termination-drain",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds a Ready pod being deleted waits before its containers get SIGTERM, so Service "
    "endpoints and node proxies stop sending it connections first (at most half its grace period).",
)
@click.option(
    "--proxy-address",
    "proxy_addresses",
    multiple=True,
    help="The node's addresses for Services: NodePort and LoadBalancer ports are served here, with a DNS "
    "server (repeatable or a,b; default: the advertised --address). ClusterIP Services are on their "
    "own virtual IPs. Docker pods reach the DNS server at their network's gateway.",
)
@click.option(
    "--proxy-mode",
    type=click.Choice(["userspace", "nftables"]),
    default="userspace",
    show_default=True,
    help="userspace: the node proxy relays every Service connection (clusterIPs kept on the corral0 "
    "interface; without root, the reduced mode: every Service on the node's addresses); nftables "
    "(recommended): the kernel NATs new connections straight to an endpoint (needs root or "
    "CAP_NET_ADMIN and the nft command; LeastConnections Services stay on the userspace proxy).",
)
@click.option(
    "--dns-port",
    type=click.IntRange(0, 65535),
    default=53,
    show_default=True,
    help="Port of the DNS server on the proxy addresses (0: none there; the Docker pod network "
    "gateway always gets one on 53).",
)
@click.option(
    "--ingress-http-port",
    type=click.IntRange(0, 65535),
    default=80,
    show_default=True,
    help="Port of the ingress proxy's HTTP on the proxy addresses (0: none). It listens once an Ingress is served.",
)
@click.option(
    "--ingress-https-port",
    type=click.IntRange(0, 65535),
    default=443,
    show_default=True,
    help="Port of the ingress proxy's HTTPS on the proxy addresses (0: none).",
)
@click.option(
    "--ingress-proxy",
    type=click.Choice(["auto", "nginx", "caddy"]),
    default="auto",
    show_default=True,
    help="The ingress data path: a managed nginx (the nginx-light package's binary), or Caddy "
    "(corral[ingress]); auto: nginx when installed, else Caddy when installed, else no ingress.",
)
@click.option(
    "--docker-network",
    default="",
    help="The bridge network Docker pods join, made when missing (default: corral-<node name>).",
)
@click.option(
    "--docker-stats",
    type=click.Choice(["cgroup", "engine"]),
    default="cgroup",
    show_default=True,
    help="Where Docker pods' CPU and memory come from: cgroup (the container's cgroup files, as the "
    "kubelet reads them; the engine's stats only where none are found) or engine (the engine's "
    "stats API: about a second per container, and zeros on some hosts).",
)
@click.option(
    "--metrics-period",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Seconds between resource metrics reports (CPU, memory, proxy traffic) to the control plane.",
)
@click.option(
    "--metrics-listen",
    default=None,
    metavar="HOST:PORT",
    help='Where Prometheus scrapes /metrics (:PORT: the first proxy address; "": off). Default '
    f"{DEFAULT_METRICS_LISTEN}, skipped with a warning when that port is taken.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.pass_context
def agent_cmd(
    ctx: click.Context,
    server_opt: str | None,
    token: str,
    join_addresses: str,
    name: str | None,
    labels: str,
    runtimes: tuple[str, ...],
    allow_process_runtime_as_root: bool,
    process_user: str,
    data_dir: str | None,
    address: str,
    restart_backoff: float,
    restart_backoff_max: float,
    poll_interval: float,
    termination_drain: float,
    proxy_addresses: tuple[str, ...],
    proxy_mode: str,
    dns_port: int,
    ingress_http_port: int,
    ingress_https_port: int,
    ingress_proxy: str,
    docker_network: str,
    docker_stats: str,
    metrics_period: float,
    metrics_listen: str | None,
    log_level: str,
) -> None:
    """Run the node agent: register this machine and run the pods bound to it."""
    from agent.main import AgentConfig, AgentError, run  # the agent loads only when asked for

    parent = ctx.obj.server_flag if ctx.obj is not None else None
    server = resolve_server(server_opt or parent).address
    node = (name or socket.gethostname()).lower()
    if not _NAME.match(node) or len(node) > 253:
        raise click.BadParameter(
            f'"{node}" is not a valid node name (lower case letters, digits, "-", ".")', param_hint="--name"
        )
    logs.configure(log_level)
    config = AgentConfig(
        server=server,
        name=node,
        data_dir=Path(data_dir) if data_dir else default_agent_dir(),
        runtimes=list(runtimes) or ["docker"],
        labels=parse_labels(labels),
        address=address,
        poll_interval=poll_interval,
        restart_backoff=restart_backoff,
        restart_backoff_max=restart_backoff_max,
        termination_drain=termination_drain,
        proxy_addresses=proxy_addresses_of(proxy_addresses),
        proxy_mode=proxy_mode,
        dns_port=dns_port,
        ingress_http_port=ingress_http_port,
        ingress_https_port=ingress_https_port,
        ingress_proxy=ingress_proxy,
        docker_network=docker_network,
        docker_stats=docker_stats,
        metrics_period=metrics_period,
        metrics_listen=DEFAULT_METRICS_LISTEN if metrics_listen is None else metrics_listen,
        metrics_optional=metrics_listen is None,
        token=token,
        restart_after_join=True,
        join=[a.strip() for a in join_addresses.split(",") if a.strip()],
        allow_process_runtime_as_root=allow_process_runtime_as_root,
        process_user=parse_process_user(process_user),
    )
    try:
        run(config)
    except AgentError as e:
        raise click.ClickException(str(e)) from e
