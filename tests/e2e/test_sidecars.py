"""Sidecars on real Docker: a sidecar serves the page its app container writes into a shared
emptyDir (2/2 Ready in `corral get pods`); a Job-like pod (restartPolicy Never) succeeds when
its app container exits 0 though its sidecar would run forever, and the sidecar is stopped."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until
from tests.e2e.test_agent_docker import IMAGE, apply, get_pod, is_ready

pytestmark = pytest.mark.docker

SHARED = [{"name": "site", "mountPath": "/www"}]


def pod(name: str, node: str, sidecar: dict[str, Any], app_command: str, policy: str) -> str:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "site", "emptyDir": {}}],
            "initContainers": [
                {"name": "server", "image": IMAGE, "restartPolicy": "Always", "volumeMounts": SHARED, **sidecar}
            ],
            "containers": [
                {"name": "writer", "image": IMAGE, "command": ["sh", "-c", app_command], "volumeMounts": SHARED}
            ],
        },
    }
    return json.dumps(doc)


def columns(cli: Cli, name: str) -> list[str]:
    rows = cli.run("get", "pods", name).stdout.splitlines()
    return rows[1].split() if len(rows) > 1 else []


def running_containers(uid: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.corral.pod.uid={uid}"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_sidecar_serves_what_the_app_writes(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    serving = {
        "ports": [{"containerPort": 80}],
        "readinessProbe": {"httpGet": {"path": "/index.html", "port": 80}, "periodSeconds": 1},
    }
    apply(cli, pod("served", agent.name, serving, "echo from-app > /www/index.html; exec sleep 3600", "Always"))
    wait_until(lambda: is_ready(cli, "served"), 60, "served Running and Ready", agent.log)

    assert columns(cli, "served")[1:3] == ["2/2", "Running"]
    status = get_pod(cli, "served")["status"]
    sidecar = status["initContainerStatuses"][0]
    assert (sidecar["name"], sidecar["started"], sidecar["ready"]) == ("server", True, True)
    assert "running" in sidecar["state"]
    # The sidecar is a container of its own on the pod network, at its own address.
    with urllib.request.urlopen(f"http://{sidecar['ip']}:80/index.html", timeout=5) as response:
        assert response.read().decode().strip() == "from-app"


def test_job_like_pod_succeeds_with_its_sidecar_running(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    forever = {"command": ["sh", "-c", "exec sleep 3600"]}
    apply(cli, pod("batch", agent.name, forever, "echo work > /www/out", "Never"))

    def succeeded() -> bool:
        return bool(get_pod(cli, "batch").get("status", {}).get("phase") == "Succeeded")

    wait_until(succeeded, 60, "batch Succeeded", agent.log)
    uid = get_pod(cli, "batch")["metadata"]["uid"]
    wait_until(lambda: not running_containers(uid), 30, "the sidecar stopped", agent.log)

    def sidecar_terminated() -> bool:
        return "terminated" in get_pod(cli, "batch")["status"]["initContainerStatuses"][0]["state"]

    wait_until(sidecar_terminated, 30, "the sidecar reported terminated", agent.log)
    status = get_pod(cli, "batch")["status"]
    assert status["phase"] == "Succeeded"
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"  # exit code 0
    assert columns(cli, "batch")[1:3] == ["0/2", "Succeeded"]
