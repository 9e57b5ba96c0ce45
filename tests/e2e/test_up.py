"""`corral up`: the single-machine cluster, as the README runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, free_port, kill_process_containers, remove_node_containers, wait_until

pytestmark = pytest.mark.docker


def test_up_runs_a_cluster_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # The data directory from the environment, as scripts/up documents it.
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "CORRAL_DATA_DIR": str(tmp_path / "d")}
    env.pop("CORRAL_SERVER", None)
    address = f"127.0.0.1:{free_port()}"
    node = f"up-{os.getpid()}"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral.cli.main", "up", "--listen", address, "--name", node],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    cli = Cli(env)  # no --server: the config file `corral up` wrote must be enough
    try:
        wait_until(lambda: cli.run("get", "node", node).returncode == 0, 60, "local node registered", log)
        assert f"server: {address}" in (tmp_path / "config" / "corral" / "config.yaml").read_text()
        assert "runtime (a Docker engine answers)" in log.read_text()
        assert f"data in {tmp_path / 'd'}" in log.read_text()
        assert (tmp_path / "d" / "pki" / "ca.crt").is_file()
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hello"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "corral-test/busybox:1", "command": ["sleep", "3600"]}],
            },
        }
        assert cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode()).returncode == 0
        wait_until(
            lambda: '"phase": "Running"' in cli.run("get", "pod", "hello", "-o", "json").stdout,
            60,
            "pod running on the local node",
            log,
        )
        assert cli.run("delete", "pod", "hello").returncode == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        text = log.read_text()
        # Said at Ctrl-C, and "stopped" only once everything (the pod's container stop included) is done.
        assert "corral stopping" in text
        assert text.index("corral stopping") < text.index("corral stopped")
        assert text.rstrip().splitlines()[-1].startswith("corral stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_node_containers(node)


@pytest.mark.skipif(os.geteuid() != 0, reason="the root-agent case (CI runs as root)")
def test_up_with_the_process_runtime_runs_host_processes_as_nobody(tmp_path: Path) -> None:
    """`corral up` on a machine without Docker: its only pods are host processes, so it admits them
    (the privileged level) and, run as root, runs them as 65534."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "CORRAL_DATA_DIR": str(tmp_path / "d")}
    env.pop("CORRAL_SERVER", None)
    node = f"up-process-{os.getpid()}"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "corral.cli.main",
                "up",
                "--listen",
                f"127.0.0.1:{free_port()}",
                "--name",
                node,
                "--runtime",
                "process",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    cli = Cli(env)
    try:
        wait_until(lambda: cli.run("get", "node", node).returncode == 0, 60, "local node registered", log)
        assert "pod security level: privileged (process pods run on this host as 65534:65534" in log.read_text()
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hello"},
            "spec": {
                "runtimeClassName": "process",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "main", "image": "host", "command": ["/bin/sh", "-c", "echo uid=$(id -u); sleep 3600"]}
                ],
            },
        }
        applied = cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode())
        assert applied.returncode == 0, applied.stderr
        wait_until(lambda: "uid=65534" in cli.run("logs", "hello").stdout, 60, "the pod's output", log)
        assert cli.run("delete", "pod", "hello").returncode == 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_process_containers(tmp_path / "d" / "agent")
