"""`corral up`: the single-machine cluster, as the README runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, free_port, remove_node_containers, wait_until

pytestmark = pytest.mark.docker


def test_up_runs_a_cluster_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # The data directory from the environment, as scripts/up documents it.
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "CORRAL_DATA_DIR": str(tmp_path / "d")}
    env.pop("CORRAL_SERVER", None)
    address = f"127.0.0.1:{free_port()}"
    node = f"up-{os.getpid()}"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "corral.cli.main", "up",
                                 "--listen", address, "--name", node], stdout=out, stderr=subprocess.STDOUT, env=env)
    cli = Cli(env)  # no --server: the config file `corral up` wrote must be enough
    try:
        wait_until(lambda: cli.run("get", "node", node).returncode == 0, 60, "local node registered", log)
        assert f"server: {address}" in (tmp_path / "config" / "corral" / "config.yaml").read_text()
        assert "runtime (a Docker engine answers)" in log.read_text()
        assert f"data in {tmp_path / 'd'}" in log.read_text()
        assert (tmp_path / "d" / "pki" / "ca.crt").is_file()
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
               "spec": {"terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "main", "image": "corral-test/busybox:1",
                                        "command": ["sleep", "3600"]}]}}
        assert cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode()).returncode == 0
        wait_until(lambda: '"phase": "Running"' in cli.run("get", "pod", "hello", "-o", "json").stdout, 60,
                   "pod running on the local node", log)
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
