"""Autoscaling on a real server and agent with Docker: an HPA at 50% CPU scales
a Deployment whose pods burn CPU per request when a bounded load goes through
the Service, and back down once the load stops and the (shortened) scale-down
window has passed; an HPA on requests per second does the same from the node
proxy's connection counts. `corral get hpa` and the events say why."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, free_port, remove_node_containers, wait_until
from tests.e2e.test_services import service_port

pytestmark = pytest.mark.docker

PROXY = "127.0.0.2"


@pytest.fixture
def scaling_server(tmp_path: Path, cli_env: dict[str, str]) -> Iterator[ServerProcess]:
    address = f"127.0.0.1:{free_port()}"
    env = {**cli_env, "CORRAL_SERVER": address}
    proc = ServerProcess(
        tmp_path / "data", address, env, tmp_path / "server.log", extra_args=("--hpa-sync-period", "3")
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def scaling_agent(scaling_server: ServerProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    name = f"hpa-{os.getpid()}"
    proc = AgentProcess(
        scaling_server.address,
        name,
        tmp_path / "agent",
        scaling_server.env,
        tmp_path / "agent.log",
        runtimes=("docker",),
        extra_args=("--proxy-address", PROXY, "--dns-port", "0", "--metrics-period", "2"),
    )
    proc.start()
    cli = Cli(scaling_server.env)
    wait_until(lambda: cli.run("get", "node", name).returncode == 0, 30, "agent registered", proc.log)
    yield proc
    proc.stop()
    remove_node_containers(name)


# A CGI script that burns about 50-100 ms of CPU per request in busybox sh.
BURN = "#!/bin/sh\necho Content-Type: text/plain\necho\ni=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo burned\n"


def app(name: str, port: int) -> str:
    """One replica of busybox httpd serving /cgi-bin/burn, and its Service (JSON: YAML's subset)."""
    script = (
        f"mkdir -p /www/cgi-bin; printf '{BURN}' > /www/cgi-bin/burn; chmod +x /www/cgi-bin/burn; "
        "exec httpd -f -p 80 -h /www"
    )
    container = {
        "name": "web",
        "image": "corral-test/busybox:1",
        "command": ["sh", "-c"],
        "args": [script],
        "ports": [{"name": "http", "containerPort": 80}],
        "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        # A LoadBalancer: the load goes through the agent's address (PROXY:port).
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": name},
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }
    return f"{json.dumps(deployment)}\n---\n{json.dumps(service)}\n"


@dataclass
class Load:
    """Sequential requests through the proxy, bounded in count and time."""

    port: int
    path: str
    limit: int = 5_000
    deadline_s: float = 150.0
    pause_s: float = 0.05
    ok: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        end = time.monotonic() + self.deadline_s
        while not self._stop.is_set() and self.ok + self.failed < self.limit and time.monotonic() < end:
            conn = http.client.HTTPConnection(PROXY, self.port, timeout=5)
            try:
                conn.request("GET", self.path)
                conn.getresponse().read()
                self.ok += 1
            except OSError:
                self.failed += 1
            finally:
                conn.close()
            time.sleep(self.pause_s)

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)


def replicas(cli: Cli, name: str) -> int:
    result = cli.run("get", "deploy", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["spec"].get("replicas", 1))


def hpa_events(cli: Cli, name: str) -> list[str]:
    result = cli.run("get", "events", "-o", "json")
    assert result.returncode == 0, result.stderr
    return [
        f"{e.get('reason')}: {e.get('message')}"
        for e in json.loads(result.stdout)["items"]
        if e.get("involvedObject", {}).get("name") == name
        and e.get("involvedObject", {}).get("kind") == "HorizontalPodAutoscaler"
    ]


def test_cpu_autoscaling_up_under_load_and_down_after_the_window(
    scaling_server: ServerProcess,
    scaling_agent: AgentProcess,
) -> None:
    cli = Cli(scaling_server.env)
    port = service_port()
    result = cli.run("apply", "-f", "-", stdin=app("burn", port).encode())
    assert result.returncode == 0, result.stderr
    made = cli.run("autoscale", "deploy/burn", "--min", "1", "--max", "3", "--cpu-percent", "50")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "horizontalpodautoscaler.autoscaling/burn autoscaled" in made.stdout
    # A short scale-down window, so the test need not wait the default 300 s.
    patched = cli.run(
        "apply",
        "-f",
        "-",
        stdin=b"""
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 15}
""",
    )
    assert patched.returncode == 0, patched.stderr
    wait_until(
        lambda: (
            "cpu: " in cli.run("get", "hpa", "burn").stdout and "<unknown>" not in cli.run("get", "hpa", "burn").stdout
        ),
        60,
        "cpu metrics in the HPA",
        scaling_agent.log,
    )
    load = Load(port, "/cgi-bin/burn").start()
    started = time.monotonic()
    wait_until(lambda: replicas(cli, "burn") >= 2, 90, "scale up under load", scaling_agent.log)
    up_after = time.monotonic() - started
    shown = cli.run("get", "hpa", "burn")
    load.stop()
    stopped = time.monotonic()
    wait_until(lambda: replicas(cli, "burn") == 1, 150, "scale down after the window")
    down_after = time.monotonic() - stopped
    print(
        f"cpu HPA: scaled up {up_after:.0f}s after the load started ({load.ok} requests, {load.failed} failed), "
        f"down {down_after:.0f}s after it stopped"
    )
    assert shown.stdout.split()[:8] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE", "burn"]
    events = hpa_events(cli, "burn")
    assert any(e.startswith("SuccessfulRescale: New size: ") and "above target" in e for e in events), events
    assert "SuccessfulRescale: New size: 1; reason: All metrics below target" in events, events


def test_requests_per_second_autoscaling(scaling_server: ServerProcess, scaling_agent: AgentProcess) -> None:
    cli = Cli(scaling_server.env)
    port = service_port()
    result = cli.run(
        "apply",
        "-f",
        "-",
        stdin=app("rps", port).encode()
        + b"""
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: rps}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: rps}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Pods
    pods:
      metric: {name: requests_per_second}
      target: {type: AverageValue, averageValue: 4}
""",
    )
    assert result.returncode == 0, result.stderr
    wait_until(
        lambda: (
            "requests_per_second: " in cli.run("get", "hpa", "rps").stdout
            and "<unknown>" not in cli.run("get", "hpa", "rps").stdout
        ),
        60,
        "rps metrics in the HPA",
        scaling_agent.log,
    )
    # About 20 requests/s of a static page: 5 times the per-pod target.
    load = Load(port, "/", pause_s=0.05).start()
    wait_until(lambda: replicas(cli, "rps") >= 2, 90, "scale up on request rate", scaling_agent.log)
    load.stop()
    shown = cli.run("get", "hpa", "rps").stdout
    print(f"rps HPA after {load.ok} requests: {shown.splitlines()[-1]}")
    events = hpa_events(cli, "rps")
    assert any("requests_per_second" in e and e.startswith("SuccessfulRescale") for e in events), events
