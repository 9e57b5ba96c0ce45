"""The process runtime: a pod container as a plain host process (Nomad's raw_exec).

For machines without Docker. Each container is a directory

    <data_dir>/containers/<id>/
        meta.json    spec, labels, times, pid (+ its start time), exit code
        output.log   stdout and stderr, interleaved in the order written
        work/        the working directory, unless the spec sets working_dir
        shim.log     the supervisor's own errors, if any

and a supervisor (`process_shim`) that starts the command, waits for it and
records its exit. The supervisor is detached from the agent, so a container
outlives an agent killed with `kill -9`; a new agent finds it again in the
meta files (same id) and later reads its exit code there. (Under systemd, give
the agent `KillMode=process`, or stopping the unit kills the containers too.)

What differs from Docker, by design or by necessity:

- There are no images: `ensure_image` does nothing and `spec.image` is only
  recorded. `spec.command` (+ `args`) is what runs, so it is required.
- No isolation: the process shares the host's filesystem, network, process
  and IPC namespaces and users. It gets the spec's env on top of a minimal one
  (the agent's PATH). It runs as the agent's user, or as `runAsUser` /
  `runAsGroup` (an agent running as root switches to them, and without them
  to its `default_user`, 65534:65534 for `corral agent`); `exec` runs as the
  same user.
- Ports are not published: the process binds them itself. A port's host port
  must be 0 or equal to the container port; it is reported as the container port.
  A port already bound on the host fails the start (checked just before it).
- The memory limit caps the address space (RLIMIT_AS) where the OS allows it,
  which is stricter than Docker's limit on resident memory. The CPU limit is
  not enforced. An out-of-memory kill cannot be told apart: reason is "Error".
- `exec` runs the command on the host, in the container's working directory
  and with its env.
- No network of its own: `pod_gateway` is None, and the spec's `dns_servers`
  and `dns_search` are ignored (the process uses the host's resolv.conf). It
  reaches Services at the node proxy address given in its env vars.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import structlog

from agent.runtime import checks, process_shim
from agent.runtime.base import ContainerInfo, ContainerSpec, ContainerStats, ExecResult, PortMapping, State
from agent.runtime.errors import ContainerConfigError, ContainerNotFoundError, ContainerStartError

log = structlog.get_logger(__name__)

# How long the supervisor may take to report that the command started.
START_TIMEOUT = 30.0
# How long a killed process and its supervisor may take to be gone and recorded.
KILL_WAIT = 10.0
POLL_INTERVAL = 0.05
LOG_POLL_INTERVAL = 0.2
LOG_READ_SIZE = 64 * 1024
# Two start times of one process, read twice, agree far better than this.
CREATE_TIME_TOLERANCE = 0.05
# The directory holding the `agent` package: the shim runs as `python -m agent.runtime.process_shim`.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


# -- liveness -------------------------------------------------------------------


def _alive(pid: int | None, create_time: float | None) -> bool:
    """True if `pid` is (still) the process started at `create_time`, zombies included."""
    if pid is None or create_time is None:
        return False
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < CREATE_TIME_TOLERANCE
    except psutil.Error:
        return False


def _child_running(meta: Mapping[str, Any]) -> bool:
    """The command itself runs (not a zombie waiting for its supervisor)."""
    if not _alive(meta.get("pid"), meta.get("pid_create_time")):
        return False
    try:
        return bool(psutil.Process(meta["pid"]).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _supervisor_alive(meta: Mapping[str, Any]) -> bool:
    return _alive(meta.get("supervisor_pid"), meta.get("supervisor_create_time"))


def _signal_group(meta: Mapping[str, Any], signum: signal.Signals) -> None:
    """Signal the command's process group (it leads its own), if it is still the same process."""
    if not _alive(meta.get("pid"), meta.get("pid_create_time")):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(int(meta["pid"]), signum)


def _usage(meta: Mapping[str, Any]) -> ContainerStats | None:
    """CPU time and RSS of the command and every process under it; None once it has exited.

    CPU time counts the live processes and the children they have reaped; a
    descendant that exits unreaped takes its share with it (the pure core treats
    the dip as no use, never as negative use).
    """
    if not _child_running(meta):
        return None
    try:
        main = psutil.Process(int(meta["pid"]))
        processes = [main, *main.children(recursive=True)]
    except psutil.Error:
        return None
    cpu_seconds = 0.0
    rss = 0
    for process in processes:
        try:
            with process.oneshot():
                times = process.cpu_times()
                memory = process.memory_info()
        except psutil.Error:  # ended meanwhile
            continue
        cpu_seconds += times.user + times.system + times.children_user + times.children_system
        rss += memory.rss
    return ContainerStats(cpu_ns=int(cpu_seconds * 1e9), memory_bytes=rss)


