"""startupProbe of every kind on both real runtimes: a Docker pod (httpGet, tcpSocket, exec)
and a process pod (httpGet, tcpSocket, exec, grpc) each become Ready with every container
`started`, which a container only is once its startup probe passed."""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

import pytest

from tests.e2e.conftest import PROCESS_PODS, AgentProcess, Cli, ServerProcess, free_port, wait_until
from tests.e2e.test_agent_docker import IMAGE, get_pod, is_ready
from tests.e2e.test_agent_process import AS_ROOT, BUSYBOX

pytestmark = pytest.mark.docker

# A grpc.health.v1 server answering SERVING, speaking the wire format by hand (no extra package).
GRPC_HEALTH = """
import asyncio, sys, grpc
async def check(request, context):
    return bytes([0x08, 0x01])
async def main():
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(check)
    health = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler})
    server.add_generic_rpc_handlers((health,))
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


@pytest.fixture
def server_args() -> tuple[str, ...]:
    return PROCESS_PODS


def probe(action: dict[str, Any]) -> dict[str, Any]:
    return {**action, "periodSeconds": 1, "failureThreshold": 30}


def apply(cli: Cli, name: str, node: str, containers: list[dict[str, Any]], **spec: Any) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": containers, **spec},
    }
    result = cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode())
    assert result.returncode == 0, result.stderr


def docker_containers() -> list[dict[str, Any]]:
    httpd = ["httpd", "-f", "-h", "/www", "-p"]
    return [
        {
            "name": "http",
            "image": IMAGE,
            "ports": [{"containerPort": 80}],
            "startupProbe": probe({"httpGet": {"path": "/", "port": 80}}),
        },
        {
            "name": "tcp",
            "image": IMAGE,
            "command": [*httpd, "81"],
            "ports": [{"containerPort": 81}],
            "startupProbe": probe({"tcpSocket": {"port": 81}}),
        },
        {
            "name": "exec",
            "image": IMAGE,
            "command": ["sh", "-c", "sleep 1; touch /tmp/up; sleep 3600"],
            "startupProbe": probe({"exec": {"command": ["test", "-e", "/tmp/up"]}}),
        },
    ]


def process_containers(tmp: str) -> list[dict[str, Any]]:
    http, tcp, grpc = free_port(), free_port(), free_port()
    httpd = [BUSYBOX, "httpd", "-f", "-h", tmp, "-p"]
    return [
        {
            "name": "http",
            "image": "host",
            "command": [*httpd, f"127.0.0.1:{http}"],
            "ports": [{"containerPort": http}],
            "startupProbe": probe({"httpGet": {"path": "/", "port": http}}),
        },
        {
            "name": "tcp",
            "image": "host",
            "command": [*httpd, f"127.0.0.1:{tcp}"],
            "ports": [{"containerPort": tcp}],
            "startupProbe": probe({"tcpSocket": {"port": tcp}}),
        },
        {
            "name": "exec",
            "image": "host",
            "command": ["/bin/sh", "-c", f"sleep 1; touch {tmp}/up; sleep 3600"],
            "startupProbe": probe({"exec": {"command": ["test", "-e", f"{tmp}/up"]}}),
        },
        {
            "name": "grpc",
            "image": "host",
            "command": [sys.executable, "-c", GRPC_HEALTH, str(grpc)],
            "ports": [{"containerPort": grpc}],
            "startupProbe": probe({"grpc": {"port": grpc}}),
        },
    ]


def test_startup_probes_of_every_kind_on_both_runtimes(
    server: ServerProcess, agent: AgentProcess, tmp_path: Any
) -> None:
    cli = Cli(server.env)
    (tmp_path / "index.html").write_text("up\n")
    apply(cli, "on-docker", agent.name, docker_containers())
    apply(
        cli,
        "on-process",
        agent.name,
        process_containers(str(tmp_path)),
        runtimeClassName="process",
        securityContext=AS_ROOT,
    )
    for name in ("on-docker", "on-process"):
        wait_until(functools.partial(is_ready, cli, name), 90, f"{name} Ready", agent.log)
        statuses = get_pod(cli, name)["status"]["containerStatuses"]
        assert {s["name"]: (s["started"], s["ready"], s["restartCount"]) for s in statuses} == {
            s["name"]: (True, True, 0) for s in statuses
        }
    assert len(get_pod(cli, "on-process")["status"]["containerStatuses"]) == 4
