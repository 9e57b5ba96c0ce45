"""The supervisor shim of the process runtime, and the container's meta file.

    python -m agent.runtime.process_shim <container-dir>

`ProcessRuntime.run` writes `<container-dir>/meta.json` and starts this shim
in a new session. The shim forks once and its first process exits at once, so
the supervisor that remains is a child of init, not of the agent: it survives
the agent being killed (`kill -9`, a crash, an upgrade) and leaves no zombie
behind in the agent. The supervisor then

1. starts `argv` (command + args) in its own session and process group, with
   stdout and stderr both appended to `output.log`, cwd and env from the meta,
   and the address-space limit (RLIMIT_AS) where one is given and the OS allows;
   as the meta's uid/gid when runAsUser/runAsGroup ask (the agent runs as root),
   with no-new-privileges (prctl PR_SET_NO_NEW_PRIVS) unless escalation is allowed;
2. records pid, the pid's start time (to tell a recycled pid apart later) and
   the start time in the meta, and reports `{"pid": …}` — or `{"error": …}` if
   the command cannot be started — as one JSON line on its stdout, which is the
   runtime's pipe; then it detaches from that pipe;
3. waits for the command, kills what is left of its process group (as Docker
   does when a container's main process ends), and records exit code (a signal
   N becomes 128+N, as in Docker), reason and finish time.

Every write of the meta is atomic (a temporary file, then rename), so readers
never see half a file. The supervisor is the only writer after the start.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

META_FILE = "meta.json"
LOG_FILE = "output.log"
WORK_DIR = "work"
SHIM_LOG_FILE = "shim.log"

# Exit codes a shell uses when a command cannot be run.
EXIT_NOT_FOUND = 127
EXIT_CANNOT_RUN = 126
# prctl(2) option: this process and its children can gain no privileges on exec.
PR_SET_NO_NEW_PRIVS = 38


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def read_meta(container_dir: Path) -> dict[str, Any] | None:
    """The container's meta, or None if it is gone (or not written yet)."""
    try:
        text = (container_dir / META_FILE).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    meta: dict[str, Any] = json.loads(text)
    return meta


def write_meta(container_dir: Path, meta: dict[str, Any]) -> None:
    """Replace the meta atomically: write a temporary file, then rename it."""
    temporary = container_dir / f".{META_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(meta, indent=1, sort_keys=True))
    os.replace(temporary, container_dir / META_FILE)


def exit_code_of(returncode: int) -> int:
    """Docker's convention: killed by signal N → 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _limit_memory(limit_bytes: int) -> None:
    """In the child, before exec: cap the address space where the OS allows it."""
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def _no_new_privileges() -> Callable[[], None]:
    """In the child, before exec: PR_SET_NO_NEW_PRIVS (setuid binaries gain nothing), where Linux has it."""
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork

    def apply() -> None:
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    return apply


def _preexec(meta: dict[str, Any]) -> Callable[[], None] | None:
    """What the child does before exec (after the user switch): memory cap, no-new-privileges."""
    steps: list[Callable[[], None]] = []
    limit = meta.get("memory_limit_bytes")
    if limit:
        steps.append(lambda: _limit_memory(int(limit)))
    if meta.get("no_new_privileges") and sys.platform == "linux":
        steps.append(_no_new_privileges())
    if not steps:
        return None

    def run() -> None:
        for step in steps:
            step()

    return run


def _start(meta: dict[str, Any], container_dir: Path) -> subprocess.Popen[bytes]:
    uid, gid = meta.get("uid"), meta.get("gid")
    # runAsUser: the runtime checked that the agent (and so this shim) runs as root.
    user_switch: dict[str, Any] = {} if uid is None else {"user": uid, "extra_groups": []}
    if gid is not None:
        user_switch["group"] = gid
    with open(container_dir / LOG_FILE, "ab", buffering=0) as output:
        return subprocess.Popen(
            meta["argv"],
            cwd=meta["cwd"],
            env=meta["env"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            # preexec_fn is safe here: the shim has a single thread.
            preexec_fn=_preexec(meta),
            **user_switch,
        )


def _report(message: dict[str, Any]) -> None:
    """Tell the runtime how the start went, then let go of its pipe."""
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _record(container_dir: Path, meta: dict[str, Any], **changes: Any) -> None:
    meta.update(changes)
    with contextlib.suppress(FileNotFoundError):  # the container was removed meanwhile
        write_meta(container_dir, meta)


def _start_failed(container_dir: Path, meta: dict[str, Any], exc: OSError) -> int:
    program = meta["argv"][0]
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename not in (None, program):
        message = f"cannot start {program!r}: {reason}: {exc.filename!r}"
    else:
        message = f"cannot start {program!r}: {reason}"
    code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_RUN
    _record(container_dir, meta, exit_code=code, finished_at=now_iso(), reason="Error", message=message)
    _report({"error": message})
    return 1


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def supervise(container_dir: Path) -> int:
    """Start the container's command, record its pid, wait, record its exit."""
    meta = read_meta(container_dir)
    if meta is None:
        _report({"error": f"no {META_FILE} in {container_dir}"})
        return 1
    me = psutil.Process()
    _record(container_dir, meta, supervisor_pid=me.pid, supervisor_create_time=me.create_time())
    try:
        child = _start(meta, container_dir)
    except OSError as exc:
        return _start_failed(container_dir, meta, exc)
    create_time = psutil.Process(child.pid).create_time()
    _record(container_dir, meta, pid=child.pid, pid_create_time=create_time, started_at=now_iso())
    _report({"pid": child.pid})
    code = exit_code_of(child.wait())
    _kill_group(child.pid)
    reason = "Completed" if code == 0 else "Error"
    _record(container_dir, meta, exit_code=code, finished_at=now_iso(), reason=reason)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m agent.runtime.process_shim <container-dir>\n")
        return 2
    if os.fork() != 0:
        os._exit(0)  # the runtime reaps this one at once; the supervisor goes on under init
    return supervise(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
