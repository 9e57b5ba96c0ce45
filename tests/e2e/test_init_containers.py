"""Init containers on real Docker: one writes the page an app container serves from a shared
emptyDir; a failing one crash-loops (`Init:CrashLoopBackOff` in `corral get pods`) and the
app container never starts."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until
from tests.e2e.test_agent_docker import IMAGE, apply, docker_ids, get_pod, is_ready

pytestmark = pytest.mark.docker


def pod(name: str, node: str, init_command: str) -> str:
    shared = [{"name": "site", "mountPath": "/www"}]
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "site", "emptyDir": {}}],
            "initContainers": [
                {
                    "name": "first",
                    "image": IMAGE,
                    "command": ["sh", "-c", "echo rendered > /www/index.html"],
                    "volumeMounts": shared,
                },
                {"name": "render", "image": IMAGE, "command": ["sh", "-c", init_command], "volumeMounts": shared},
            ],
            "containers": [
                {
                    "name": "web",
                    "image": IMAGE,
                    "ports": [{"containerPort": 80}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1},
                    "volumeMounts": shared,
                }
            ],
        },
    }
    return json.dumps(doc)


def status_column(cli: Cli, name: str) -> str:
    rows = cli.run("get", "pods", name).stdout.splitlines()
    return rows[1].split()[2] if len(rows) > 1 else ""


def test_init_container_writes_what_the_app_serves(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    apply(cli, pod("site", agent.name, "grep -q rendered /www/index.html && echo in order >> /www/index.html"))
    wait_until(lambda: is_ready(cli, "site"), 60, "site Running and Ready", agent.log)

    status = get_pod(cli, "site")["status"]
    with urllib.request.urlopen(f"http://{status['podIP']}:80/", timeout=5) as response:
        assert response.read().decode().split() == ["rendered", "in", "order"]
    inits = status["initContainerStatuses"]
    assert [(s["name"], s["state"]["terminated"]["reason"]) for s in inits] == [
        ("first", "Completed"),
        ("render", "Completed"),
    ]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Initialized"] == "True"
    assert status_column(cli, "site") == "Running"


def test_failing_init_container_crash_loops_and_the_app_never_starts(
    server: ServerProcess, agent: AgentProcess
) -> None:
    cli = Cli(server.env)
    apply(cli, pod("broken", agent.name, "echo cannot render; exit 3"))
    wait_until(
        lambda: status_column(cli, "broken") == "Init:CrashLoopBackOff",
        60,
        "Init:CrashLoopBackOff in corral get pods",
        agent.log,
    )

    got = get_pod(cli, "broken")
    status = got["status"]
    assert status["phase"] == "Pending"
    render = status["initContainerStatuses"][1]
    assert render["lastState"]["terminated"]["exitCode"] == 3
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    uid = got["metadata"]["uid"]
    assert docker_ids(f"io.corral.pod.uid={uid}", "io.corral.container=web") == []
    assert "cannot render" in cli.run("logs", "broken", "-c", "render").stdout
