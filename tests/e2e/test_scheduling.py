"""Pods without a node are placed by the scheduler; pods that fit nowhere say why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until

pytestmark = pytest.mark.docker


def apply(cli: Cli, doc: dict[str, Any]) -> None:
    result = cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode())
    assert result.returncode == 0, result.stderr


def pod(name: str, **resources: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "corral-test/busybox:1", "command": ["sleep", "3600"]}
    if resources:
        container["resources"] = {"requests": resources}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
    }


def get(cli: Cli, name: str) -> dict[str, Any]:
    result = cli.run("get", "pod", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_scheduler_places_and_explains(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    apply(cli, pod("placed", cpu="100m", memory="32Mi"))
    wait_until(
        lambda: get(cli, "placed").get("status", {}).get("phase") == "Running", 60, "scheduled pod running", agent.log
    )
    assert get(cli, "placed")["spec"]["nodeName"] == agent.name
    apply(cli, pod("too-big", cpu="500"))

    def explained() -> str:
        conditions = get(cli, "too-big").get("status", {}).get("conditions", [])
        return next(
            (c.get("message", "") for c in conditions if c["type"] == "PodScheduled" and c["status"] == "False"), ""
        )

    message = wait_until(explained, 30, "unschedulable reason")
    assert message == "0/1 nodes available: 1 insufficient cpu."
    described = cli.run("describe", "pod", "too-big")
    assert "FailedScheduling" in described.stdout
    assert "0/1 nodes available: 1 insufficient cpu." in described.stdout
    assert "nodeName" not in get(cli, "too-big")["spec"]