# -- meta → ContainerInfo -------------------------------------------------------


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _state(meta: Mapping[str, Any]) -> tuple[State, str]:
    """The state, and a message when the supervisor vanished without recording an exit."""
    if meta.get("finished_at"):
        return State.EXITED, meta.get("message", "")
    if _alive(meta.get("pid"), meta.get("pid_create_time")) or _supervisor_alive(meta):
        return (State.RUNNING if meta.get("pid") else State.CREATED), ""
    if meta.get("supervisor_pid") or meta.get("pid"):
        return State.EXITED, "the supervisor died: exit status unknown"
    return State.CREATED, ""


def _info(meta: Mapping[str, Any]) -> ContainerInfo:
    state, message = _state(meta)
    exited = state is State.EXITED
    return ContainerInfo(
        id=meta["id"],
        name=meta["name"],
        image=meta["image"],
        labels=dict(meta["labels"]),
        state=state,
        exit_code=meta.get("exit_code") if exited else None,
        started_at=_time(meta.get("started_at")),
        finished_at=_time(meta.get("finished_at")) if exited else None,
        ports=[PortMapping(**port) for port in meta["ports"]],
        reason=(meta.get("reason") or "Error") if exited else "",
        message=message,
    )


# -- spec → meta ------------------------------------------------------------------


def _published_ports(spec: ContainerSpec) -> list[PortMapping]:
    ports = []
    for port in spec.ports:
        if port.host_port not in (0, port.container_port):
            raise ContainerStartError(
                f"process runtime cannot map port {port.container_port} to host port {port.host_port}: "
                "the process binds its ports itself (host port must be 0 or equal the container port)"
            )
        ports.append(PortMapping(port.container_port, port.container_port, port.protocol, port.host_ip))
    return ports


def _check_free(ports: list[PortMapping]) -> None:
    """Fail the start, as Docker does, when a port is taken on the host already."""
    for port in ports:
        kind = socket.SOCK_DGRAM if port.protocol.upper() == "UDP" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((port.host_ip or "0.0.0.0", port.host_port))
            except OSError as exc:
                raise ContainerStartError(
                    f"port {port.host_port}/{port.protocol} is already in use on the host: {exc.strerror or exc}"
                ) from exc


def _environment(spec: ContainerSpec) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), **spec.env}


def _new_meta(container_id: str, spec: ContainerSpec, container_dir: Path) -> dict[str, Any]:
    return {
        "id": container_id,
        "name": spec.name,
        "image": spec.image,
        "labels": dict(spec.labels),
        "spec": {
            "command": list(spec.command),
            "args": list(spec.args),
            "env": dict(spec.env),
            "working_dir": spec.working_dir,
            "cpu_limit_millis": spec.cpu_limit_millis,
        },
        "argv": [*spec.command, *spec.args],
        "cwd": spec.working_dir or str(container_dir / process_shim.WORK_DIR),
        "env": _environment(spec),
        "memory_limit_bytes": spec.memory_limit_bytes,
        "uid": checks.parse_user(spec.user)[0],
        "gid": checks.parse_user(spec.user)[1],
        "no_new_privileges": spec.no_new_privileges,
        "ports": [vars(port) for port in _published_ports(spec)],
        "created_at": process_shim.now_iso(),
    }


def _switch_user(cwd: str, uid: int | None, gid: int | None) -> Callable[[], None] | None:
    """What an exec'd child runs before exec to enter `cwd` and become the container's user (only
    system calls: safe after a fork in a threaded agent); None when it runs as the agent's user."""
    if uid is None and gid is None:
        return None

    def switch() -> None:
        os.chdir(cwd)
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            if gid is None:
                os.setgroups([])
            os.setuid(uid)

    return switch


# -- blocking helpers (run in threads) -------------------------------------------


