"""The fake runtime: containers in memory, scripted per image.

Used by tests and by hollow nodes (many agents in one process), so a
container costs a small object and nothing else: no task, no thread, no timer.
A container "exits" once `run_seconds` have passed on the clock; that is
worked out whenever it is looked at (`inspect`, `list`, `logs`, `stop`).

    runtime = FakeRuntime({"web:1": FakeBehaviour(output=b"ready\\n"),
                           "job:1": FakeBehaviour(run_seconds=5, exit_code=3)})

Images without a script run until stopped, and a stop ends them with exit
code 143 (killed by SIGTERM), like a process without a handler. A script can
make them handle SIGTERM (`term_output`, `term_exit_code`) or ignore it
(`ignore_term`: the stop ends with SIGKILL, exit 137). Stops are instant: the
grace period is not waited for; the signals sent are recorded
(`signals_sent`, `sigterm_sent`).

With `serve_ports`, each published port is a real listening socket on
127.0.0.1 that answers any request with an empty HTTP 200, for tests that
connect to containers (TCP and HTTP probes, the proxy). Its host port is
chosen by the OS when the spec asks for 0; otherwise host ports 0 are
assigned from a counter and nothing listens.

`stats` reports what a script says a container uses (`cpu_millis`,
`memory_bytes`; `set_usage` changes it for one container): CPU time grows at
that rate on the clock while the container runs.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from agent.runtime.base import ContainerInfo, ContainerSpec, ContainerStats, ExecResult, PortMapping, State
from agent.runtime.errors import ContainerNotFoundError, ContainerStartError, ImageNotFoundError, ImagePullError

log = structlog.get_logger(__name__)

EXIT_SIGTERM = 143
EXIT_SIGKILL = 137
FIRST_FAKE_PORT = 30000
_HTTP_OK = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class FakeBehaviour:
    """How containers of one image behave."""

    run_seconds: float | None = None  # None: runs until stopped
    exit_code: int = 0  # when run_seconds have passed
    fail_start: str | None = None  # every run fails with ContainerStartError(fail_start)
    missing_image: bool = False  # ensure_image fails; a pull fails like an unreachable registry
    exec_exit_code: int = 0
    exec_output: bytes = b""
    exec_seconds: float = 0.0  # an exec longer than its timeout returns 124 (at once)
    output: bytes = b""  # written when the container starts
    term_output: bytes = b""  # written when it gets SIGTERM
    term_exit_code: int = EXIT_SIGTERM  # exit code after SIGTERM
    ignore_term: bool = False  # SIGTERM does nothing; the stop ends with SIGKILL
    serve_ports: bool = False  # published ports really listen (see module docstring)
    cpu_millis: int = 0  # CPU used while running, in thousandths of a core
    memory_bytes: int = 0  # memory used while running


DEFAULT_BEHAVIOUR = FakeBehaviour()


@dataclass
class _Container:
    id: str
    spec: ContainerSpec
    behaviour: FakeBehaviour
    started: float  # on the runtime's clock
    started_at: datetime
    ports: list[PortMapping]
    output: bytearray
    servers: list[asyncio.Server] = field(default_factory=list)
    exit_code: int | None = None
    stopped: float | None = None  # clock time of a stop
    signals: list[str] = field(default_factory=list)
    exec_exit_code: int | None = None  # overrides the behaviour's
    # Usage (`set_usage` overrides the behaviour's): CPU time accrued up to
    # `cpu_since` (clock time), and the rate since then.
    cpu_ns: float = 0.0
    cpu_since: float = 0.0
    cpu_millis: int = 0
    memory_bytes: int = 0

    def cpu_ns_at(self, now: float) -> int:
        """CPU time used by `now` (it stops growing when the container exits)."""
        end = self.exited_at()
        until = now if end is None else min(now, end)
        return int(self.cpu_ns + max(0.0, until - self.cpu_since) * self.cpu_millis * 1_000_000)

    def exited_at(self) -> float | None:
        """The clock time it exited (or exits, for a scripted run), if any."""
        if self.stopped is not None:
            return self.stopped
        if self.behaviour.run_seconds is None:
            return None
        return self.started + self.behaviour.run_seconds

    def has_exited(self, now: float) -> bool:
        end = self.exited_at()
        return end is not None and end <= now

    def final_exit_code(self) -> int:
        return self.behaviour.exit_code if self.exit_code is None else self.exit_code


class FakeRuntime:
    """`ContainerRuntime` in memory; see the module docstring."""

    name = "fake"

    def __init__(
        self,
        scripts: Mapping[str, FakeBehaviour] | None = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """`clock` defaults to the running event loop's time."""
        self._scripts = dict(scripts or {})
        self._clock = clock
        self._containers: dict[str, _Container] = {}
        self._ids = itertools.count(1)
        self._host_ports = itertools.count(FIRST_FAKE_PORT)
        self._fail_next: dict[str, str] = {}

    # scripting helpers for tests

    def script(self, image: str, behaviour: FakeBehaviour) -> None:
        self._scripts[image] = behaviour

    def fail_next_start(self, image: str, message: str = "fake start failure") -> None:
        """The next run of `image` fails with ContainerStartError(message)."""
        self._fail_next[image] = message

    def set_exec_exit_code(self, container_id: str, code: int) -> None:
        self._get(container_id).exec_exit_code = code

    def signals_sent(self, container_id: str) -> builtins.list[str]:
        """Signals a stop sent, in order ("SIGTERM", then "SIGKILL" if it was ignored)."""
        return list(self._get(container_id).signals)

    def sigterm_sent(self, container_id: str) -> bool:
        return "SIGTERM" in self._get(container_id).signals

    def set_usage(self, container_id: str, *, cpu_millis: int | None = None, memory_bytes: int | None = None) -> None:
        """From now on the container uses `cpu_millis` of CPU and `memory_bytes` of memory."""
        container = self._get(container_id)
        if cpu_millis is not None:
            now = self._now()
            container.cpu_ns = container.cpu_ns_at(now)
            container.cpu_since = now
            container.cpu_millis = cpu_millis
        if memory_bytes is not None:
            container.memory_bytes = memory_bytes

    # internals

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _behaviour(self, image: str) -> FakeBehaviour:
        return self._scripts.get(image, DEFAULT_BEHAVIOUR)

    def _get(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise ContainerNotFoundError(f"no container {container_id!r}") from None

    def _wall_time(self, container: _Container, clock_time: float) -> datetime:
        return container.started_at + timedelta(seconds=clock_time - container.started)

    def _info(self, container: _Container) -> ContainerInfo:
        spec = container.spec
        now = self._now()
        exited = container.has_exited(now)
        end = container.exited_at()
        code = container.final_exit_code() if exited else None
        return ContainerInfo(
            id=container.id,
            name=spec.name,
            image=spec.image,
            labels=dict(spec.labels),
            state=State.EXITED if exited else State.RUNNING,
            exit_code=code,
            started_at=container.started_at,
            finished_at=self._wall_time(container, end) if exited and end is not None else None,
            ports=list(container.ports),
            reason=("Completed" if code == 0 else "Error") if exited else "",
        )

    # images

    async def ensure_image(self, image: str, pull_policy: str) -> None:
        if not self._behaviour(image).missing_image:
            return
        if pull_policy == "Never":
            raise ImageNotFoundError(f"image {image!r} is not present and imagePullPolicy is Never")
        raise ImagePullError(f"pulling {image!r} failed: registry unreachable (fake)")

    # lifecycle

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        behaviour = self._behaviour(spec.image)
        self._check_startable(spec, behaviour)
        container_id = f"fake-{next(self._ids):06d}"
        servers, ports = await self._publish(spec, behaviour)
        container = _Container(
            id=container_id,
            spec=spec,
            behaviour=behaviour,
            started=self._now(),
            started_at=datetime.now(UTC),
            ports=ports,
            output=bytearray(behaviour.output),
            servers=servers,
            cpu_millis=behaviour.cpu_millis,
            memory_bytes=behaviour.memory_bytes,
        )
        container.cpu_since = container.started
        self._containers[container_id] = container
        log.info("container_started", id=container_id, name=spec.name, image=spec.image)
        return self._info(container)

    def _check_startable(self, spec: ContainerSpec, behaviour: FakeBehaviour) -> None:
        if behaviour.missing_image:
            raise ImageNotFoundError(f"no such image: {spec.image}")
        if any(c.spec.name == spec.name for c in self._containers.values()):
            raise ContainerStartError(f"container name {spec.name!r} is already in use")
        message = self._fail_next.pop(spec.image, None) or behaviour.fail_start
        if message is not None:
            raise ContainerStartError(message)

    async def _publish(
        self, spec: ContainerSpec, behaviour: FakeBehaviour
    ) -> tuple[builtins.list[asyncio.Server], builtins.list[PortMapping]]:
        servers: builtins.list[asyncio.Server] = []
        ports = []
        for port in spec.ports:
            host_port = port.host_port
            if behaviour.serve_ports:
                try:
                    server = await asyncio.start_server(_answer, "127.0.0.1", host_port)
                except OSError as exc:
                    await _close_all(servers)
                    raise ContainerStartError(f"cannot publish port {host_port}: {exc.strerror or exc}") from exc
                servers.append(server)
                host_port = server.sockets[0].getsockname()[1]
            elif host_port == 0:
                host_port = next(self._host_ports)
            ports.append(PortMapping(port.container_port, host_port, port.protocol, port.host_ip))
        return servers, ports

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        container = self._get(container_id)
        now = self._now()
        if container.has_exited(now):
            return
        container.signals.append("SIGTERM")
        container.stopped = now
        if container.behaviour.ignore_term:
            container.signals.append("SIGKILL")
            container.exit_code = EXIT_SIGKILL
        else:
            container.output += container.behaviour.term_output
            container.exit_code = container.behaviour.term_exit_code
        await _close_servers(container)
        log.info("container_stopped", id=container_id, grace_seconds=grace_seconds)

    async def remove(self, container_id: str) -> None:
        container = self._containers.pop(container_id, None)
        if container is not None:
            await _close_servers(container)
            log.info("container_removed", id=container_id)

    async def close(self) -> None:
        for container in self._containers.values():
            await _close_servers(container)

    async def pod_gateway(self) -> str | None:
        """Fake containers have no network of their own."""
        return None

    # reading

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        container = self._containers.get(container_id)
        return None if container is None else self._info(container)

    async def list(self, labels: Mapping[str, str]) -> builtins.list[ContainerInfo]:
        wanted = labels.items()
        return [self._info(c) for c in self._containers.values() if wanted <= c.spec.labels.items()]

    async def stats(self, container_id: str) -> ContainerStats | None:
        container = self._containers.get(container_id)
        now = self._now()
        if container is None or container.has_exited(now):
            return None
        return ContainerStats(cpu_ns=container.cpu_ns_at(now), memory_bytes=container.memory_bytes)

    async def exec(
        self,
        container_id: str,
        command: builtins.list[str],
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ExecResult:
        container = self._get(container_id)
        behaviour = container.behaviour
        if behaviour.exec_seconds > timeout:
            return ExecResult(124, b"timed out")
        code = behaviour.exec_exit_code if container.exec_exit_code is None else container.exec_exit_code
        return ExecResult(code, behaviour.exec_output)

    async def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        container = self._get(container_id)
        sent = _tail_start(bytes(container.output), tail)
        while True:
            if len(container.output) > sent:
                chunk = bytes(container.output[sent:])
                sent += len(chunk)
                yield chunk
            if not follow or container.has_exited(self._now()) or container.id not in self._containers:
                return
            await asyncio.sleep(0.05)


def _tail_start(data: bytes, lines: int | None) -> int:
    """Where the last `lines` lines of `data` begin."""
    if lines is None:
        return 0
    if lines <= 0:
        return len(data)
    position = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        position = data.rfind(b"\n", 0, position)
        if position < 0:
            return 0
    return position + 1


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A published port of a fake container: any request gets an empty 200."""
    with contextlib.suppress(OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        writer.write(_HTTP_OK)
        await writer.drain()
    writer.close()


async def _close_servers(container: _Container) -> None:
    servers, container.servers = container.servers, []
    await _close_all(servers)


async def _close_all(servers: list[asyncio.Server]) -> None:
    for server in servers:
        server.close()
        await server.wait_closed()
