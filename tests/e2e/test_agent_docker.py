"""A real server and a real agent running pods in Docker, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until

pytestmark = pytest.mark.docker

IMAGE = "corral-test/busybox:1"


def pod_manifest(name: str, node: str, container: dict[str, Any], **spec: Any) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": "agent"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 3, "containers": [container], **spec},
    }
    return json.dumps(doc)


def apply(cli: Cli, manifest: str) -> None:
    result = cli.run("apply", "-f", "-", stdin=manifest.encode())
    assert result.returncode == 0, result.stderr


def get_pod(cli: Cli, name: str) -> dict[str, Any]:
    result = cli.run("get", "pod", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def container_status(cli: Cli, name: str) -> dict[str, Any]:
    statuses = get_pod(cli, name).get("status", {}).get("containerStatuses", [])
    return statuses[0] if statuses else {}


def docker_ids(*labels: str) -> list[str]:
    """The containers carrying every one of ``labels`` (name a node too: other runs may share the engine)."""
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", *filters], capture_output=True, text=True, check=True
    ).stdout
    return sorted(out.split())


def highest_attempt(pod_name: str) -> int:
    """The newest attempt label among a pod's Docker containers (its restart count)."""
    attempts = [0]
    for container_id in docker_ids(f"io.corral.pod.name={pod_name}"):
        out = subprocess.run(
            ["docker", "inspect", "-f", '{{index .Config.Labels "io.corral.attempt"}}', container_id],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        attempts.append(int(out or 0))
    return max(attempts)


def is_ready(cli: Cli, name: str) -> bool:
    pod = get_pod(cli, name)
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conditions.get("Ready") == "True"


HTTPD = {
    "name": "httpd",
    "image": IMAGE,
    "ports": [{"containerPort": 80}],
    "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1},
}


def test_pod_runs_serves_logs_and_is_deleted(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    apply(cli, pod_manifest("web", agent.name, HTTPD))
    wait_until(lambda: is_ready(cli, "web"), 60, "web Running and Ready", agent.log)
    # On the pod network: reached at the pod's own address, published nowhere (no hostPort).
    assert container_status(cli, "web").get("ports", []) == []
    pod_ip = get_pod(cli, "web")["status"]["podIP"]
    with urllib.request.urlopen(f"http://{pod_ip}:80/", timeout=5) as response:
        assert response.read().decode().strip() == "corral test page"
    logs = wait_until(
        lambda: (out := cli.run("logs", "web").stdout) and "response:200" in out and out,
        20,
        "httpd access log in corral logs",
    )
    assert "response:200" in str(logs)
    uid = get_pod(cli, "web")["metadata"]["uid"]
    assert len(docker_ids(f"io.corral.pod.uid={uid}")) == 1
    assert cli.run("delete", "pod", "web").returncode == 0
    # busybox httpd is PID 1 and ignores SIGTERM: it goes when the 3 s grace period ends.
    wait_until(lambda: not docker_ids(f"io.corral.pod.uid={uid}"), 15, "container removed", agent.log)


def test_crash_loop_liveness_and_readiness(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    apply(
        cli,
        pod_manifest(
            "crasher", agent.name, {"name": "main", "image": IMAGE, "command": ["sh", "-c", "echo boom; exit 3"]}
        ),
    )
    apply(
        cli,
        pod_manifest(
            "unlive",
            agent.name,
            {
                **HTTPD,
                "readinessProbe": None,
                "livenessProbe": {"tcpSocket": {"port": 81}, "periodSeconds": 1, "failureThreshold": 2},
            },
        ),
    )
    apply(
        cli,
        pod_manifest(
            "unready", agent.name, {**HTTPD, "readinessProbe": {"tcpSocket": {"port": 81}, "periodSeconds": 1}}
        ),
    )
    seen_backoff: list[str] = []

    def crash_looping() -> bool:
        status = container_status(cli, "crasher")
        waiting = status.get("state", {}).get("waiting", {})
        if waiting.get("reason") == "CrashLoopBackOff":
            seen_backoff.append(waiting.get("message", ""))
        return status.get("restartCount", 0) >= 2 and bool(seen_backoff)

    wait_until(crash_looping, 60, "crasher restarted twice in CrashLoopBackOff", agent.log)
    crasher = container_status(cli, "crasher")
    assert crasher["lastState"]["terminated"]["exitCode"] == 3
    assert "back-off" in seen_backoff[0]
    wait_until(
        lambda: container_status(cli, "unlive").get("restartCount", 0) >= 1,
        60,
        "liveness failure restarts the container",
        agent.log,
    )
    unready = container_status(cli, "unready")
    assert unready["restartCount"] == 0
    assert unready["ready"] is False
    assert "running" in unready["state"]
    assert get_pod(cli, "unready")["status"]["phase"] == "Running"


def test_agent_kill9_adopts_running_containers(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    names = [f"keep-{i}" for i in range(5)]
    for name in names:
        apply(cli, pod_manifest(name, agent.name, HTTPD))
    for name in names:
        wait_until(lambda n=name: is_ready(cli, n), 90, f"{name} ready", agent.log)  # type: ignore[misc]
    before = docker_ids(f"io.corral.node={agent.name}")
    assert len(before) == 5
    agent.kill9()
    assert docker_ids(f"io.corral.node={agent.name}") == before
    marker = agent.log.read_text().count("assignments_applied")
    agent.start()
    wait_until(
        lambda: agent.log.read_text().count("assignments_applied") > marker,
        30,
        "restarted agent applied its assignments",
        agent.log,
    )
    for name in names:
        wait_until(lambda n=name: is_ready(cli, n), 30, f"{name} still ready", agent.log)  # type: ignore[misc]
    assert docker_ids(f"io.corral.node={agent.name}") == before
    assert all(container_status(cli, n)["restartCount"] == 0 for n in names)


def test_pods_survive_control_plane_outage(server: ServerProcess, agent: AgentProcess, tmp_path: Path) -> None:
    cli = Cli(server.env)
    apply(cli, pod_manifest("steady", agent.name, HTTPD))
    apply(
        cli,
        pod_manifest("flaky", agent.name, {"name": "main", "image": IMAGE, "command": ["sh", "-c", "sleep 1; exit 1"]}),
    )
    wait_until(lambda: is_ready(cli, "steady"), 60, "steady ready", agent.log)
    steady_ids = docker_ids("io.corral.pod.name=steady", f"io.corral.node={agent.name}")
    server.kill9()
    start_attempt = highest_attempt("flaky")
    wait_until(
        lambda: highest_attempt("flaky") >= start_attempt + 2,
        60,
        "flaky restarted twice without a control plane",
        agent.log,
    )
    assert docker_ids("io.corral.pod.name=steady", f"io.corral.node={agent.name}") == steady_ids
    server.start()
    wait_until(
        lambda: container_status(cli, "flaky").get("restartCount", 0) >= start_attempt + 2,
        60,
        "status caught up after the outage",
        agent.log,
    )
    assert is_ready(cli, "steady")
