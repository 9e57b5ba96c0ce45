"""`corral top`: a real server and a real agent (Docker and process runtimes) reporting
metrics every 2 s; a busy Docker pod and a busy process pod show CPU and memory in use."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    PROCESS_PODS,
    AgentProcess,
    Cli,
    ServerProcess,
    kill_process_containers,
    remove_node_containers,
    wait_until,
)

pytestmark = pytest.mark.docker

IMAGE = "corral-test/busybox:1"
# 8 MiB in the container's /dev/shm (tmpfs: part of its working set), then spin.
DOCKER_BUSY = "busybox dd if=/dev/zero of=/dev/shm/fill bs=1M count=8 2>/dev/null; while :; do :; done"
# Spin most of the time, so the two pods do not take both cores of a small machine.
PROCESS_BUSY = "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.05; done"


@pytest.fixture
def server_args() -> tuple[str, ...]:
    return PROCESS_PODS


@pytest.fixture
def agent(server: ServerProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    name = f"top-{os.getpid()}-{time.monotonic_ns() % 100000}"
    proc = AgentProcess(
        server.address,
        name,
        tmp_path / "agent",
        server.env,
        tmp_path / "agent.log",
        runtimes=("docker", "process"),
        extra_args=("--metrics-period", "2"),
    )
    proc.start()
    cli = Cli(server.env)
    wait_until(lambda: cli.run("get", "node", name).returncode == 0, 30, "agent registered", proc.log)
    yield proc
    proc.stop()
    remove_node_containers(name)
    kill_process_containers(proc.data_dir)


def busy_pod(name: str, node: str, container: dict[str, Any], **spec: Any) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "busy"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2, "containers": [container], **spec},
    }
    return json.dumps(doc)


def table(text: str) -> dict[str, dict[str, str]]:
    """A `corral top` table as {first column: {header: cell}}."""
    lines = text.strip().splitlines()
    headers = lines[0].split()
    return {cells[0]: dict(zip(headers, cells, strict=True)) for cells in (line.split() for line in lines[1:])}


def millis(cell: str) -> int:
    assert cell.endswith("m"), cell
    return int(cell[:-1])


def mebibytes(cell: str) -> int:
    assert cell.endswith("Mi"), cell
    return int(cell[:-2])


def test_top_before_any_report_says_metrics_are_not_available(server: ServerProcess, cli: Cli) -> None:
    early = cli.run("top", "nodes")
    assert early.returncode == 1 and "error: metrics not available yet" in early.stderr


def test_top_pods_and_nodes(server: ServerProcess, agent: AgentProcess, cli: Cli) -> None:
    for manifest in (
        busy_pod(
            "busy-docker",
            agent.name,
            {
                "name": "spin",
                "image": IMAGE,
                "command": ["sh", "-c", DOCKER_BUSY],
                "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}, "limits": {"cpu": "500m"}},
            },
        ),
        busy_pod(
            "busy-process",
            agent.name,
            {
                "name": "spin",
                "image": "host",
                "command": ["/bin/sh", "-c", PROCESS_BUSY],
                "resources": {"requests": {"cpu": "200m"}},
            },
            runtimeClassName="process",
        ),
    ):
        result = cli.run("apply", "-f", "-", stdin=manifest.encode())
        assert result.returncode == 0, result.stderr

    def both_busy() -> dict[str, dict[str, str]] | None:
        result = cli.run("top", "pods", "-l", "app=busy")
        if result.returncode != 0:
            return None
        rows = table(result.stdout)
        ok = {"busy-docker", "busy-process"} <= rows.keys() and all(
            millis(rows[p]["CPU(cores)"]) > 0 and mebibytes(rows[p]["MEMORY(bytes)"]) > 0 for p in rows
        )
        return rows if ok else None

    rows = wait_until(both_busy, 90, "both pods in corral top pods with CPU and memory", agent.log)
    assert isinstance(rows, dict)
    docker, process = rows["busy-docker"], rows["busy-process"]
    assert millis(docker["CPU(cores)"]) <= 600, "the Docker pod is held to its 500m limit"
    assert mebibytes(docker["MEMORY(bytes)"]) >= 8, "its /dev/shm file counts"
    assert docker["CPU/REQ"].endswith("%") and docker["MEM/REQ"].endswith("%")
    assert process["CPU/REQ"].endswith("%") and process["MEM/REQ"] == "-"

    containers = cli.run("top", "pods", "busy-process", "--containers")
    assert containers.returncode == 0, containers.stderr
    assert containers.stdout.split()[4:6] == ["busy-process", "spin"]

    def node_row() -> dict[str, str] | None:
        result = cli.run("top", "nodes")
        if result.returncode != 0:
            return None
        return table(result.stdout).get(agent.name)

    node = wait_until(node_row, 30, "the node in corral top nodes", agent.log)
    assert isinstance(node, dict)
    assert millis(node["CPU(cores)"]) > 0 and mebibytes(node["MEMORY(bytes)"]) > 0
    assert node["CPU%"].endswith("%") and node["MEMORY%"].endswith("%")

    missing = cli.run("top", "pods", "nope")
    assert missing.returncode == 1 and "not found" in missing.stderr
