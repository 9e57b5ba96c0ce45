"""`corral agent`: assemble the runtimes, the pod manager, the session and
service discovery (route table, node proxy, DNS server), and run them until
SIGINT/SIGTERM, on uvloop. Stopping the agent leaves pods running (as the
kubelet does); a restarted agent adopts them by their labels."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from agent.network.ingress.proxy import AUTO, DATA_PATHS, DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT, IngressPorts
from agent.network.pod_routing import PodRouting
from agent.network.proxy.nftables import NftablesError
from agent.network.proxy.reserved import reserved_ports
from agent.network.stack import PROXY_MODES, ReservedIngressPort, build_service_network
from agent.node.credentials import CredentialsError, NodeCredentials
from agent.node.metrics import MetricsSampler
from agent.node.pod_cidr import PodCidrState, first_pod_cidr
from agent.node.session import Session, SessionConfig, register_once
from agent.node.status import node_status
from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from agent.runtime.base import ContainerRuntime
from agent.runtime.errors import RuntimeFailure
from agent.telemetry.series import AgentTelemetry
from corral.common.backoff import CrashLoopBackoff
from corral.common.pki.endpoints import join_address_for
from corral.common.telemetry.endpoint import MetricsEndpointError, open_endpoint
from protos import wellknown
from protos.corral.v1 import node_pb2, node_service_pb2

log = structlog.get_logger(__name__)

RUNTIMES = (*wellknown.RUNTIMES, "fake")
M_ARENA_MAX = -8  # glibc mallopt parameter
EXECUTOR_THREADS = 8
RESTARTED_ENV = "CORRAL_AGENT_RESTARTED_AFTER_JOIN"
# Who process-runtime pods run as on a root agent, unless their runAsUser says otherwise: nobody:nogroup.
PROCESS_USER = "65534:65534"


class AgentError(Exception):
    """The agent cannot start (no runtime, bad option, …)."""


@dataclass
class AgentConfig:
    server: str
    name: str
    data_dir: Path
    runtimes: list[str] = field(default_factory=lambda: ["docker"])
    labels: dict[str, str] = field(default_factory=dict)
    # The address other nodes and the control plane reach this node at.
    address: str = ""
    poll_interval: float = 1.0
    restart_backoff: float = 10.0
    restart_backoff_max: float = 300.0
    # Seconds a terminating pod that was Ready waits before SIGTERM (endpoint drain).
    termination_drain: float = 2.0
    # Where the node proxy (and DNS) listen; empty: the advertised address.
    proxy_addresses: list[str] = field(default_factory=list)
    # "userspace": the node proxy relays every Service; "nftables": the kernel NATs what it can.
    proxy_mode: str = "userspace"
    # DNS on the proxy addresses (0: none there; pod gateways always get it on 53).
    dns_port: int = 53
    # The ingress proxy's ports on the proxy addresses (0: off).
    ingress_http_port: int = DEFAULT_HTTP_PORT
    ingress_https_port: int = DEFAULT_HTTPS_PORT
    # The ingress data path: "auto" (nginx when installed, else Caddy), "nginx" or "caddy".
    ingress_proxy: str = AUTO
    # Where Prometheus scrapes /metrics: "host:port" (":port": the first proxy address; port 0: any); "": nowhere.
    metrics_listen: str = ""
    # The metrics address is only the default: a port already taken is logged, not fatal.
    metrics_optional: bool = False
    # The Docker pod network; "": corral-<node name>.
    docker_network: str = ""
    # Where Docker containers' CPU and memory come from: "cgroup" (the files; the engine's stats where
    # none are found) or "engine" (the engine's stats only).
    docker_stats: str = "cgroup"
    # Seconds between resource metrics reports.
    metrics_period: float = 10.0
    # A join token (K10…), used when there is no valid node certificate in <data dir>/pki.
    token: str = ""
    # The servers' join ports; empty: each server's API port + 1.
    join: list[str] = field(default_factory=list)
    # After a join at start, re-execute this process (`corral agent`), so the libraries only a join
    # needs do not stay in memory. Off when the agent runs inside another program (`corral up`, tests).
    restart_after_join: bool = False
    # Offer the process runtime although the agent runs as root (its pods then run as
    # `process_user` unless their runAsUser says otherwise). Without it, a root agent refuses.
    allow_process_runtime_as_root: bool = False
    process_user: str = PROCESS_USER


def route_address(server: str) -> str:
    """The local address this machine uses to reach the server (no packet is sent)."""
    host, _, port = server.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, int(port or 7443)))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def process_runtime_user(config: AgentConfig, euid: int) -> str:
    """Who the process runtime runs pods as by default: "" (the agent's user) unless the agent is root."""
    if euid != 0:
        return ""
    if not config.allow_process_runtime_as_root:
        raise AgentError(
            "--runtime process runs pods' commands on this host as the agent's user, and this agent "
            "runs as root: run it as an unprivileged user, or give --allow-process-runtime-as-root "
            f"(pods then run as {config.process_user} unless their runAsUser says otherwise)"
        )
    return config.process_user


@dataclass(frozen=True)
class AgentPlan:
    """What the flags come to, checked before the agent joins or connects to anything."""

    servers: list[str]
    joins: list[str]
    address: str
    proxy_addresses: list[str]
    backoff: CrashLoopBackoff
    # Who process-runtime pods run as by default ("": the agent's user).
    process_user: str


def check(config: AgentConfig, *, euid: int) -> AgentPlan:
    """Refuse bad flags before the agent joins, connects to Docker or listens (no I/O: the route
    lookup for the advertised address sends no packet)."""
    unknown = [name for name in config.runtimes if name not in RUNTIMES]
    if unknown:
        raise AgentError(f'unknown runtime "{unknown[0]}" (known: {", ".join(RUNTIMES)})')
    process_user = process_runtime_user(config, euid) if "process" in config.runtimes else ""
    try:
        backoff = CrashLoopBackoff(initial=config.restart_backoff, cap=config.restart_backoff_max)
    except ValueError as e:
        raise AgentError(f"--restart-backoff: {e}") from e
    if config.termination_drain < 0:
        raise AgentError(f"--termination-drain: must be 0 or more, got {config.termination_drain:g}")
    if config.metrics_period < 1:
        raise AgentError(f"--metrics-period: must be 1 or more, got {config.metrics_period:g}")
    if config.proxy_mode not in PROXY_MODES:
        raise AgentError(f"--proxy-mode: must be one of {', '.join(PROXY_MODES)}, got {config.proxy_mode!r}")
    if config.ingress_proxy not in DATA_PATHS:
        raise AgentError(f"--ingress-proxy: must be one of {', '.join(DATA_PATHS)}, got {config.ingress_proxy!r}")
    servers = [s.strip() for s in config.server.split(",") if s.strip()] or [config.server]
    address = config.address or route_address(servers[0])
    proxy_addresses = config.proxy_addresses or [address]
    if config.proxy_mode == "nftables" and any(":" in a for a in proxy_addresses):
        raise AgentError(
            "--proxy-mode nftables: IPv4 proxy addresses only (got "
            f"{', '.join(a for a in proxy_addresses if ':' in a)}); use --proxy-mode userspace"
        )
    joins = config.join or [join_address_for(s) for s in servers]
    return AgentPlan(servers, joins, address, proxy_addresses, backoff, process_user)


async def node_pod_cidr(
    config: AgentConfig, identity: NodeCredentials, status: node_pb2.NodeStatus, state: PodCidrState
) -> str:
    """The node's pod subnet for its Docker pod network (`agent.node.pod_cidr`): saved, or from a
    registration now; "" without the Docker runtime (nothing to make with it)."""
    if "docker" not in config.runtimes:
        state.in_use = state.saved()
        return state.in_use
    servers = [s.strip() for s in config.server.split(",") if s.strip()] or [config.server]
    turn = itertools.count()

    async def register() -> str:
        server = servers[next(turn) % len(servers)]
        request = node_service_pb2.RegisterRequest(
            node_name=config.name, labels=config.labels, status=status, pod_cidr=state.saved()
        )
        return (await register_once(server, identity, request)).pod_cidr

    return await first_pod_cidr(state, register)


async def open_runtimes(
    config: AgentConfig,
    *,
    euid: int | None = None,
    stack: contextlib.AsyncExitStack | None = None,
    pod_cidr: str = "",
) -> dict[str, ContainerRuntime]:
    """The runtimes the flags name; with a `stack`, each is closed when it unwinds (also when a later one fails).
    `pod_cidr`: the node's pod subnet, the Docker pod network's."""
    runtimes: dict[str, ContainerRuntime] = {}
    for name in config.runtimes:
        runtime: ContainerRuntime
        if name == "docker":
            from agent.runtime.docker import DockerRuntime

            try:
                runtime = await DockerRuntime.connect(
                    network=config.docker_network or f"corral-{config.name}",
                    stats_source=config.docker_stats,
                    pod_cidr=pod_cidr,
                )
            except RuntimeFailure as e:
                raise AgentError(
                    f"--runtime docker: no Docker engine answers ({e}); start dockerd, or run with --runtime process"
                ) from e
        elif name == "process":
            from agent.runtime.process import ProcessRuntime

            user = process_runtime_user(config, os.geteuid() if euid is None else euid)
            runtime = ProcessRuntime(config.data_dir / "process", default_user=user)
        elif name == "fake":
            from agent.runtime.fake import FakeRuntime

            runtime = FakeRuntime()
        else:
            raise AgentError(f'unknown runtime "{name}" (known: {", ".join(RUNTIMES)})')
        runtimes[name] = runtime
        if stack is not None:
            stack.push_async_callback(_close, runtime)
    return runtimes


async def _close(runtime: ContainerRuntime) -> None:
    with contextlib.suppress(Exception):
        await runtime.close()


def limit_memory_overhead() -> None:
    """Keep the agent small on small boxes.

    glibc gives every thread that allocates its own malloc arena (64 MiB of
    address space, several MiB resident each); the agent's threads (gRPC, Docker
    calls) need no more than two. Docker SDK calls run on a small, fixed pool.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, 2)
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=EXECUTOR_THREADS, thread_name_prefix="agent-io")
    )


def run(config: AgentConfig) -> None:
    """Run the agent on uvloop: the node proxy relays several times faster on it than on the stdlib loop."""
    try:
        import uvloop
    except ImportError:  # no uvloop build for this platform
        asyncio.run(run_agent(config))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_agent(config))


async def run_agent(config: AgentConfig, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM, or until `stop` is set when the caller owns signals.

    Check the flags, then join (if needed), build, and run the manager, the session and the service
    network in one TaskGroup: if one fails, it is logged and the agent stops (raising its error).
    """
    plan = check(config, euid=os.geteuid())
    limit_memory_overhead()
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = NodeCredentials(config.name, config.data_dir, token=config.token, join_addresses=plan.joins)
    try:
        await identity.ensure()
    except CredentialsError as e:
        raise AgentError(str(e)) from e
    if config.restart_after_join and "cryptography" in sys.modules and not os.environ.get(RESTARTED_ENV):
        # Joining loaded the certificate libraries (about 8 MB) the running agent never needs:
        # start afresh, same pid and arguments, from the certificate just saved.
        log.info("agent_restarting_after_join", node=config.name)
        logging.shutdown()
        os.environ[RESTARTED_ENV] = "1"  # once: never a loop of restarts
        os.execv(sys.executable, sys.orig_argv)
    address = plan.address
    storage_dir = config.data_dir / "storage"
    status = node_status(address=address, runtimes=list(config.runtimes), storage_dir=storage_dir)
    pod_cidrs = PodCidrState(config.data_dir)
    pod_cidr = await node_pod_cidr(config, identity, status, pod_cidrs)
    async with contextlib.AsyncExitStack() as stack:
        runtimes = await open_runtimes(config, stack=stack, pod_cidr=pod_cidr)
        reserved = reserved_ports(plan.servers, plan.joins, config.metrics_listen)
        try:
            discovery = await build_service_network(
                runtimes,
                proxy_addresses=plan.proxy_addresses,
                dns_port=config.dns_port,
                data_dir=config.data_dir,
                proxy_mode=config.proxy_mode,
                node_name=config.name,
                reserved_ports=reserved,
                ingress_ports=IngressPorts(config.ingress_http_port, config.ingress_https_port),
                pod_routing=PodRouting(config.name, forwarding="docker" in runtimes),
                ingress_proxy=config.ingress_proxy,
            )
        except ReservedIngressPort as e:
            raise AgentError(str(e)) from e
        except RuntimeFailure as e:
            raise AgentError(f"--docker-network: the pod network cannot be set up ({e})") from e
        except NftablesError as e:
            raise AgentError(f"--proxy-mode nftables: {e}") from e
        telemetry = AgentTelemetry()
        settings = WorkerSettings(
            node_name=config.name,
            host_ip=address,
            poll_interval=config.poll_interval,
            backoff=plan.backoff,
            termination_drain=config.termination_drain,
            pod_network=discovery.table.pod_network,
            probe_results=telemetry.probe_result,
            volumes_dir=config.data_dir / "volumes",
            storage_dir=storage_dir,
            allocatable=dict(status.allocatable),
        )
        manager = PodManager(runtimes, settings, config.data_dir)
        manager.outbox.volume_root = str(settings.storage_dir.resolve())
        metrics = MetricsSampler(
            config.name, runtimes, lambda: [w.pod for w in manager.workers.values()], traffic=discovery.stats
        )
        session = Session(
            SessionConfig(
                server=config.server, node_name=config.name, labels=config.labels, metrics_period=config.metrics_period
            ),
            manager,
            status,
            identity=identity,
            services=discovery.table,
            metrics=metrics,
        )
        session.pod_cidr = pod_cidr
        session.on_pod_cidr = pod_cidrs.heard
        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        telemetry.observe(
            proxy_stats=discovery.stats,
            connected=session.connected.is_set,
            pods=lambda: [w.last_status for w in manager.workers.values()],
        )
        try:
            scrape = open_endpoint(
                telemetry.registry,
                config.metrics_listen,
                default_host=plan.proxy_addresses[0],
                optional=config.metrics_optional,
            )
        except MetricsEndpointError as e:
            raise AgentError(str(e)) from e
        if scrape is not None:
            stack.push_async_callback(scrape.close)
        log.info("agent_starting", node=config.name, server=config.server, address=address, runtimes=list(runtimes))
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(manager.run(), name="pod-manager"),
                group.create_task(session.run(), name="session"),
                group.create_task(discovery.run(), name="service-network"),
            ]
            for task in tasks:
                task.add_done_callback(_log_failure)
            await stop.wait()
            for task in tasks:
                task.cancel()
    log.info("agent_stopped", node=config.name)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("agent_task_failed", task=task.get_name(), error=repr(error), exc_info=error)
