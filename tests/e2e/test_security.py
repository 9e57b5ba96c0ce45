"""Container defaults and the cluster policy, end to end: a real server (default
policy) refuses a privileged pod at apply with the field path; a pod with
runAsUser and readOnlyRootFilesystem runs in Docker as that user and cannot write
its root filesystem; runAsNonRoot with a root image is a CreateContainerConfigError;
with --allow-host-path, a hostPath mounts read-only and an emptyDir is shared by a
pod's containers and removed with the pod."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, free_port, remove_node_containers, wait_until
from tests.e2e.test_agent_docker import IMAGE, apply, container_status, get_pod, pod_manifest

pytestmark = pytest.mark.docker


def test_privileged_pod_is_refused_at_apply_by_default(server: ServerProcess) -> None:
    cli = Cli(server.env)
    container = {"name": "main", "image": IMAGE, "securityContext": {"privileged": True}}

    result = cli.run("apply", "-f", "-", stdin=pod_manifest("root", "", container).encode())

    assert result.returncode != 0
    assert (
        "spec.containers[0].securityContext.privileged: privileged containers are forbidden by the cluster policy "
        "(corral server --allow-privileged)"
    ) in result.stderr
    assert cli.run("get", "pod", "root").returncode != 0


def test_pod_runs_as_its_user_on_a_read_only_root_filesystem(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    container: dict[str, Any] = {
        "name": "main",
        "image": IMAGE,
        "command": ["sh", "-c", "echo uid=$(id -u); touch /written && echo wrote || echo write failed"],
        "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": True},
    }
    apply(cli, pod_manifest("locked", agent.name, container, restartPolicy="Never"))

    logs = wait_until(
        lambda: (out := cli.run("logs", "locked").stdout) and "write failed" in out and out,
        60,
        "the pod's log",
        agent.log,
    )

    assert "uid=1000" in str(logs)
    assert "wrote" not in str(logs)


def test_run_as_non_root_with_a_root_image_does_not_start(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    container = {"name": "main", "image": IMAGE, "command": ["sleep", "60"], "securityContext": {"runAsNonRoot": True}}
    apply(cli, pod_manifest("nonroot", agent.name, container))

    waiting = wait_until(
        lambda: (
            container_status(cli, "nonroot").get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
            and container_status(cli, "nonroot")["state"]["waiting"]
        ),
        60,
        "CreateContainerConfigError",
        agent.log,
    )

    assert "runAsNonRoot and image will run as root" in str(waiting)


def test_allowed_host_path_and_a_shared_empty_dir_removed_with_the_pod(tmp_path: Path, cli_env: dict[str, str]) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = {**cli_env, "CORRAL_SERVER": address}
    server = ServerProcess(tmp_path / "data", address, env, tmp_path / "server.log", extra_args=("--allow-host-path",))
    server.start()
    node = f"node-{os.getpid()}-security"
    agent = AgentProcess(address, node, tmp_path / "agent", env, tmp_path / "agent.log", runtimes=("docker",))
    host = tmp_path / "host"
    host.mkdir()
    (host / "config").write_text("from the host\n")
    try:
        agent.start()
        cli = Cli(env)
        wait_until(lambda: cli.run("get", "node", node).returncode == 0, 30, "agent registered", agent.log)
        mounts = [{"name": "shared", "mountPath": "/shared"}, {"name": "host", "mountPath": "/host", "readOnly": True}]
        writer = {
            "name": "writer",
            "image": IMAGE,
            "command": ["sh", "-c", "echo hello > /shared/note; sleep 60"],
            "securityContext": {"runAsUser": 1000},
            "volumeMounts": mounts,
        }
        reader = {
            "name": "reader",
            "image": IMAGE,
            "volumeMounts": mounts,
            "command": [
                "sh",
                "-c",
                "until [ -f /shared/note ]; do sleep 0.1; done; cat /shared/note /host/config;"
                " touch /host/x || echo host read-only; sleep 60",
            ],
        }
        doc = json.loads(pod_manifest("volumes", node, writer))
        doc["spec"]["containers"].append(reader)
        doc["spec"]["volumes"] = [{"name": "shared", "emptyDir": {}}, {"name": "host", "hostPath": {"path": str(host)}}]
        apply(cli, json.dumps(doc))

        logs = wait_until(
            lambda: (out := cli.run("logs", "volumes", "-c", "reader").stdout) and "host read-only" in out and out,
            60,
            "the reader's log",
            agent.log,
        )
        # stdout and stderr reach the log through two pipes: touch's complaint may come first.
        out_lines = [line for line in str(logs).splitlines() if not line.startswith("touch:")]
        assert out_lines[:2] == ["hello", "from the host"]
        uid = get_pod(cli, "volumes")["metadata"]["uid"]
        assert (tmp_path / "agent" / "volumes" / uid / "shared" / "note").read_text() == "hello\n"

        assert cli.run("delete", "pod", "volumes", "--grace-period", "0").returncode == 0
        wait_until(lambda: not (tmp_path / "agent" / "volumes" / uid).exists(), 60, "emptyDir removed", agent.log)
        assert not (host / "x").exists()
    finally:
        agent.stop()
        remove_node_containers(node)
        server.stop()
