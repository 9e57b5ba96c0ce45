"""Services on three real agents with Docker: DNS and env discovery from a
container, the node proxies under load through a rolling update, endpoints
following readiness, blue-green switches and a canary's traffic weight.

Every agent's proxy listens on its own loopback address (127.0.0.2-4), so
three "machines" share this box. The Services are LoadBalancers (their port
on every node's address, as k3s' ServiceLB), so the load generators go
through one agent's address and count every request, bounded in count and
time; pods reach them by name at their clusterIP."""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, running_agents, wait_until

pytestmark = pytest.mark.docker

PROXIES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def service_port() -> int:
    """A port free on every proxy address (a LoadBalancer Service's port there)."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 30000)
        try:
            for address in PROXIES:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        return port
    raise AssertionError("no free port on the proxy addresses")


@pytest.fixture
def agents(server: ServerProcess, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    args = [(f"s{i}-{os.getpid()}", ("--proxy-address", a, "--dns-port", "53")) for i, a in enumerate(PROXIES)]
    with running_agents(server, tmp_path, args) as procs:
        yield procs


def backend(name: str, version: str, port: int, *, replicas: int = 3, strategy: str = "") -> str:
    """A Deployment answering `<version> <hostname>` on :80, and its LoadBalancer Service on `port`."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
{strategy}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: corral-test/busybox:1
        command: ["sh", "-c"]
        args:
        - echo "$VERSION $(hostname)" > /www/index.html; echo ok > /www/ready.html;
          exec httpd -f -p 80 -h /www
        env:
        - {{name: VERSION, value: "{version}"}}
        ports:
        - {{name: http, containerPort: 80}}
        readinessProbe:
          httpGet: {{path: /ready.html, port: http}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: LoadBalancer
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: {port}, targetPort: http}}
"""


def cluster_ip(cli: Cli, name: str, namespace: str = "default") -> str:
    result = cli.run("get", "svc", name, "-n", namespace, "-o", "json")
    assert result.returncode == 0, result.stderr
    ip: str = json.loads(result.stdout)["spec"]["clusterIP"]
    return ip


def apply(cli: Cli, manifest: str) -> None:
    result = cli.run("apply", "-f", "-", stdin=manifest.encode())
    assert result.returncode == 0, result.stdout + result.stderr


def pods(cli: Cli, app: str) -> list[dict[str, Any]]:
    result = cli.run("get", "pods", "-l", f"app={app}", "-o", "json")
    assert result.returncode == 0, result.stderr
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def endpoints(cli: Cli, name: str) -> list[dict[str, Any]]:
    """The ready backends of the Service's first port, as `get endpoints -o json` shows them."""
    result = cli.run("get", "endpoints", name, "-o", "json")
    if result.returncode != 0:
        return []
    data = json.loads(result.stdout)
    routes = data.get("items", [data])
    backends: list[dict[str, Any]] = []
    for route in routes:
        for port in route.get("ports", [])[:1]:
            backends.extend(port.get("backends", []))
    return backends


def get(address: str, port: int, path: str = "/") -> str:
    """One request on a new connection; raises on any failure."""
    conn = http.client.HTTPConnection(address, port, timeout=5)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}: {body[:100]}")
        return body
    finally:
        conn.close()


def answers(address: str, port: int) -> bool:
    try:
        get(address, port)
    except OSError:
        return False
    return True


@dataclass
class Load:
    """Requests through one proxy in a thread, each on a new connection,
    until stopped or `limit` requests or `deadline_s` seconds."""

    address: str
    port: int
    limit: int = 20_000
    deadline_s: float = 180.0
    bodies: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        end = time.monotonic() + self.deadline_s
        while not self._stop.is_set() and len(self.bodies) + len(self.failures) < self.limit and time.monotonic() < end:
            try:
                self.bodies.append(get(self.address, self.port))
            except OSError as e:
                self.failures.append(f"{type(e).__name__}: {e}")
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def versions(self) -> list[str]:
        return [body.split()[0] for body in self.bodies]


def versions_settled(cli: Cli, app: str, version: str, count: int) -> bool:
    current = pods(cli, app)
    wanted = [
        p
        for p in current
        if ready(p) and any(e.get("value") == version for e in p["spec"]["containers"][0].get("env", []))
    ]
    return len(current) == count and len(wanted) == count


