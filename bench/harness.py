"""What every benchmark here needs: a free port, a `corral server` process,
waiting with a deadline, percentiles, and writing results as JSON."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from corral.cli.config import ConfigError, resolve_credentials
from corral.common.pki.credentials import Credentials

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(log_dir: str | Path, data_dir: str | Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """A `corral server` with an embedded etcd (and `extra` options), logging to `log_dir/server.log`."""
    address = f"127.0.0.1:{free_port()}"
    with open(Path(log_dir) / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "corral.cli.main",
                "server",
                "--listen",
                address,
                "--data-dir",
                str(data_dir),
                "--log-level",
                "warning",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, address


def admin_credentials(timeout: float = 60) -> Credentials:
    """The admin credentials `corral server` writes to the CLI config (CORRAL_CONFIG) once it is up."""
    found: list[Credentials] = []

    def written() -> bool:
        try:
            found.append(resolve_credentials())
        except ConfigError:
            return False
        return True

    wait_for(written, timeout, "the server's admin credentials")
    return found[0]


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """Terminate them all at once, then wait for each; one still running after 30 s is killed."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_result(name: str, result: dict[str, object]) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
