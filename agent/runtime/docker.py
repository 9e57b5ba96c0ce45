"""The Docker runtime: containers through the Docker Engine API (`agent.runtime.engine`).

The engine client is synchronous, so every call runs in a worker thread
(`asyncio.to_thread`); its exceptions are translated into the runtime error
tree in one place, `_translate`, and the engine's JSON stays inside this module.

Choices worth knowing:

- Image pull policy follows Kubernetes: `Never` requires a local image,
  `IfNotPresent` pulls only when absent, `Always` pulls every time — but when
  that pull fails and the image is present locally, we log a warning and use
  the local copy instead of failing. corral runs where registries are often
  unreachable (edge boxes, air-gapped racks); a pod that ran yesterday should
  still start today.
- `command` replaces the image ENTRYPOINT and `args` its CMD (Kubernetes);
  Docker itself drops the image CMD when the entrypoint is replaced.
- Containers never restart on their own (restart policy "no": the agent
  restarts them), are never privileged, run with `no-new-privileges`, and log
  to json-file so their output stays readable after they stop.
- Docker's stop timeout is whole seconds: the grace period is rounded up.
- `exec` with a timeout stops waiting and closes the stream, returning 124;
  Docker has no API to kill an exec'd process, so it may linger in the
  container until it ends on its own.
- Container CPU and memory come from the cgroup files (`agent.runtime.cgroups`),
  found once per container by its id (or, in a layout not known, by one
  inspect for its main process's /proc/<pid>/cgroup). The engine's stats call
  (about a second each, and zeros on some hosts) is only the fallback for a
  container whose cgroup files cannot be found, or everything with
  `stats_source="engine"`.
- The pod network: given a network name, containers join that bridge network
  (created when missing, labelled `io.corral.managed=true`) instead of
  Docker's default bridge. Given the node's pod subnet (`pod_cidr`, from the
  control plane), the network is made with that subnet and its first address
  as gateway, and made again when it exists with another subnet and no
  container on it (with containers, or not made by corral, it is kept with a
  warning). Its gateway is the host's address on it, where the node proxy and
  DNS server listen for pods (`pod_gateway`); the spec's `dns_servers` /
  `dns_search` become the container's resolver settings (Docker's embedded
  resolver forwards to them).
- Ports: on the pod subnet (`routed`), a container's ports are reached at its
  own address and only those with a hostPort are published (on that port), as
  in Kubernetes; without one (no pod subnet, or a network kept with another
  subnet), every container port is published as before, a free host port for
  those without hostPort.
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import math
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import structlog

from agent.runtime import checks
from agent.runtime.base import (
    LABEL_MANAGED,
    ContainerInfo,
    ContainerSpec,
    ContainerStats,
    ExecResult,
    PortMapping,
    State,
)
from agent.runtime.cgroups import CgroupReader, ContainerCgroup, working_set
from agent.runtime.engine import (
    EngineClient,
    EngineError,
    EngineImageNotFoundError,
    EngineNotFoundError,
    EngineUnavailableError,
    Stream,
    split_image,
)
from agent.runtime.errors import (
    ContainerConfigError,
    ContainerNotFoundError,
    ContainerStartError,
    ImageNotFoundError,
    ImagePullError,
    RuntimeFailure,
    RuntimeUnavailableError,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Docker reports "never" as the zero time.
_ZERO_TIME_PREFIX = "0001-01-01"
# Docker's times carry nanoseconds, which `datetime` cannot hold.
_RFC3339 = re.compile(r"(?P<seconds>[^.]+?)(?:\.(?P<fraction>\d+))?(?P<offset>[Zz]|[+-]\d\d:\d\d)")
_STATES = {
    "created": State.CREATED,
    "running": State.RUNNING,
    "paused": State.RUNNING,
    "restarting": State.RUNNING,
    "removing": State.EXITED,
    "exited": State.EXITED,
    "dead": State.EXITED,
}
_EXEC_TIMED_OUT = ExecResult(124, b"timed out")
# Chunks buffered between the log-reading thread and the consumer.
_LOG_QUEUE_SIZE = 64
_END = object()
# Where container CPU and memory come from: the cgroup files (the engine's stats where none are
# found), or the engine's stats only.
STATS_SOURCES = ("cgroup", "engine")
# Containers whose stats source is remembered; past this, forget them all (finding one again is
# cheap), so containers removed behind the agent's back cannot grow the map without end.
_STATS_SOURCES_KEPT = 1024


# -- error translation ----------------------------------------------------------


def _engine_message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc) or type(exc).__name__


def _translate(
    exc: BaseException,
    failure: type[RuntimeFailure],
    not_found: type[RuntimeFailure] | None = None,
) -> RuntimeFailure:
    """The runtime error for an engine client exception.

    `failure` is what an engine error means for the operation at hand;
    `not_found` overrides what a 404 means (default: a missing image or container).
    """
    message = _engine_message(exc)
    if isinstance(exc, EngineUnavailableError):
        return RuntimeUnavailableError(message)
    if isinstance(exc, EngineNotFoundError):
        if not_found is not None:
            return not_found(message)
        if isinstance(exc, EngineImageNotFoundError):
            return ImageNotFoundError(message)
        return ContainerNotFoundError(message)
    return failure(message)


async def _call(
    fn: Callable[..., T],
    *args: Any,
    failure: type[RuntimeFailure] = RuntimeFailure,
    not_found: type[RuntimeFailure] | None = None,
    **kwargs: Any,
) -> T:
    """Run one engine call in a worker thread, translating its exceptions."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (EngineError, EngineUnavailableError) as exc:
        raise _translate(exc, failure, not_found) from exc


