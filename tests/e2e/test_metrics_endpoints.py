"""`corral server` and `corral agent` (process runtime) as real processes, each
serving /metrics: a pod scheduled, probed and reached through the node proxy,
then both endpoints fetched over HTTP and parsed as Prometheus parses them."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    PROCESS_PODS,
    AgentProcess,
    Cli,
    ServerProcess,
    free_port,
    kill_process_containers,
    wait_until,
)
from tests.promtext import Key, families, parse, scrape, value

pytestmark = pytest.mark.timeout(240)

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
OBJECTS = "corral.v1.ObjectService"
NODES = "corral.v1.NodeService"


@pytest.fixture
def metrics_server(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[tuple[ServerProcess, str]]:
    address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = ServerProcess(
        tmp_path / "data",
        address,
        {**cli_env, "CORRAL_SERVER": address},
        tmp_path / "server.log",
        extra_args=("--metrics-listen", metrics, *PROCESS_PODS),
    )
    proc.start()
    yield proc, metrics
    proc.stop()


@pytest.fixture
def metrics_agent(metrics_server: tuple[ServerProcess, str], tmp_path: Path) -> Iterator[tuple[AgentProcess, str]]:
    server, _ = metrics_server
    port = free_port()
    name = f"metrics-{os.getpid()}-{time.monotonic_ns() % 100000}"
    # ":PORT": the first proxy address, here the advertised 127.0.0.1.
    proc = AgentProcess(
        server.address,
        name,
        tmp_path / "agent",
        server.env,
        tmp_path / "agent.log",
        runtimes=("process",),
        extra_args=("--metrics-listen", f":{port}", "--dns-port", "0"),
    )
    proc.start()
    cli = Cli(server.env)
    wait_until(lambda: cli.run("get", "node", name).returncode == 0, 30, "agent registered", proc.log)
    yield proc, f"127.0.0.1:{port}"
    proc.stop()
    kill_process_containers(proc.data_dir)


def manifest(http_port: int, service_port: int, www: Path) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "runtimeClassName": "process",
            "terminationGracePeriodSeconds": 5,
            # www is under pytest's tmp dir (0700, root's): run as root (a root agent's default is 65534).
            "securityContext": {"runAsUser": 0},
            "containers": [
                {
                    "name": "httpd",
                    "image": "host",
                    "command": [BUSYBOX, "httpd", "-f", "-p", f"127.0.0.1:{http_port}", "-h", str(www)],
                    "ports": [{"name": "http", "containerPort": http_port, "hostPort": http_port}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": http_port}, "periodSeconds": 1},
                    "livenessProbe": {"tcpSocket": {"port": http_port}, "periodSeconds": 1},
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {  # a LoadBalancer: reached on the agent's address (127.0.0.1:<port>)
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": service_port, "targetPort": "http"}],
        },
    }
    return "\n---\n".join(json.dumps(doc) for doc in (pod, service))


def get_through_proxy(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            body: bytes = response.read()
            return body.decode()
    except OSError:
        return ""


def ready(cli: Cli) -> bool:
    result = cli.run("get", "pod", "web", "-o", "json")
    if result.returncode != 0:
        return False
    status = json.loads(result.stdout).get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return status.get("phase") == "Running" and conditions.get("Ready") == "True"


def scrape_until(address: str, what: str, check: Callable[[dict[Key, float]], bool], log: Path) -> dict[Key, float]:
    """Scrape until `check` holds; the last scrape."""

    def attempt() -> dict[Key, float] | None:
        samples = parse(scrape(address))
        return samples if check(samples) else None

    found = wait_until(attempt, 60, what, log)
    assert isinstance(found, dict)
    return found


def test_server_and_agent_metrics_endpoints(
    metrics_server: tuple[ServerProcess, str], metrics_agent: tuple[AgentProcess, str], tmp_path: Path
) -> None:
    server, server_metrics = metrics_server
    agent, agent_metrics = metrics_agent
    cli = Cli(server.env)
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("through the proxy\n")
    http_port, service_port = free_port(), free_port()
    applied = cli.run("apply", "-f", "-", stdin=manifest(http_port, service_port, www).encode())
    assert applied.returncode == 0, applied.stderr
    wait_until(lambda: ready(cli), 90, "pod ready", agent.log)
    wait_until(
        lambda: get_through_proxy(service_port) == "through the proxy\n", 60, "the Service via the proxy", agent.log
    )

    agent_samples = scrape_until(
        agent_metrics,
        "proxy and probe series",
        lambda s: (
            (value(s, "corral_agent_proxy_connections_total", service="default/web") or 0) >= 1
            and (value(s, "corral_agent_probe_results_total", probe="readiness", result="success") or 0) >= 1
            and (value(s, "corral_agent_probe_results_total", probe="liveness", result="success") or 0) >= 1
            and value(s, "corral_agent_pods", phase="Running") == 1
        ),
        agent.log,
    )
    assert (value(agent_samples, "corral_agent_proxy_bytes_total", service="default/web", direction="in") or 0) > 0
    assert (value(agent_samples, "corral_agent_proxy_bytes_total", service="default/web", direction="out") or 0) > 0
    assert value(agent_samples, "corral_agent_proxy_connections_active", service="default/web") is not None
    assert value(agent_samples, "corral_agent_proxy_connect_failures_total", service="default/web") is not None
    assert value(agent_samples, "corral_agent_connected") == 1
    assert families(scrape(agent_metrics))["corral_agent_probe_results"] == "counter"

    server_samples = scrape_until(
        server_metrics,
        "pod Running in the leader's cache",
        lambda s: value(s, "corral_pods", phase="Running") == 1,
        server.log,
    )
    assert value(server_samples, "corral_leader") == 1
    assert (value(server_samples, "corral_api_requests_total", method=f"{OBJECTS}/Apply", code="OK") or 0) >= 2
    assert (value(server_samples, "corral_api_requests_total", method=f"{NODES}/Register", code="OK") or 0) >= 1
    assert (value(server_samples, "corral_api_request_duration_seconds_count", method=f"{OBJECTS}/Apply") or 0) >= 2
    assert value(server_samples, "corral_api_streams_active", method=f"{NODES}/WatchAssignments") == 1
    assert (value(server_samples, "corral_scheduling_attempts_total", result="scheduled") or 0) >= 1
    assert (value(server_samples, "corral_scheduling_latency_seconds_count") or 0) >= 1
    age = value(server_samples, "corral_node_heartbeat_age_seconds", node=agent.name)
    assert age is not None and 0 <= age < 60
    assert (value(server_samples, "corral_reconcile_duration_seconds_count", controller="endpoints") or 0) >= 1
    assert value(server_samples, "corral_workqueue_depth", controller="scheduler") is not None
