"""The managed nginx: the Debian `nginx` binary as one child process of the agent.

`find_nginx()` looks for `nginx` on PATH, then `/usr/sbin/nginx`. `Nginx.start()` runs
`nginx -p <dir> -c <dir>/nginx.conf -e <dir>/error.log` (`daemon off;`: the master is the
child, in a session of its own so that its workers are ended with it, and told to end
when the agent dies: `PR_SET_PDEATHSIG`) with a config of no
server; its pid file, error log, temporary directories and the certificate files are all
in `<dir>` (0700; 0711 when the workers run as `nobody`, so that they reach their
temporary directories): never /etc/nginx, never the system service. Run as root, the
workers drop to `nobody` when every directory above `<dir>` lets them through (else they
stay root); the master reads the certificates (0600, `certs/` 0700) before that.

`load(config)`: the certificate files are written (0600), the config to
`nginx.conf.new`, tested (`nginx -t`: a config that fails is refused and the running one
stays), moved into place and the master sent SIGHUP; it is loaded once a worker of the new
generation runs (nginx finishes the old workers' requests and open WebSockets
gracefully, and closes their idle keep-alive connections). Certificate files no config
names any more are removed. `stop()`: SIGTERM, then SIGKILL, and the session's leftovers.
A master left running by an agent that was killed is ended at start (its pid file).

Errors: `NginxError` ├── `NginxStartFailed`
                    └── `ConfigRefused` (`nginx -t`'s message, or the error log's last line)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import stat
from pathlib import Path

import psutil
import structlog

from agent.network.ingress import processes
from agent.network.ingress.nginx_config import CERTS, NginxConfig, Settings, bare_config

log = structlog.get_logger(__name__)

BINARY = "nginx"
SYSTEM_BINARY = "/usr/sbin/nginx"
CONFIG = "nginx.conf"
PID_FILE = "nginx.pid"
ERROR_LOG = "error.log"
WORKER_USER = "nobody"


class NginxError(Exception):
    pass


class NginxStartFailed(NginxError):
    pass


class ConfigRefused(NginxError):
    pass


def find_nginx(path: str | None = None) -> str | None:
    """The nginx binary: on PATH, else Debian's /usr/sbin/nginx (None: not installed)."""
    found = shutil.which(BINARY, path=path)
    if found is not None:
        return found
    return SYSTEM_BINARY if os.access(SYSTEM_BINARY, os.X_OK) else None


def worker_user(directory: Path) -> str | None:
    """The workers' user: the agent's (None) unless it is root; then `nobody` when they can
    reach `directory`'s temporary files, else root (said: nginx's own default is nobody)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(WORKER_USER)
        if all(parent.stat().st_mode & stat.S_IXOTH for parent in directory.resolve().parents):
            return WORKER_USER
    except (KeyError, OSError):
        pass
    log.info("ingress_nginx_workers_as_root", directory=str(directory), reason="nobody cannot reach the directory")
    return "root"


def _workers(master: int) -> set[int]:
    try:
        children = psutil.Process(master).children()
    except psutil.Error:
        return set()
    found = set()
    for child in children:
        with contextlib.suppress(psutil.Error):
            if "worker process" in " ".join(child.cmdline()) and "shutting down" not in " ".join(child.cmdline()):
                found.add(child.pid)
    return found


class Nginx:
    def __init__(
        self, binary: str, directory: Path, *, start_timeout: float = 10.0, load_timeout: float = 30.0
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.start_timeout = start_timeout
        self.load_timeout = load_timeout
        self.process: asyncio.subprocess.Process | None = None
        # The workers' user, and the settings the configs are made with (known at start).
        self.user: str | None = None
        self.settings = Settings(str(directory))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _args(self, config: str, *extra: str) -> list[str]:
        d = str(self.directory)
        return [self.binary, "-p", d + "/", "-c", f"{d}/{config}", "-e", f"{d}/{ERROR_LOG}", *extra]

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.user = worker_user(self.directory)
        self.settings = Settings(str(self.directory), user=self.user and f"{self.user} {_group(self.user)}")
        os.chmod(self.directory, 0o711 if self.user == WORKER_USER else 0o700)
        for sub in (CERTS, "temp"):
            (self.directory / sub).mkdir(exist_ok=True, mode=0o700)
            os.chmod(self.directory / sub, 0o700 if sub == CERTS else 0o711)
        await self._end_orphan()
        _write(self.directory / CONFIG, bare_config(self.settings).encode())
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self._args(CONFIG),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=str(self.directory),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            raise NginxStartFailed(f"cannot run {self.binary}: {e.strerror or e}") from e
        if not await self._new_worker(set(), self.start_timeout):
            code = self.process.returncode
            raise NginxStartFailed(f"nginx did not start (code {code}): {self.last_error()}")

    async def _new_worker(self, old: set[int], within: float) -> bool:
        """Wait until the accepting workers are all new ones, not in `old` (False: not `within`
        seconds, or the master exited)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if self.process is None or self.process.returncode is not None:
                return False
            current = await asyncio.to_thread(_workers, self.process.pid)
            if current and not current & old:  # the old generation no longer accepts
                return True
            await asyncio.sleep(0.02)
        return False

    def last_error(self) -> str:
        try:
            lines = (self.directory / ERROR_LOG).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no error log"
        return lines[-1] if lines else "nothing in the error log"

    async def _end_orphan(self) -> None:
        """End the nginx a previous agent started in this directory, if it still runs."""
        try:
            pid = int((self.directory / PID_FILE).read_text())
            process = psutil.Process(pid)
            ours = process.name() == BINARY and str(self.directory) in " ".join(process.cmdline())
        except (OSError, ValueError, psutil.Error):
            return
        if not ours:
            return
        log.warning("ingress_nginx_orphan_stopped", pid=pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            await asyncio.to_thread(process.wait, 5)

    async def load(self, config: NginxConfig) -> None:
        if self.process is None or self.process.returncode is not None:
            raise NginxError("nginx does not run")
        for name, content in config.files.items():
            path = self.directory / name
            if not path.exists() or path.read_bytes() != content:
                _write(path, content)
        _write(self.directory / (CONFIG + ".new"), config.text.encode())
        test = await asyncio.create_subprocess_exec(
            *self._args(CONFIG + ".new", "-t", "-q"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(self.directory),
        )
        _, err = await test.communicate()
        if test.returncode != 0:
            raise ConfigRefused(err.decode(errors="replace").strip() or f"nginx -t exited {test.returncode}")
        old = await asyncio.to_thread(_workers, self.process.pid)
        os.replace(self.directory / (CONFIG + ".new"), self.directory / CONFIG)
        self.process.send_signal(signal.SIGHUP)
        if not await self._new_worker(old, self.load_timeout):
            raise ConfigRefused(f"nginx kept its previous config: {self.last_error()}")
        kept = {Path(name).name for name in config.files}
        for path in (self.directory / CERTS).iterdir():
            if path.name not in kept:
                path.unlink(missing_ok=True)

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        self._end_session(self.process.pid)
        return code

    @staticmethod
    def _end_session(pid: int) -> None:
        """The master's workers, should it have died without ending them."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    async def stop(self, grace: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        await processes.end(process, grace)
        self._end_session(process.pid)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / PID_FILE).unlink()


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the agent dies, even by SIGKILL (nginx's
    master is in a session of its own, out of reach of a signal to the agent's group)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _group(user: str) -> str:
    import grp

    gid = pwd.getpwnam(user).pw_gid
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _write(path: Path, content: bytes) -> None:
    """Atomically, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.replace(temporary, path)