def test_dns_env_and_a_killed_backend(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, backend("backend", "v1", port))
    wait_until(lambda: len(endpoints(cli, "backend")) == 3, 90, "3 ready endpoints", agents[0].log)
    listed = cli.run("get", "endpoints", "backend")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:2] == ["NAME", "ENDPOINTS"]
    # A client container resolves the Service by its short name through the
    # node-local DNS server and reaches it at its clusterIP.
    apply(
        cli,
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  replicas: 1
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      containers:
      - name: main
        image: corral-test/busybox:1
        command: ["sh", "-c"]
        args:
        - echo "env $BACKEND_SERVICE_HOST $BACKEND_SERVICE_PORT";
          while true; do
            ip=$(nslookup backend | awk '/^Name:/ {n=1} n && /^Address/ {print $NF}' | head -1);
            echo "resolved $ip";
            echo "answer $(wget -q -O- http://$ip:$BACKEND_SERVICE_PORT/)";
            sleep 1;
          done
""",
    )
    wait_until(lambda: [p for p in pods(cli, "client") if ready(p)], 60, "client running")
    client_pod = pods(cli, "client")[0]["metadata"]["name"]

    def client_log() -> str:
        result = cli.run("logs", client_pod)
        return result.stdout if result.returncode == 0 else ""

    wait_until(lambda: "answer v1 " in client_log(), 60, "the client's answer through the proxy", agents[0].log)
    log = client_log()
    env_line = next(line for line in log.splitlines() if line.startswith("env "))
    _, host, env_port = env_line.split()
    assert env_port == str(port)
    resolved = {line.split()[1] for line in log.splitlines() if line.startswith("resolved ") and len(line.split()) > 1}
    assert resolved == {host} == {cluster_ip(cli, "backend")}  # DNS and the env vars give the clusterIP
    # Killing a backend container: the proxy skips it (connect failure → next
    # endpoint); only requests in flight at the kill may fail.
    load = Load(PROXIES[0], port).start()
    wait_until(lambda: len(load.bodies) > 50, 30, "load running")
    victim = pods(cli, "backend")[0]["metadata"]["name"]
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.corral.pod.name={victim}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ids
    subprocess.run(["docker", "kill", *ids], capture_output=True, check=True)
    seen = len(load.bodies)
    wait_until(lambda: len(load.bodies) > seen + 300, 60, "requests after the kill")
    wait_until(lambda: len(endpoints(cli, "backend")) == 3, 90, "the backend restarted and ready again")
    load.stop()
    print(f"killed backend: {len(load.bodies)} ok, {len(load.failures)} failed: {load.failures[:3]}")
    assert len(load.failures) <= 2, load.failures
    assert len({body.split()[1] for body in load.bodies}) >= 3


def test_readiness_removes_an_endpoint_and_its_traffic(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, backend("ready-app", "v1", port))
    wait_until(lambda: len(endpoints(cli, "ready-app")) == 3, 90, "3 ready endpoints", agents[0].log)
    victim = pods(cli, "ready-app")[0]
    host = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.corral.pod.name={victim['metadata']['name']}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    hostname = subprocess.run(
        ["docker", "exec", host, "hostname"], capture_output=True, text=True, check=True
    ).stdout.strip()
    wait_until(lambda: any(hostname in get(PROXIES[1], port) for _ in range(6)), 30, "traffic to the victim")
    subprocess.run(["docker", "exec", host, "rm", "/www/ready.html"], check=True)
    wait_until(lambda: len(endpoints(cli, "ready-app")) == 2, 30, "the unready pod leaves the endpoints")
    names = {b["pod"] for b in endpoints(cli, "ready-app")}
    assert victim["metadata"]["name"] not in names
    # The proxies got the change too: no request reaches the unready pod.
    wait_until(lambda: all(hostname not in get(PROXIES[1], port) for _ in range(3)), 10, "proxy updated")
    bodies = [get(PROXIES[1], port) for _ in range(60)]
    assert not [b for b in bodies if hostname in b]
    assert len({b.split()[1] for b in bodies}) == 2
    # Ready again: it comes back.
    subprocess.run(["docker", "exec", host, "sh", "-c", "echo ok > /www/ready.html"], check=True)
    wait_until(lambda: len(endpoints(cli, "ready-app")) == 3, 30, "the pod back in the endpoints")


def test_rolling_update_under_load_fails_no_request(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, backend("roll", "v1", port, replicas=6))
    wait_until(lambda: len(endpoints(cli, "roll")) == 6, 120, "6 ready endpoints", agents[0].log)
    wait_until(lambda: answers(PROXIES[0], port), 30, "the proxy answers")
    load = Load(PROXIES[0], port).start()
    wait_until(lambda: len(load.bodies) > 50, 30, "load running")
    apply(cli, backend("roll", "v2", port, replicas=6))
    wait_until(lambda: versions_settled(cli, "roll", "v2", 6), 180, "rollout done", agents[0].log)
    wait_until(lambda: len(endpoints(cli, "roll")) == 6, 60, "6 ready endpoints after the rollout")
    seen = len(load.bodies)
    wait_until(lambda: len(load.bodies) > seen + 100, 30, "requests after the rollout")
    load.stop()
    versions = load.versions()
    print(f"rolling update under load: {len(load.bodies)} requests ok, {len(load.failures)} failed")
    assert load.failures == []
    assert versions[0] == "v1"
    assert versions[-1] == "v2"


BLUE_GREEN = """  strategy:
    type: BlueGreen
    blueGreen: {autoPromotionEnabled: true, scaleDownDelaySeconds: 120}"""

CANARY = """  strategy:
    type: Canary
    canary:
      steps:
      - setWeight: 10
      - pause: {}"""


def test_blue_green_switches_all_at_once_and_undoes(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, backend("bg", "v1", port, strategy=BLUE_GREEN))
    wait_until(lambda: len(endpoints(cli, "bg")) == 3, 90, "3 ready endpoints", agents[0].log)
    wait_until(lambda: answers(PROXIES[0], port), 30, "the proxy answers")
    blue = {p["metadata"]["name"] for p in pods(cli, "bg")}
    load = Load(PROXIES[0], port).start()
    wait_until(lambda: len(load.bodies) > 50, 30, "load running")
    apply(cli, backend("bg", "v2", port, strategy=BLUE_GREEN))
    wait_until(lambda: load.versions()[-20:] == ["v2"] * 20, 180, "traffic switched to v2", agents[0].log)
    # The previous version still runs (for an instant undo).
    assert blue <= {p["metadata"]["name"] for p in pods(cli, "bg")}
    undo = cli.run("rollout", "undo", "deploy/bg")
    assert undo.returncode == 0, undo.stderr
    undone_at = time.monotonic()
    wait_until(lambda: load.versions()[-20:] == ["v1"] * 20, 60, "traffic back on v1")
    first_v1 = time.monotonic() - undone_at
    load.stop()
    versions = load.versions()
    switches = sum(1 for a, b in itertools.pairwise(versions) if a != b)
    print(
        f"blue-green: {len(versions)} requests, {len(load.failures)} failed, {switches} switches, "
        f"undo visible within {first_v1:.1f}s"
    )
    assert load.failures == []
    # v1… then v2… then v1…: exactly two switches, never a mix.
    assert switches == 2, versions
    # Undo reused the blue pods: no new v1 pod was created.
    assert {
        p["metadata"]["name"]
        for p in pods(cli, "bg")
        if any(e.get("value") == "v1" for e in p["spec"]["containers"][0]["env"])
    } == blue


def canary_paused(cli: Cli, name: str) -> bool:
    """The Deployment's canary at its first pause with traffic split 10/90."""
    result = cli.run("get", "deploy", name, "-o", "json")
    status = json.loads(result.stdout).get("status", {})
    weights = sorted(t.get("weight", 0) for t in status.get("traffic", []))
    return status.get("canary", {}).get("currentStepIndex") == 1 and weights == [10, 90]


def test_canary_weight_is_enforced_by_the_proxy(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, backend("can", "v1", port, strategy=CANARY))
    wait_until(lambda: len(endpoints(cli, "can")) == 3, 90, "3 ready endpoints", agents[0].log)
    apply(cli, backend("can", "v2", port, strategy=CANARY))
    wait_until(lambda: canary_paused(cli, "can"), 120, "the canary at 10% and paused", agents[0].log)
    wait_until(lambda: len(endpoints(cli, "can")) == 4, 30, "4 ready endpoints")
    current = pods(cli, "can")
    by_version = {v: [p for p in current if p["spec"]["containers"][0]["env"][0]["value"] == v] for v in ("v1", "v2")}
    assert (len(by_version["v1"]), len(by_version["v2"])) == (3, 1)
    bodies = [get(PROXIES[2], port) for _ in range(2000)]
    share = sum(1 for b in bodies if b.startswith("v2 ")) / len(bodies)
    print(f"canary at 10% with 1 of 4 replicas: {share:.1%} of 2,000 requests")
    assert 0.07 <= share <= 0.13
    promote = cli.run("rollout", "promote", "deploy/can")
    assert promote.returncode == 0, promote.stdout + promote.stderr
    wait_until(lambda: versions_settled(cli, "can", "v2", 3), 120, "the canary promoted")
    wait_until(lambda: all(get(PROXIES[2], port).startswith("v2 ") for _ in range(20)), 30, "all traffic on v2")
