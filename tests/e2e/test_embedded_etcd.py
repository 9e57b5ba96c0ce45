"""`corral server`'s embedded etcd: the release it runs is in the start-up line and in
`corral status`, and a SIGKILLed etcd is restarted by the server itself (no manual restart)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from controlplane.store.release import find_etcd
from controlplane.store.release import wheel_binary as etcd_binary
from tests.e2e.conftest import MANIFESTS, Cli, ServerProcess, free_port, wait_until

pytestmark = pytest.mark.etcd


def events(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    """The server's log events called ``name`` (JSON lines)."""
    found = []
    for line in server.log.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


def etcd_child(server: ServerProcess) -> int:
    """The pid of the server's etcd child (found by its data dir on its command line)."""
    assert server.proc is not None
    marker = str(server.data_dir / "etcd").encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(") ", 1)[1].split()[1])
        if parent == server.proc.pid and marker in cmdline.split(b"\0"):
            return int(entry.name)
    raise AssertionError(f"no etcd child of server {server.proc.pid}")


def test_start_up_line_and_status_name_the_etcd_release(server: ServerProcess, cli: Cli) -> None:
    chosen = find_etcd()

    started = events(server, "server_started")
    status = cli.run("status")

    assert [event["etcd_version"] for event in started] == [str(chosen.release)]
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"server   {server.address} (leading)" or lines[0].endswith("(standby)")
    assert lines[1].startswith(f"etcd     {chosen.release}, healthy, db ")
    assert lines[1].endswith(f"embedded: {chosen.path} ({chosen.source}), restarted 0 times")


def test_etcd_binary_flag_runs_that_etcd_and_status_warns(tmp_path: Path, cli_env: dict[str, str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {**cli_env, "CORRAL_SERVER": address}
    wheel = etcd_binary()
    server = ServerProcess(
        tmp_path / "data", address, env, tmp_path / "server.log", extra_args=("--etcd-binary", str(wheel))
    )
    server.start()
    try:
        status = Cli(env).run("status")
    finally:
        server.stop()

    assert [e["etcd_version"] for e in events(server, "server_started")] == ["3.5.1"]
    assert [e["version"] for e in events(server, "etcd_release_not_recommended")] == ["3.5.1"]
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[1].startswith("etcd     3.5.1, healthy")
    assert lines[1].endswith(f"embedded: {wheel} (--etcd-binary), restarted 0 times")
    assert lines[2].startswith("warning: etcd 3.5.1") and "etcd issue 13766" in lines[2]


def test_a_killed_etcd_is_restarted_and_the_api_serves_again(server: ServerProcess, cli: Cli) -> None:
    applied = cli.run("apply", "-f", str(MANIFESTS / "example-app.yaml"))
    assert applied.returncode == 0, applied.stderr
    first = etcd_child(server)

    os.kill(first, signal.SIGKILL)

    wait_until(lambda: events(server, "embedded_etcd_restarted"), 60, "etcd restarted", server.log)
    assert server.proc is not None and server.proc.poll() is None  # the same server process
    assert etcd_child(server) != first
    assert [event["reason"] for event in events(server, "embedded_etcd_exited")] == ["killed by SIGKILL"]
    wait_until(
        lambda: cli.run("scale", "deployment/example-app", "--replicas", "2").returncode == 0,
        60,
        "a write through the API after the restart",
        server.log,
    )
    got = cli.run("get", "deployment/example-app", "-o", "json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["spec"]["replicas"] == 2
    assert "restarted 1 time" in cli.run("status").stdout