# -- attrs → ContainerInfo ------------------------------------------------------


def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 time (nanoseconds, "Z") as an aware datetime; zero time → None."""
    if not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    return datetime.fromisoformat(f"{match['seconds']}.{fraction}{offset}")


def _reason(state: Mapping[str, Any], status: State) -> str:
    if status is not State.EXITED:
        return ""
    if state.get("OOMKilled"):
        return "OOMKilled"
    return "Completed" if state.get("ExitCode") == 0 else "Error"


def _ports(attrs: Mapping[str, Any]) -> list[PortMapping]:
    """Published ports: the bound host ports while running, else the requested ones."""
    bound = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    requested = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    result = []
    for key, bindings in (bound if any(bound.values()) else requested).items():
        if not bindings:
            continue
        port, _, protocol = key.partition("/")
        first = _first_ipv4(bindings)
        result.append(
            PortMapping(
                container_port=int(port),
                host_port=int(first.get("HostPort") or 0),
                protocol=(protocol or "tcp").upper(),
                host_ip=first.get("HostIp") or "",
            )
        )
    return sorted(result, key=lambda p: (p.container_port, p.protocol))


def _first_ipv4(bindings: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    for binding in bindings:
        if ":" not in (binding.get("HostIp") or ""):
            return binding
    return bindings[0]


def _ip(settings: Mapping[str, Any]) -> str:
    """The container's address: on the default bridge, else on the (first) network it joined."""
    if settings.get("IPAddress"):
        return str(settings["IPAddress"])
    for network in (settings.get("Networks") or {}).values():
        if (network or {}).get("IPAddress"):
            return str(network["IPAddress"])
    return ""


def _gateway(attrs: Mapping[str, Any]) -> str | None:
    """The IPv4 gateway of a network (its first host address when Docker does not say)."""
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        gateway = config.get("Gateway") or ""
        subnet = config.get("Subnet") or ""
        if gateway and ":" not in gateway:
            return str(gateway).split("/")[0]
        if subnet and ":" not in subnet:
            return str(next(ipaddress.ip_network(subnet, strict=False).hosts()))
    return None


def _subnet(attrs: Mapping[str, Any]) -> str:
    """A network's IPv4 subnet ("" when it has none)."""
    for config in (attrs.get("IPAM") or {}).get("Config") or []:
        subnet = config.get("Subnet") or ""
        if subnet and ":" not in subnet:
            return str(subnet)
    return ""


