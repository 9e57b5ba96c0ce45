"""Start and stop the `corral` processes of e2e and chaos tests (servers, agents) the same way."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

CORRAL = (sys.executable, "-m", "corral.cli.main")


def spawn(
    args: Sequence[str], log: Path, env: dict[str, str], *, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Run `corral ARGS` (after ``prefix``, e.g. ``ip netns exec NS``), stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([*prefix, *CORRAL, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL, and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes] | None, grace: float = 20) -> None:
    """SIGTERM (after SIGCONT: a stopped process cannot act on it); SIGKILL after ``grace`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
