"""configMap and secret volumes on real Docker: a pod serving a ConfigMap file over httpd serves the
new content after `corral apply` of the changed ConfigMap, without a container restart, while a
reader looping over the file never sees it missing or partial; the secret volume is a tmpfs (in
the container and on the host); a subPath file mounts and, as in Kubernetes, does not update;
fsGroup owns the files; the tmpfs is unmounted and the directories removed with the pod."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until
from tests.e2e.test_agent_docker import IMAGE, apply, container_status, docker_ids, get_pod, highest_attempt, is_ready

pytestmark = pytest.mark.docker


@pytest.fixture
def agent_runtimes() -> tuple[str, ...]:
    return ("docker",)


def site(text: str) -> str:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "site"}, "data": {"index.html": text}}
    return json.dumps(doc)


SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}
# Prints BAD whenever the served file is missing or not one whole version (each is 4 KiB of one letter + newline).
READER = (
    "cat /secret/password >/dev/null && echo secret-readable-as-$(id -u) || echo BAD-secret; "
    "n=0; while [ $n -lt 100000 ]; do c=$(cat /www/index.html 2>/dev/null); "
    'case "$c" in "") echo BAD-missing;; *) l=${#c}; [ $l -eq 4096 ] || echo BAD-length-$l;; esac; '
    "n=$((n+1)); sleep 0.02; done; sleep 3600"
)


def version(letter: str) -> str:
    return letter * 4096 + "\n"


def pod(node: str) -> dict[str, Any]:
    www = {"name": "www", "mountPath": "/www"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"fsGroup": 2000, "supplementalGroups": [3000]},
            "containers": [
                {
                    "name": "web",
                    "image": IMAGE,
                    "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
                    "ports": [{"containerPort": 80}],
                    "readinessProbe": {"httpGet": {"path": "/index.html", "port": 80}, "periodSeconds": 1},
                    "volumeMounts": [
                        www,
                        {"name": "creds", "mountPath": "/secret"},
                        {"name": "www", "mountPath": "/pinned/index.html", "subPath": "index.html"},
                    ],
                },
                {  # not root: reads the 0644 page, and the 0440 secret through fsGroup
                    "name": "reader",
                    "image": IMAGE,
                    "command": ["sh", "-c", READER],
                    "securityContext": {"runAsUser": 1000},
                    "volumeMounts": [www, {"name": "creds", "mountPath": "/secret"}],
                },
            ],
            "volumes": [
                {"name": "www", "configMap": {"name": "site"}},
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440}},
            ],
        },
    }


def served(address: str) -> str:
    """The page the pod serves at `address` (its pod IP, port 80: on the pod network, published nowhere)."""
    try:
        with urllib.request.urlopen(f"http://{address}:80/index.html", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def in_container(container_id: str, *command: str) -> str:
    done = subprocess.run(["docker", "exec", container_id, *command], capture_output=True, text=True, check=False)
    return done.stdout


def host_mounts() -> str:
    return Path("/proc/mounts").read_text()


@pytest.fixture
def unmounted(agent: AgentProcess) -> Iterator[AgentProcess]:
    """The agent; after the test, no tmpfs of its left mounted (a failed test leaves its pod behind)."""
    yield agent
    for line in host_mounts().splitlines():
        target = line.split()[1]
        if target.startswith(f"{agent.data_dir}/"):
            subprocess.run(["umount", target], capture_output=True, check=False)


def test_config_map_files_update_in_place_and_secrets_live_on_tmpfs(
    server: ServerProcess, unmounted: AgentProcess
) -> None:
    agent = unmounted
    cli = Cli(server.env)
    apply(cli, json.dumps(pod(agent.name)))
    wait_until(
        lambda: (
            (container_status(cli, "web").get("state", {}).get("waiting", {}).get("reason"))
            == "CreateContainerConfigError"
        ),
        30,
        "the missing configmap reported",
        agent.log,
    )
    assert container_status(cli, "web")["state"]["waiting"]["message"] == 'volume "www": configmap "site" not found'
    apply(cli, site(version("a")))
    apply(cli, json.dumps(SECRET))
    wait_until(lambda: is_ready(cli, "web"), 60, "web Running and Ready", agent.log)
    address = get_pod(cli, "web")["status"]["podIP"]
    assert served(address) == version("a")

    uid = get_pod(cli, "web")["metadata"]["uid"]
    [web] = docker_ids(f"io.corral.pod.uid={uid}", "io.corral.container=web")
    [reader] = docker_ids(f"io.corral.pod.uid={uid}", "io.corral.container=reader")
    # The secret volume is a tmpfs, in the container and on the host; fsGroup owns its files.
    assert " /secret tmpfs " in in_container(web, "cat", "/proc/mounts")
    secret_dir = agent.data_dir / "volumes" / uid / "creds"
    assert f" {secret_dir} tmpfs " in host_mounts()
    assert in_container(web, "cat", "/secret/password") == "s3cret"
    listing = in_container(web, "ls", "-lL", "/secret/password").split()
    assert listing[0] == "-r--r-----" and listing[3] == "2000"
    assert in_container(web, "id", "-G").split() == ["0", "2000", "3000"]
    # ..data and the key's symlink, as the kubelet lays them out.
    assert in_container(web, "readlink", "/www/index.html").strip() == "..data/index.html"
    assert in_container(web, "cat", "/pinned/index.html") == version("a")

    began = time.monotonic()
    apply(cli, site(version("b")))
    wait_until(lambda: served(address) == version("b"), 60, "the new content served", agent.log)
    print(f"\nconfigmap apply -> new file served: {time.monotonic() - began:.2f} s")

    assert container_status(cli, "web")["restartCount"] == 0
    assert highest_attempt("web") == 0
    assert in_container(web, "cat", "/pinned/index.html") == version("a")  # a subPath does not update
    for letter in "cdef":  # more swaps under the looping reader
        apply(cli, site(version(letter)))
        wanted = version(letter)
        wait_until(lambda: served(address) == wanted, 60, "the next content served", agent.log)  # noqa: B023
    logs = cli.run("logs", "web", "-c", "reader").stdout
    assert "BAD" not in logs and "secret-readable-as-1000" in logs, logs
    # The old versions go: the current one and the one it replaced (until the next write) stay.
    assert in_container(reader, "sh", "-c", "ls -a /www | tr '\\n' ' '").count("..20") == 2

    # Nowhere on the node's disk: no file of the agent's data dir outside the tmpfs holds it.
    on_disk = [
        path
        for path in agent.data_dir.rglob("*")
        if secret_dir not in path.parents
        and path.is_file()
        and not path.is_symlink()
        and b"s3cret" in path.read_bytes()
    ]
    assert on_disk == []

    assert cli.run("delete", "pod", "web", "--grace-period", "0").returncode == 0
    wait_until(lambda: not (agent.data_dir / "volumes" / uid).exists(), 60, "volumes removed", agent.log)
    assert str(secret_dir) not in host_mounts()
