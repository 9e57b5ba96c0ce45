"""Service networking on three real agents (127.0.0.2-4) with Docker: two Services on port 80 in
two namespaces answer by name from a client pod, a LoadBalancer Service answers on every agent's
address, and a UDP echo Service answers at its clusterIP and nodePort.

The agents run the default (userspace) data path: each puts the clusterIPs on its dummy
interface (lo here: no dummy module), and one of them binds each clusterIP:port on this shared
box. The UDP echo server is a process-runtime pod (python3): busybox's nc here has no -u."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    PROCESS_PODS,
    AgentProcess,
    Cli,
    ServerProcess,
    free_port,
    running_agents,
    wait_until,
)
from tests.e2e.test_services import PROXIES, answers, apply, cluster_ip, get, pods, ready, service_port

pytestmark = pytest.mark.docker


@pytest.fixture
def server_args() -> tuple[str, ...]:
    return PROCESS_PODS


@pytest.fixture
def net_agents(server: ServerProcess, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    args = [(f"n{i}-{os.getpid()}", ("--proxy-address", a, "--dns-port", "0")) for i, a in enumerate(PROXIES)]
    with running_agents(server, tmp_path, args, runtimes=("docker", "process")) as procs:
        yield procs


def web(namespace: str, port: int = 80, kind: str = "ClusterIP") -> str:
    """A Deployment answering `<namespace>` over HTTP on :80, and its Service `web` on `port`."""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: corral-test/busybox:1
        command: ["sh", "-c", "echo {namespace} > /www/index.html; exec httpd -f -p 80 -h /www"]
        ports:
        - {{name: http, containerPort: 80}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  type: {kind}
  selector: {{app: web}}
  ports:
  - {{name: http, port: {port}, targetPort: http}}
"""


def ready_endpoints(cli: Cli, name: str, namespace: str) -> int:
    result = cli.run("get", "endpoints", name, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        return 0
    data = json.loads(result.stdout)
    return sum(len(p.get("backends", [])) for route in data.get("items", [data]) for p in route.get("ports", []))


def has_endpoint(cli: Cli, name: str, namespace: str) -> bool:
    return ready_endpoints(cli, name, namespace) == 1


def test_two_services_on_port_80_answer_by_name_from_a_client_pod(
    server: ServerProcess, net_agents: list[AgentProcess]
) -> None:
    cli = Cli(server.env)
    for namespace in ("alpha", "beta"):
        apply(cli, web(namespace))
    for namespace in ("alpha", "beta"):
        wait_until(functools.partial(has_endpoint, cli, "web", namespace), 90, f"web.{namespace}", net_agents[0].log)
    listed = cli.run("get", "svc", "-A")
    assert listed.returncode == 0, listed.stderr
    print(listed.stdout)
    ips = {ns: cluster_ip(cli, "web", ns) for ns in ("alpha", "beta")}
    assert len(set(ips.values())) == 2 and all(ip.startswith("10.43.") for ip in ips.values())
    apply(
        cli,
        """
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: corral-test/busybox:1
    command: ["sh", "-c"]
    args:
    - while true; do
        for ns in alpha beta; do
          ip=$(nslookup web.$ns.svc.cluster.local | awk '/^Name:/ {n=1} n && /^Address/ {print $NF}' | head -1);
          echo "$ns $ip $(wget -q -O- http://web.$ns.svc.cluster.local:80/ || wget -q -O- http://$ip:80/)";
        done;
        sleep 1;
      done
""",
    )

    def client_log() -> str:
        result = cli.run("logs", "client")
        return result.stdout if result.returncode == 0 else ""

    wanted = {f"alpha {ips['alpha']} alpha", f"beta {ips['beta']} beta"}
    try:
        wait_until(lambda: wanted <= set(client_log().splitlines()), 90, "both answers by name", net_agents[0].log)
    finally:
        print("client log:", client_log()[-2000:])
    # This host reaches both at their clusterIPs too; neither is on the agents' addresses.
    assert get(ips["alpha"], 80) == "alpha" and get(ips["beta"], 80) == "beta"
    assert not answers(PROXIES[0], 80)


def test_a_load_balancer_answers_on_every_agent_address(server: ServerProcess, net_agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    port = service_port()
    apply(cli, web("lb", port, kind="LoadBalancer"))
    wait_until(lambda: ready_endpoints(cli, "web", "lb") == 1, 90, "the backend ready", net_agents[0].log)
    for address in PROXIES:
        wait_until(functools.partial(answers, address, port), 30, f"the LoadBalancer on {address}", net_agents[0].log)
        assert get(address, port) == "lb"
    service: dict[str, Any] = json.loads(cli.run("get", "svc", "web", "-n", "lb", "-o", "json").stdout)
    node_port = service["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    for address in PROXIES:
        wait_until(functools.partial(answers, address, node_port), 30, f"the nodePort on {address}")
    wait_until(
        lambda: (
            json.loads(cli.run("get", "svc", "web", "-n", "lb", "-o", "json").stdout)
            .get("status", {})
            .get("loadBalancer", {})
            .get("ingress")
        ),
        30,
        "status.loadBalancer.ingress",
    )
    row = cli.run("get", "svc", "web", "-n", "lb").stdout.splitlines()[1].split()
    assert row[1] == "LoadBalancer" and row[3] != "<pending>" and row[4] == f"{port}:{node_port}/TCP"


UDP_ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "while True:\n"
    "    d,a=s.recvfrom(2048)\n"
    "    s.sendto(b'echo '+d,a)\n"
)


def ask_udp(address: str, port: int, payload: bytes, deadline_s: float = 60.0) -> str:
    """Send `payload` every 200 ms until an answer comes (bounded by `deadline_s`)."""
    end = time.monotonic() + deadline_s
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < end:
            try:
                sock.sendto(payload, (address, port))
                return sock.recv(2048).decode()
            except OSError:
                continue
    raise AssertionError(f"no UDP answer from {address}:{port} within {deadline_s}s")


def test_a_udp_echo_service_answers(server: ServerProcess, net_agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    python = shutil.which("python3") or "/usr/bin/python3"
    echo_port = free_port()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "echo", "labels": {"app": "echo"}},
        "spec": {
            "runtimeClassName": "process",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 0} if os.geteuid() == 0 else {},
            "containers": [
                {
                    "name": "echo",
                    "image": "process",
                    "command": [python, "-c", UDP_ECHO, str(echo_port)],
                    "ports": [{"name": "echo", "containerPort": echo_port, "protocol": "UDP"}],
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "echo"},
            "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "echo"}],
        },
    }
    apply(cli, f"{json.dumps(pod)}\n---\n{json.dumps(service)}\n")
    wait_until(lambda: [p for p in pods(cli, "echo") if ready(p)], 60, "the echo pod running", net_agents[0].log)
    wait_until(lambda: ready_endpoints(cli, "echo", "default") == 1, 60, "the echo endpoint", net_agents[0].log)
    assert ask_udp(cluster_ip(cli, "echo"), 53, b"hello") == "echo hello"
    node_port = json.loads(cli.run("get", "svc", "echo", "-o", "json").stdout)["spec"]["ports"][0]["nodePort"]
    assert ask_udp(PROXIES[1], node_port, b"again") == "echo again"