def _to_info(attrs: Mapping[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    status = _STATES.get(state.get("Status", ""), State.UNKNOWN)
    exited = status is State.EXITED
    started_at = _parse_time(state.get("StartedAt"))
    finished_at = _parse_time(state.get("FinishedAt")) if exited else None
    if started_at and finished_at and finished_at < started_at:
        # Docker stamps StartedAt late for a process that exits at once: keep the order.
        finished_at = started_at
    return ContainerInfo(
        id=attrs["Id"],
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=config.get("Image", ""),
        labels=dict(config.get("Labels") or {}),
        state=status,
        exit_code=state.get("ExitCode") if exited else None,
        started_at=started_at,
        finished_at=finished_at,
        ports=_ports(attrs),
        ip=_ip(attrs.get("NetworkSettings") or {}),
        reason=_reason(state, status),
        message=state.get("Error") or "",
    )


# -- stats → ContainerStats -----------------------------------------------------


def _working_set(memory: Mapping[str, Any]) -> int:
    """Usage minus the inactive file cache, as `docker stats` and the kubelet count it.

    cgroup v1 reports `total_inactive_file` (hierarchical), v2 `inactive_file`;
    an engine that reports neither leaves `cache` to subtract.
    """
    usage = int(memory.get("usage") or 0)
    detail = memory.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file", "cache"):
        if key in detail:
            return working_set(usage, int(detail[key] or 0))
    return usage


def _to_stats(raw: Mapping[str, Any]) -> ContainerStats | None:
    """One-shot `stats` of the engine API (cgroup v1 or v2); None for a container not running
    (the engine answers with empty memory stats and the zero time then)."""
    memory = raw.get("memory_stats") or {}
    if "usage" not in memory or str(raw.get("read") or "").startswith(_ZERO_TIME_PREFIX):
        return None
    cpu = ((raw.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0
    return ContainerStats(cpu_ns=int(cpu), memory_bytes=_working_set(memory))


# -- spec → the engine's container configuration ---------------------------------


def _port_key(container_port: int, protocol: str) -> str:
    return f"{container_port}/{protocol.lower()}"


def container_config(spec: ContainerSpec, network: str = "", *, publish_all: bool = True) -> dict[str, Any]:
    """The body of the engine's container create call for `spec` (pure)."""
    config: dict[str, Any] = {
        "Image": spec.image,
        "Labels": dict(spec.labels),
        "Env": [f"{key}={value}" for key, value in spec.env.items()],
        "ExposedPorts": {_port_key(p.container_port, p.protocol): {} for p in spec.ports},
        "HostConfig": _host_config(spec, network, publish_all=publish_all),
    }
    if spec.command:
        config["Entrypoint"] = list(spec.command)
    if spec.args:
        config["Cmd"] = list(spec.args)
    if spec.working_dir:
        config["WorkingDir"] = spec.working_dir
    if spec.user:
        config["User"] = spec.user
    if spec.hostname and not spec.host_network:  # Docker refuses a host name in the host's network
        config["Hostname"] = spec.hostname
        if spec.domainname:
            config["Domainname"] = spec.domainname
    return config


def _security(spec: ContainerSpec) -> dict[str, Any]:
    """securityContext and volumes as host config (no-new-privileges unless allowed)."""
    options: dict[str, Any] = {
        "Privileged": spec.privileged,
        "SecurityOpt": ["no-new-privileges"] if spec.no_new_privileges else [],
    }
    if spec.read_only_rootfs:
        options["ReadonlyRootfs"] = True
    if spec.host_pid:
        options["PidMode"] = "host"
    if spec.host_ipc:
        options["IpcMode"] = "host"
    if spec.cap_add:
        options["CapAdd"] = list(spec.cap_add)
    if spec.cap_drop:
        options["CapDrop"] = list(spec.cap_drop)
    if spec.group_add:
        options["GroupAdd"] = [str(g) for g in spec.group_add]
    binds = [
        {"Target": m.target, "Source": m.source, "Type": "bind", "ReadOnly": m.read_only}
        for m in spec.mounts
        if not m.tmpfs
    ]
    if binds:
        options["Mounts"] = binds
    tmpfs = {m.target: "ro" if m.read_only else "" for m in spec.mounts if m.tmpfs}
    if tmpfs:
        options["Tmpfs"] = tmpfs
    return options


def _host_config(spec: ContainerSpec, network: str = "", *, publish_all: bool = True) -> dict[str, Any]:
    """`publish_all`: every port on the host (a free one without hostPort); else only hostPorts."""
    host: dict[str, Any] = {
        "PortBindings": {
            _port_key(p.container_port, p.protocol): [
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port) if p.host_port else ""}
            ]
            for p in spec.ports
            if publish_all or p.host_port
        },
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {"Type": "json-file", "Config": {}},
    }
    if spec.cpu_limit_millis is not None:
        host["NanoCpus"] = spec.cpu_limit_millis * 1_000_000
    if spec.memory_limit_bytes is not None:
        host["Memory"] = spec.memory_limit_bytes
    if spec.host_network:  # the published ports stay recorded: they are the host's own (hostPort == port)
        host["NetworkMode"] = "host"
    elif network:
        host["NetworkMode"] = network
    if spec.dns_servers:
        host["Dns"] = list(spec.dns_servers)
    if spec.dns_search:
        host["DnsSearch"] = list(spec.dns_search)
    if spec.extra_hosts:
        host["ExtraHosts"] = [f"{name}:{address}" for name, address in spec.extra_hosts]
    return {**host, **_security(spec)}


# -- logs: a thread reads the stream, the event loop consumes ---------------------


def _hand_over(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object], item: object, stop: threading.Event
) -> bool:
    """Put `item` on the loop's queue, waiting for room; False once the consumer is gone."""
    try:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
    except RuntimeError:  # the loop is closed
        return False
    while not stop.is_set():
        try:
            future.result(timeout=0.5)
            return True
        except TimeoutError:
            continue
    future.cancel()
    return False


def _pump(stream: Stream, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object], stop: threading.Event) -> None:
    """Thread body: copy the log stream into the queue until it ends or the consumer leaves."""
    try:
        for chunk in stream:
            if not _hand_over(loop, queue, chunk, stop):
                return
    except Exception as exc:
        if not stop.is_set():
            _hand_over(loop, queue, exc, stop)
        return
    finally:
        stream.release()
    _hand_over(loop, queue, _END, stop)


