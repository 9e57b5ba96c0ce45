"""The same pod lifecycle with `runtimeClassName: process` (no Docker involved)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import urllib.request
from typing import Any

import pytest

from tests.e2e.conftest import PROCESS_PODS, AgentProcess, Cli, ServerProcess, free_port, wait_until

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.fixture
def agent_runtimes() -> tuple[str, ...]:
    return ("process",)


@pytest.fixture
def server_args() -> tuple[str, ...]:
    return PROCESS_PODS


# The tests' files are under pytest's tmp dir (mode 0700, root's): their pods run as root, which
# they ask for (a root agent runs process pods as 65534 otherwise, and the privileged level allows it).
AS_ROOT = {"runAsUser": 0} if os.geteuid() == 0 else {}


def apply_pod(cli: Cli, name: str, node: str, container: dict[str, Any], **spec: Any) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "runtimeClassName": "process",
            "terminationGracePeriodSeconds": 5,
            "securityContext": AS_ROOT,
            "containers": [container],
            **spec,
        },
    }
    result = cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode())
    assert result.returncode == 0, result.stderr


def status_of(cli: Cli, name: str) -> dict[str, Any]:
    result = cli.run("get", "pod", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout).get("status", {})
    return status


def ready(cli: Cli, name: str) -> bool:
    status = status_of(cli, name)
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return status.get("phase") == "Running" and conditions.get("Ready") == "True"


def test_process_pod_lifecycle(server: ServerProcess, agent: AgentProcess, tmp_path: Any) -> None:
    cli = Cli(server.env)
    port = free_port()
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("served by a process\n")
    apply_pod(
        cli,
        "web",
        agent.name,
        {
            "name": "httpd",
            "image": "host",
            "command": [BUSYBOX, "httpd", "-f", "-v", "-p", f"127.0.0.1:{port}", "-h", str(www)],
            "ports": [{"containerPort": port, "hostPort": port}],
            "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1},
        },
    )
    apply_pod(
        cli, "crasher", agent.name, {"name": "main", "image": "host", "command": ["/bin/sh", "-c", "echo boom; exit 4"]}
    )
    wait_until(lambda: ready(cli, "web"), 60, "process pod ready", agent.log)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert response.read().decode() == "served by a process\n"
    status = status_of(cli, "web")["containerStatuses"][0]
    assert status["containerID"].startswith("process://")
    assert status["ports"][0]["hostPort"] == port
    wait_until(lambda: "response:200" in cli.run("logs", "web").stdout, 20, "access log via corral logs")
    wait_until(
        lambda: status_of(cli, "crasher").get("containerStatuses", [{}])[0].get("restartCount", 0) >= 2,
        60,
        "crasher restarts",
        agent.log,
    )
    crasher = status_of(cli, "crasher")["containerStatuses"][0]
    assert crasher["lastState"]["terminated"]["exitCode"] == 4
    assert "boom" in cli.run("logs", "crasher", "--previous").stdout
    assert cli.run("delete", "pod", "web").returncode == 0

    def port_closed() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) != 0

    wait_until(port_closed, 15, "process stopped after delete", agent.log)


def test_docker_pod_is_refused_by_a_process_only_node(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "needs-docker"},
        "spec": {"nodeName": agent.name, "containers": [{"name": "main", "image": "corral-test/busybox:1"}]},
    }
    assert cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode()).returncode == 0
    wait_until(lambda: status_of(cli, "needs-docker").get("phase") == "Failed", 30, "pod failed", agent.log)
    assert 'runtime "docker" is not offered' in status_of(cli, "needs-docker")["message"]


def pod_names(cli: Cli) -> dict[str, str]:
    """Pod name → STATUS column of `corral get pods`."""
    result = cli.run("get", "pods")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    return {row[0]: row[2] for row in rows if len(row) >= 3}


def test_delete_is_graceful_sigterm_first_and_terminating_meanwhile(
    server: ServerProcess, agent: AgentProcess, tmp_path: Any
) -> None:
    cli = Cli(server.env)
    marker = tmp_path / "marker"
    # The handler takes 3 s to "finish its requests", well inside the 20 s grace.
    script = (
        f"trap 'echo got-sigterm > {marker}.tmp; sleep 3; echo exited-cleanly >> {marker}.tmp; "
        f"mv {marker}.tmp {marker}; exit 0' TERM; echo started; while true; do sleep 0.1; done"
    )
    apply_pod(
        cli,
        "graceful",
        agent.name,
        {"name": "main", "image": "host", "command": ["/bin/sh", "-c", script]},
        terminationGracePeriodSeconds=20,
    )
    pidfile = tmp_path / "forced.pid"
    apply_pod(
        cli,
        "forced",
        agent.name,
        {
            "name": "main",
            "image": "host",
            "command": ["/bin/sh", "-c", f"echo $$ > {pidfile}; while true; do sleep 0.1; done"],
        },
    )
    wait_until(lambda: ready(cli, "graceful") and ready(cli, "forced"), 60, "pods ready", agent.log)
    wait_until(lambda: "started" in cli.run("logs", "graceful").stdout, 20, "the trap installed")

    deleted = cli.run("delete", "pod", "graceful")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip().endswith("deleted")
    seen: list[str] = []

    def gone() -> bool:
        status = pod_names(cli).get("graceful")
        if status is None:
            assert marker.exists(), "the pod object went before its process had exited"
            return True
        seen.append(status)
        return False

    wait_until(gone, 60, "the pod object deleted after its process exited", agent.log)
    assert "Terminating" in seen
    assert marker.read_text().split() == ["got-sigterm", "exited-cleanly"]
    assert "pod_deleted_after_termination" in server.log.read_text()

    forced = cli.run("delete", "pod", "forced", "--force", "--grace-period=0")
    assert forced.returncode == 0, forced.stderr
    assert "Immediate deletion does not wait for confirmation" in forced.stderr
    assert "forced" not in pod_names(cli), "a force delete does not wait for the node"
    pid = int(pidfile.read_text())
    wait_until(lambda: not process_alive(pid), 30, "the agent stopped the force-deleted pod", agent.log)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0, reason="the agent runs as root in CI")
def test_a_root_agent_runs_process_pods_as_nobody_unless_they_ask(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    script = "echo uid=$(id -u) gid=$(id -g); sleep 60"
    cases: list[tuple[str, dict[str, int], str]] = [
        ("nobody", {}, "65534"),
        ("asked", {"runAsUser": 1000, "runAsGroup": 1000}, "1000"),
    ]
    for name, context, uid in cases:
        # Ready only when the exec probe, too, runs as the pod's user (not as the agent's root).
        probe = {"exec": {"command": ["/bin/sh", "-c", f'test "$(id -u)" = {uid}']}, "periodSeconds": 1}
        apply_pod(
            cli,
            name,
            agent.name,
            {
                "name": "main",
                "image": "host",
                "command": ["/bin/sh", "-c", script],
                "securityContext": context,
                "readinessProbe": probe,
            },
            securityContext={},
        )

    for name, _, uid in cases:
        wait_until(functools.partial(ready, cli, name), 60, f"{name} ready", agent.log)
        assert f"uid={uid} gid={uid}" in cli.run("logs", name).stdout


def test_lifecycle_hooks_post_start_before_ready_pre_stop_before_sigterm(
    server: ServerProcess, agent: AgentProcess, tmp_path: Any
) -> None:
    cli = Cli(server.env)
    events = tmp_path / "events"
    # The main process logs its SIGTERM; postStart takes a moment, preStop logs before it.
    script = f"trap 'echo sigterm >> {events}; exit 0' TERM; echo main >> {events}; while true; do sleep 0.1; done"
    apply_pod(
        cli,
        "hooked",
        agent.name,
        {
            "name": "main",
            "image": "host",
            "command": ["/bin/sh", "-c", script],
            "lifecycle": {
                "postStart": {"exec": {"command": ["/bin/sh", "-c", f"sleep 1; echo post-start >> {events}"]}},
                "preStop": {"exec": {"command": ["/bin/sh", "-c", f"echo pre-stop >> {events}; sleep 1"]}},
            },
        },
        terminationGracePeriodSeconds=20,
    )
    wait_until(lambda: ready(cli, "hooked"), 60, "pod ready", agent.log)
    assert "post-start" in events.read_text().split(), "Ready before the postStart hook had finished"

    deleted = cli.run("delete", "pod", "hooked")
    assert deleted.returncode == 0, deleted.stderr
    wait_until(lambda: "hooked" not in pod_names(cli), 60, "the pod object deleted", agent.log)
    lines = events.read_text().split()
    assert lines[-2:] == ["pre-stop", "sigterm"], lines
    assert "container_pre_stop_done" in agent.log.read_text()