def _launch(container_dir: Path) -> dict[str, Any]:
    """Start the supervisor and read its one-line report: {"pid": …} or {"error": …}."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with open(container_dir / process_shim.SHIM_LOG_FILE, "ab") as shim_log:
        shim = subprocess.Popen(
            [sys.executable, "-m", "agent.runtime.process_shim", str(container_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=shim_log,
            env=env,
            start_new_session=True,
        )
    try:
        out, _ = shim.communicate(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        shim.kill()
        shim.wait()
        return {"error": f"the supervisor did not report within {START_TIMEOUT:g}s"}
    try:
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        shim_errors = (container_dir / process_shim.SHIM_LOG_FILE).read_text(errors="replace")[-500:]
        return {"error": f"the supervisor failed: {shim_errors.strip() or 'no report'}"}
    return report


def _tail_offset(path: Path, lines: int | None) -> int:
    """Where the last `lines` lines of the file begin (0: the whole file)."""
    if lines is None:
        return 0
    with open(path, "rb") as file:
        end = file.seek(0, os.SEEK_END)
        if lines <= 0:
            return end
        position, wanted = end, lines
        # A final newline ends the last line; it does not start another one.
        file.seek(max(0, end - 1))
        if file.read(1) == b"\n":
            wanted += 1
        while position > 0:
            start = max(0, position - LOG_READ_SIZE)
            file.seek(start)
            block = file.read(position - start)
            for index in range(len(block) - 1, -1, -1):
                if block[index] == ord("\n"):
                    wanted -= 1
                    if wanted == 0:
                        return start + index + 1
            position = start
        return 0


def _read_at(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            return file.read(LOG_READ_SIZE)
    except FileNotFoundError:
        return b""


def _remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("container_dir_not_removed", path=str(path))


# -- the runtime ------------------------------------------------------------------


class ProcessRuntime:
    """`ContainerRuntime` running host processes under a detached supervisor."""

    name = "process"

    def __init__(self, data_dir: Path, *, default_user: str = "") -> None:
        """`default_user` ("uid[:gid]"): who runs a container whose spec names no user
        (only an agent running as root can switch); "": the agent's own user."""
        self._default_user = default_user
        self._root = Path(data_dir) / "containers"
        self._root.mkdir(parents=True, exist_ok=True)
        # Serialises the check that a name is free with claiming it.
        self._names = asyncio.Lock()

    def _dir(self, container_id: str) -> Path:
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise ContainerNotFoundError(f"no container {container_id!r}")
        return self._root / container_id

    async def _meta(self, container_id: str) -> dict[str, Any]:
        meta = await asyncio.to_thread(process_shim.read_meta, self._dir(container_id))
        if meta is None:
            raise ContainerNotFoundError(f"no container {container_id!r}")
        return meta

    def _all_metas(self) -> builtins.list[dict[str, Any]]:
        metas = []
        for container_dir in sorted(self._root.iterdir()):
            with contextlib.suppress(ValueError):  # a meta being written for the first time
                meta = process_shim.read_meta(container_dir)
                if meta is not None:
                    metas.append(meta)
        return metas

    async def close(self) -> None:
        """Nothing to release: the containers keep running without the agent."""

    async def pod_gateway(self) -> str | None:
        """Processes share the host's network: no gateway."""
        return None

    async def ensure_image(self, image: str, pull_policy: str) -> None:
        """Images do not apply to host processes: nothing to do."""

    # lifecycle

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        if not spec.command:
            raise ContainerStartError("process runtime needs spec.containers[].command")
        if not spec.user and self._default_user:
            spec = dataclasses.replace(spec, user=self._default_user)
        refusal = checks.process_refusal(spec, os.geteuid())
        if refusal is not None:
            raise ContainerConfigError(f"{spec.name}: {refusal}")
        container_id = uuid.uuid4().hex
        container_dir = self._root / container_id
        meta = _new_meta(container_id, spec, container_dir)
        await asyncio.to_thread(_check_free, _published_ports(spec))
        await self._claim(spec.name, container_dir, meta)
        report = await asyncio.to_thread(_launch, container_dir)
        if "error" in report:
            await self.remove(container_id)
            raise ContainerStartError(f"{spec.name}: {report['error']}")
        info = await self.inspect(container_id)
        if info is None:
            raise ContainerStartError(f"{spec.name}: removed while starting")
        log.info("container_started", id=container_id, name=spec.name, pid=report["pid"])
        return info

    async def _claim(self, name: str, container_dir: Path, meta: dict[str, Any]) -> None:
        """Create the container's directory and meta, if no container has that name yet."""
        async with self._names:
            if any(other["name"] == name for other in await asyncio.to_thread(self._all_metas)):
                raise ContainerStartError(f"container name {name!r} is already in use")
            await asyncio.to_thread(self._create_dir, container_dir, meta)

    @staticmethod
    def _create_dir(container_dir: Path, meta: dict[str, Any]) -> None:
        (container_dir / process_shim.WORK_DIR).mkdir(parents=True)
        if meta.get("uid") is not None:  # the container's user owns its work dir
            os.chown(container_dir / process_shim.WORK_DIR, meta["uid"], meta.get("gid") or 0)
        (container_dir / process_shim.LOG_FILE).touch()
        process_shim.write_meta(container_dir, meta)

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        meta = await self._meta(container_id)
        if not await asyncio.to_thread(_child_running, meta):
            return
        _signal_group(meta, signal.SIGTERM)
        if not await self._wait_for(lambda: not _child_running(meta), grace_seconds):
            log.info("container_killed", id=container_id, grace_seconds=grace_seconds)
            _signal_group(meta, signal.SIGKILL)
        await self._wait_recorded(container_id)
        log.info("container_stopped", id=container_id)

    async def _wait_recorded(self, container_id: str) -> None:
        """Wait until the supervisor has recorded the exit (or is gone)."""

        def recorded() -> bool:
            meta = process_shim.read_meta(self._dir(container_id))
            return meta is None or bool(meta.get("finished_at")) or not _supervisor_alive(meta)

        await self._wait_for(recorded, KILL_WAIT)

    @staticmethod
    async def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
        """Poll a blocking `condition` in a thread until it holds or `seconds` pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not await asyncio.to_thread(condition):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_INTERVAL)
        return True

    async def remove(self, container_id: str) -> None:
        try:
            meta = await self._meta(container_id)
        except ContainerNotFoundError:
            return
        _signal_group(meta, signal.SIGKILL)
        await self._wait_recorded(container_id)
        await asyncio.to_thread(_remove_dir, self._dir(container_id))
        log.info("container_removed", id=container_id)

    # reading

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        try:
            meta = await self._meta(container_id)
        except ContainerNotFoundError:
            return None
        return await asyncio.to_thread(_info, meta)

    async def list(self, labels: Mapping[str, str]) -> builtins.list[ContainerInfo]:
        def matching() -> builtins.list[ContainerInfo]:
            wanted = labels.items()
            return [_info(meta) for meta in self._all_metas() if wanted <= meta["labels"].items()]

        return await asyncio.to_thread(matching)

    async def stats(self, container_id: str) -> ContainerStats | None:
        try:
            meta = await self._meta(container_id)
        except ContainerNotFoundError:
            return None
        return await asyncio.to_thread(_usage, meta)

    async def exec(
        self,
        container_id: str,
        command: builtins.list[str],
        *,
        timeout: float,  # noqa: ASYNC109
    ) -> ExecResult:
        meta = await self._meta(container_id)
        try:
            switch = _switch_user(meta["cwd"], meta.get("uid"), meta.get("gid"))
            process = await asyncio.create_subprocess_exec(
                *command,
                # As the container's own user (uvloop takes no user=/group=: a pre-exec switch instead,
                # which also changes directory, while still root: the agent's data dir is 0700).
                cwd=None if switch else meta["cwd"],
                preexec_fn=switch,
                env=meta["env"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:  # SubprocessError: the user switch failed
            code = process_shim.EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else process_shim.EXIT_CANNOT_RUN
            reason = getattr(exc, "strerror", None) or exc
            return ExecResult(code, f"cannot run {command[0]!r}: {reason}".encode())
        try:
            async with asyncio.timeout(timeout):
                output, _ = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return ExecResult(124, b"timed out")
        return ExecResult(process_shim.exit_code_of(process.returncode or 0), output)

    async def logs(self, container_id: str, *, tail: int | None = None, follow: bool = False) -> AsyncIterator[bytes]:
        container_dir = self._dir(container_id)
        await self._meta(container_id)  # ContainerNotFoundError before the first chunk
        path = container_dir / process_shim.LOG_FILE
        offset = await asyncio.to_thread(_tail_offset, path, tail)
        pending = b""
        while True:
            chunk = await asyncio.to_thread(_read_at, path, offset)
            if chunk:
                offset += len(chunk)
                lines, pending = _split_lines(pending + chunk)
                if lines:
                    yield lines
                continue
            if not follow:
                break
            if not await asyncio.to_thread(self._still_writing, container_dir):
                follow = False  # one more pass drains what was written before the exit
                continue
            await asyncio.sleep(LOG_POLL_INTERVAL)
        if pending:
            yield pending

    @staticmethod
    def _still_writing(container_dir: Path) -> bool:
        meta = process_shim.read_meta(container_dir)
        return meta is not None and _state(meta)[0] in (State.CREATED, State.RUNNING)


def _split_lines(data: bytes) -> tuple[bytes, bytes]:
    """Complete lines, and the unfinished rest."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]
