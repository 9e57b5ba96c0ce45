"""Container defaults and the Pod Security levels, end to end: a real server (default
level baseline) refuses a privileged pod, added capabilities beyond Docker's default set,
host namespaces, hostPath and the process runtime at apply with the field path and the
level; a Namespace's pod-security.kubernetes.io/enforce label overrides the level; a pod with
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
        'spec.containers[0].securityContext.privileged: true is not allowed by the "baseline" pod security level '
        "(cluster default: corral server --pod-security)"
    ) in result.stderr
    assert cli.run("get", "pod", "root").returncode != 0


BASELINE = 'is not allowed by the "baseline" pod security level (cluster default: corral server --pod-security)'
SYS_ADMIN = {"name": "main", "image": IMAGE, "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}


def test_what_takes_the_host_is_refused_by_default(server: ServerProcess) -> None:
    """Each of these is root on the host (or reads any host file) in a default install without the refusal."""
    cli = Cli(server.env)
    plain = {"name": "main", "image": IMAGE}
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        (SYS_ADMIN, {}, f'spec.containers[0].securityContext.capabilities.add[0]: "SYS_ADMIN" {BASELINE}'),
        (
            {**plain, "securityContext": {"capabilities": {"add": ["DAC_READ_SEARCH"]}}},
            {},
            f'spec.containers[0].securityContext.capabilities.add[0]: "DAC_READ_SEARCH" {BASELINE}',
        ),
        (
            {**plain, "securityContext": {"capabilities": {"add": ["ALL"]}}},
            {},
            f'spec.containers[0].securityContext.capabilities.add[0]: "ALL" {BASELINE}',
        ),
        (plain, {"hostNetwork": True}, f"spec.hostNetwork: true {BASELINE}"),
        (plain, {"hostPID": True}, f"spec.hostPID: true {BASELINE}"),
        (plain, {"hostIPC": True}, f"spec.hostIPC: true {BASELINE}"),
        (
            plain,
            {"volumes": [{"name": "run", "hostPath": {"path": "/run"}}]},
            f"spec.volumes[0].hostPath: a hostPath volume {BASELINE}",
        ),
        ({**plain, "command": ["id"]}, {"runtimeClassName": "process"}, 'spec.runtimeClassName: "process"'),
    ]
    for container, spec, expected in cases:
        result = cli.run("apply", "-f", "-", stdin=pod_manifest("takeover", "", container, **spec).encode())

        assert result.returncode != 0, (spec, container)
        assert expected in result.stderr
    assert cli.run("get", "pod", "takeover").returncode != 0


def namespace_manifest(name: str, labels: dict[str, str]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})


def in_namespace(manifest: str, namespace: str) -> bytes:
    doc = json.loads(manifest)
    doc["metadata"]["namespace"] = namespace
    return json.dumps(doc).encode()


def test_a_namespace_label_sets_the_level_of_its_pods(server: ServerProcess) -> None:
    cli = Cli(server.env)
    enforce = "pod-security.kubernetes.io/enforce"
    apply(cli, namespace_manifest("ops", {enforce: "privileged", f"{enforce}-version": "latest"}))
    apply(cli, namespace_manifest("apps", {enforce: "restricted"}))

    admitted = cli.run("apply", "-f", "-", stdin=in_namespace(pod_manifest("admin", "", SYS_ADMIN), "ops"))
    plain = pod_manifest("plain", "", {"name": "main", "image": IMAGE})
    refused = cli.run("apply", "-f", "-", stdin=in_namespace(plain, "apps"))
    bad = cli.run("apply", "-f", "-", stdin=namespace_manifest("odd", {enforce: "root"}).encode())
    listed = cli.run("get", "namespaces")
    described = cli.run("describe", "ns", "ops")
    deleted = cli.run("delete", "namespace", "ops")

    assert admitted.returncode == 0, admitted.stderr
    assert refused.returncode != 0
    assert (
        'spec.containers[0].securityContext.allowPrivilegeEscalation: must be false under the "restricted" '
        f'pod security level (namespace "apps" label {enforce})'
    ) in refused.stderr
    assert bad.returncode != 0
    assert f'metadata.labels.{enforce}: must be one of "privileged", "baseline", "restricted", got "root"' in bad.stderr
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()[1:]}
    assert rows["ops"][0] == "Active" and rows["apps"][0] == "Active"
    assert f"{enforce}=privileged" in described.stdout
    assert deleted.returncode == 0, deleted.stderr
    # Its pod goes with it; once it is gone, new pods there are held to the cluster default again.
    wait_until(lambda: cli.run("get", "namespace", "ops").returncode != 0, 30, "namespace ops deleted")
    assert cli.run("get", "pod", "admin", "-n", "ops").returncode != 0
    again = cli.run("apply", "-f", "-", stdin=in_namespace(pod_manifest("admin2", "", SYS_ADMIN), "ops"))
    assert again.returncode != 0
    assert BASELINE in again.stderr


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
        # Even so, what holds the Docker socket stays refused below the privileged level.
        for path in ("/", "/var/run", "/run"):
            socket_parent = pod_manifest(
                "socket", node, {"name": "main", "image": IMAGE}, volumes=[{"name": "h", "hostPath": {"path": path}}]
            )
            refused = cli.run("apply", "-f", "-", stdin=socket_parent.encode())
            assert refused.returncode != 0
            assert (
                f'spec.volumes[0].hostPath.path: "{path}" (it holds a container engine\'s socket or the '
                f"host's /proc) {BASELINE}; --allow-host-path admits only other paths"
            ) in refused.stderr
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