def _collect(stream: Stream) -> bytes:
    """Thread body: the whole output of an exec stream."""
    try:
        return b"".join(stream)
    finally:
        stream.release()


# -- the runtime ---------------------------------------------------------------


class DockerRuntime:
    """`ContainerRuntime` on a Docker engine."""

    name = "docker"

    def __init__(
        self,
        client: EngineClient,
        *,
        network: str = "",
        stats_source: str = "cgroup",
        cgroups: CgroupReader | None = None,
        pod_cidr: str = "",
    ) -> None:
        """Wrap a connected engine client; prefer `DockerRuntime.connect`.

        `network`: the bridge network containers join (made when missing); "" for Docker's default bridge.
        `stats_source`: one of STATS_SOURCES; `cgroups`: the reader for "cgroup" (default: this host's).
        `pod_cidr`: the node's pod subnet, the network's (see the module docstring); "": Docker picks one.
        """
        if stats_source not in STATS_SOURCES:
            raise ValueError(f"stats source must be one of {', '.join(STATS_SOURCES)}, got {stats_source!r}")
        self._cgroups = (cgroups or CgroupReader.of_host()) if stats_source == "cgroup" else None
        # Where each container's figures are read, once found; None: from the engine.
        self._stats_from: dict[str, ContainerCgroup | None] = {}
        self._api = client
        self._network = network
        self._gateway: str | None = None
        # The gateway found first: the node proxy listens there, so a changed one is worth a warning.
        self._gateway_seen: str | None = None
        self._network_lock = asyncio.Lock()
        self._pod_cidr = pod_cidr
        # Whether the network has the pod subnet: containers are reached at their own addresses.
        self.routed = False

    @classmethod
    async def connect(
        cls, base_url: str | None = None, *, network: str = "", stats_source: str = "cgroup", pod_cidr: str = ""
    ) -> DockerRuntime:
        """Connect to the engine (the environment's, or `base_url`); RuntimeUnavailableError if it does not answer."""

        try:
            client = await asyncio.to_thread(EngineClient.from_env, base_url)
        except (EngineError, EngineUnavailableError, ValueError, OSError) as exc:
            raise RuntimeUnavailableError(f"docker engine does not answer: {_engine_message(exc)}") from exc
        log.info("docker_connected", base_url=base_url or "from_env", api_version="{}.{}".format(*client.api_version))
        return cls(client, network=network, stats_source=stats_source, pod_cidr=pod_cidr)

    async def close(self) -> None:
        """Nothing to release: the engine client holds no connection between calls."""

    # the pod network

    async def pod_gateway(self) -> str | None:
        if not self._network:
            return None
        async with self._network_lock:
            if self._gateway is None:
                self._gateway = await self._ensure_network()
            return self._gateway

    async def _ensure_network(self) -> str:
        try:
            attrs = await _call(self._api.inspect_network, self._network)
        except ContainerNotFoundError:  # what a 404 means by default: the network is missing
            attrs = await self._create_network()
        if self._pod_cidr and _subnet(attrs) != self._pod_cidr:
            attrs = await self._move_to_pod_cidr(attrs)
        self.routed = bool(self._pod_cidr) and _subnet(attrs) == self._pod_cidr
        gateway = _gateway(attrs)
        if gateway is None:
            raise RuntimeFailure(f"docker network {self._network!r} has no IPv4 gateway")
        if (attrs.get("Labels") or {}).get(LABEL_MANAGED) != "true":
            log.warning(
                "pod_network_not_managed",
                network=self._network,
                message="the network exists without the io.corral.managed label; using it anyway",
            )
        if self._gateway_seen is None:
            log.info(
                "pod_network_ready", network=self._network, gateway=gateway, subnet=_subnet(attrs), routed=self.routed
            )
        elif self._gateway_seen != gateway:
            log.warning(
                "pod_network_gateway_changed",
                network=self._network,
                gateway=gateway,
                was=self._gateway_seen,
                message="the node proxy and DNS server listen on the first gateway; restart the agent",
            )
        self._gateway_seen = gateway
        return gateway

    async def _move_to_pod_cidr(self, attrs: Any) -> Any:
        """Make the network again with the pod subnet when nothing is on it and corral made it;
        else keep it (its pods publish their ports as before)."""
        containers = attrs.get("Containers") or {}
        managed = (attrs.get("Labels") or {}).get(LABEL_MANAGED) == "true"
        if containers or not managed:
            log.warning(
                "pod_network_subnet_kept",
                network=self._network,
                subnet=_subnet(attrs),
                pod_cidr=self._pod_cidr,
                containers=len(containers),
                message="the network has containers or was not made by corral: pods publish their ports as "
                "before; remove them (drain the node) and restart the agent to move to the pod subnet",
            )
            return attrs
        try:
            await _call(self._api.remove_network, self._network)
        except RuntimeFailure as exc:
            log.warning("pod_network_subnet_kept", network=self._network, pod_cidr=self._pod_cidr, error=str(exc))
            return attrs
        log.info("pod_network_removed", network=self._network, subnet=_subnet(attrs), pod_cidr=self._pod_cidr)
        return await self._create_network()

    async def _create_network(self) -> Any:
        """Make the network (of the pod subnet, when there is one) and inspect it. A subnet Docker
        refuses (it overlaps another network) gives a network of Docker's choice, with a warning."""
        for subnet in dict.fromkeys([self._pod_cidr, ""]):
            gateway = str(next(ipaddress.IPv4Network(subnet).hosts())) if subnet else ""
            try:
                await _call(
                    self._api.create_network,
                    self._network,
                    driver="bridge",
                    labels={LABEL_MANAGED: "true"},
                    subnet=subnet,
                    gateway=gateway,
                )
                log.info("pod_network_created", network=self._network, subnet=subnet or "chosen by Docker")
            except RuntimeFailure as exc:  # made meanwhile by someone else: use it
                log.info("pod_network_create_failed", network=self._network, subnet=subnet, error=str(exc))
            try:
                return await _call(self._api.inspect_network, self._network)
            except ContainerNotFoundError:
                if not subnet:
                    raise
                log.warning(
                    "pod_network_subnet_refused",
                    network=self._network,
                    pod_cidr=subnet,
                    message="Docker refused the pod subnet (does another network overlap it?): pods publish "
                    "their ports as before",
                )
        raise AssertionError("unreachable")  # pragma: no cover

    # images

    async def ensure_image(self, image: str, pull_policy: str) -> None:
        present = await self._image_present(image)
        if pull_policy == "Never":
            if not present:
                raise ImageNotFoundError(f"image {image!r} is not present and imagePullPolicy is Never")
        elif pull_policy == "IfNotPresent":
            if not present:
                await self._pull(image)
        elif pull_policy == "Always":
            await self._pull_or_use_local(image, present)
        else:
            raise ValueError(f"unknown imagePullPolicy {pull_policy!r}")

    async def _image_present(self, image: str) -> bool:
        try:
            await _call(self._api.inspect_image, image)
        except ImageNotFoundError:
            return False
        return True

    async def _pull_or_use_local(self, image: str, present: bool) -> None:
        try:
            await self._pull(image)
        except ImagePullError as exc:
            if not present:
                raise
            log.warning("image_pull_failed_using_local", image=image, error=str(exc))

    async def _pull(self, image: str) -> None:
        repository, tag = split_image(image)
        log.info("image_pulling", image=image)
        messages = await _call(self._api.pull, repository, tag, failure=ImagePullError, not_found=ImagePullError)
        errors = [m.get("error") or (m.get("errorDetail") or {}).get("message") for m in messages]
        failed = [e for e in errors if e]
        if failed:
            raise ImagePullError(f"pulling {image!r} failed: {failed[-1]}")
        log.info("image_pulled", image=image)

    # lifecycle

    async def _check(self, spec: ContainerSpec) -> None:
        """Refuse what corral never does (the Docker socket) and what the spec forbids (root)."""
        refusal = checks.docker_socket_mount(spec)
        if refusal is None and spec.run_as_non_root:
            attrs = await _call(self._api.inspect_image, spec.image, failure=ContainerStartError)
            refusal = checks.non_root_refusal(spec, str((attrs.get("Config") or {}).get("User") or ""))
        if refusal is not None:
            raise ContainerConfigError(f"{spec.name}: {refusal}")

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        await self._check(spec)
        if self._network:
            await self.pod_gateway()
        try:
            container_id = await _call(self._create, spec, failure=ContainerStartError)
        except RuntimeFailure:
            self._gateway = None  # the network may be gone: make sure of it before the next run
            raise
        try:
            await _call(self._api.start, container_id, failure=ContainerStartError)
        except RuntimeFailure:
            await self._remove_quietly(container_id)
            raise
        info = await self.inspect(container_id)
        if info is None:
            raise ContainerStartError(f"container {spec.name} vanished right after starting")
        log.info("container_started", id=container_id, name=spec.name, image=spec.image)
        return info

    def _create(self, spec: ContainerSpec) -> str:
        config = container_config(spec, self._network, publish_all=not self.routed)
        return self._api.create_container(spec.name, config)

    async def _remove_quietly(self, container_id: str) -> None:
        try:
            await self.remove(container_id)
        except RuntimeFailure as exc:
            log.warning("container_remove_failed", id=container_id, error=str(exc))

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        timeout = max(0, math.ceil(grace_seconds))
        await _call(self._api.stop, container_id, timeout=timeout)
        log.info("container_stopped", id=container_id, grace_seconds=grace_seconds)

    async def remove(self, container_id: str) -> None:
        try:
            await _call(self._api.remove_container, container_id)
        except ContainerNotFoundError:
            return
        finally:
            self._stats_from.pop(container_id, None)
        log.info("container_removed", id=container_id)

    # reading

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        try:
            attrs = await _call(self._api.inspect_container, container_id)
        except ContainerNotFoundError:
            return None
        return _to_info(attrs)

    async def list(self, labels: Mapping[str, str]) -> builtins.list[ContainerInfo]:
        containers = await _call(self._api.list_containers, labels)
        return [_to_info(attrs) for attrs in containers]

    async def stats(self, container_id: str) -> ContainerStats | None:
        """From the container's cgroup files; from the engine where they are not found (see the module docstring)."""
        if self._cgroups is None:
            return await self._engine_stats(container_id)
        try:
            where = (
                self._stats_from[container_id]
                if container_id in self._stats_from
                else await self._locate(self._cgroups, container_id)
            )
        except ContainerNotFoundError:
            return None
        if container_id not in self._stats_from and len(self._stats_from) >= _STATS_SOURCES_KEPT:
            self._stats_from.clear()
        self._stats_from[container_id] = where
        if where is None:
            return await self._engine_stats(container_id)
        try:
            return self._cgroups.read(where)
        except FileNotFoundError:  # it stopped: its cgroup went with it
            del self._stats_from[container_id]
            return None
        except (OSError, ValueError) as e:
            log.warning("container_stats_from_engine", id=container_id, cgroup=str(where.cpu.directory), error=str(e))
            self._stats_from[container_id] = None
            return await self._engine_stats(container_id)

    async def _locate(self, cgroups: CgroupReader, container_id: str) -> ContainerCgroup | None:
        """The container's cgroup (None: use the engine's stats); ContainerNotFoundError when it is not running."""
        found = cgroups.locate(container_id)
        if found is not None:
            return found
        # A short id, or a layout not known: its main process tells.
        attrs = await _call(self._api.inspect_container, container_id)
        state = attrs.get("State") or {}
        pid = int(state.get("Pid") or 0)
        if not state.get("Running") or pid <= 0:
            raise ContainerNotFoundError(f"container {container_id} is not running")
        found = cgroups.locate(str(attrs.get("Id") or container_id), pid)
        if found is None:
            log.warning("container_stats_from_engine", id=container_id, error="no cgroup files found")
        return found

    async def _engine_stats(self, container_id: str) -> ContainerStats | None:
        """The engine's one-shot stats (it takes about a second: the engine waits for a second sample)."""
        try:
            raw = await _call(self._api.stats, container_id)
        except ContainerNotFoundError:
            self._stats_from.pop(container_id, None)
            return None
        return _to_stats(raw)

    async def exec(
        self,
        container_id: str,
        command: builtins.list[str],
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        exec_id = await _call(self._api.exec_create, container_id, command)
        stream = await _call(self._api.exec_start, exec_id)
        reader = asyncio.ensure_future(asyncio.to_thread(_collect, stream))
        done, _ = await asyncio.wait({reader}, timeout=max(0.0, deadline - loop.time()))
        if not done:
            stream.close()  # the command itself may linger in the container
            await asyncio.gather(reader, return_exceptions=True)
            log.info("exec_timed_out", id=container_id, command=command, timeout=timeout)
            return _EXEC_TIMED_OUT
        output = reader.result()
        exit_code = await self._exec_exit_code(exec_id, deadline)
        return _EXEC_TIMED_OUT if exit_code is None else ExecResult(exit_code, output)

    async def _exec_exit_code(self, exec_id: str, deadline: float) -> int | None:
        """The exec's exit code, once Docker has recorded it (just after the stream ends)."""
        loop = asyncio.get_running_loop()
        while True:
            details = await _call(self._api.exec_inspect, exec_id)
            if not details.get("Running") and details.get("ExitCode") is not None:
                return int(details["ExitCode"])
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(0.01)

    async def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        stream = await _call(
            self._api.logs,
            container_id,
            follow=follow,
            tail=tail,
        )
        async for chunk in _drain(stream):
            yield chunk


async def _drain(stream: Stream) -> AsyncIterator[bytes]:
    """Chunks of a blocking engine stream, read by a thread; leaving early closes the stream."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=_LOG_QUEUE_SIZE)
    stop = threading.Event()
    thread = threading.Thread(target=_pump, args=(stream, loop, queue, stop), name="docker-logs", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise _translate(item, RuntimeFailure) from item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        stream.close()
