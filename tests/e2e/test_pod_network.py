"""The pod network on three real agents (127.0.0.2-4) with Docker: pods are not exposed by accident.

Each node gets a pod subnet of the test cluster's CIDR; its Docker bridge has that subnet, and a pod
gets its own address in it. A container port without hostPort is published nowhere (`docker port`
shows nothing, the node's address does not answer on it) but its Service answers at its clusterIP
and by name from a client pod on another node, whose bridge is another one (the agents' DOCKER-USER
rules let the cluster's pods through). A container port with hostPort is published on that port.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import subprocess
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until
from tests.e2e.test_service_networking import has_endpoint, net_agents, server_args
from tests.e2e.test_services import PROXIES, answers, apply, cluster_ip, get

pytestmark = pytest.mark.docker

__all__ = ["net_agents", "server_args"]  # fixtures


# A CGI script of busybox's httpd answering the client's address as the pod sees it (`/cgi-bin/peer`).
PEER_CGI = (
    "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n'"
    " > /www/cgi-bin/peer && chmod +x /www/cgi-bin/peer"
)


def app(name: str, node: str, *, host_port: int = 0) -> str:
    """A pod on `node` answering `name` over HTTP on :8080 (hostPort when given), and its Service on 80;
    `/cgi-bin/peer` answers the client's address."""
    host = f", hostPort: {host_port}" if host_port else ""
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: corral-test/busybox:1
    command: ["sh", "-c", "echo {name} > /www/index.html; {PEER_CGI}; exec httpd -f -p 8080 -h /www"]
    ports:
    - {{name: http, containerPort: 8080{host}}}
    readinessProbe:
      tcpSocket: {{port: http}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
"""


def pod(cli: Cli, name: str) -> dict[str, Any]:
    result = cli.run("get", "pod", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def node(cli: Cli, name: str) -> dict[str, Any]:
    result = cli.run("get", "node", name, "-o", "json")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def published(pod_name: str) -> str:
    """What `docker port` shows for the pod's container."""
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.corral.pod.name={pod_name}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(ids) == 1, ids
    return subprocess.run(["docker", "port", ids[0]], capture_output=True, text=True, check=True).stdout.strip()


def test_a_pod_port_without_host_port_is_reached_only_through_the_pod_network(
    server: ServerProcess, net_agents: list[AgentProcess]
) -> None:
    cli = Cli(server.env)
    subnets = {a.name: node(cli, a.name)["spec"].get("podCIDR", "") for a in net_agents}
    print("pod subnets:", subnets)
    assert all(subnets.values()) and len(set(subnets.values())) == 3
    wide = cli.run("get", "nodes", "-o", "wide")
    assert wide.returncode == 0 and "POD-CIDR" in wide.stdout and subnets[net_agents[0].name] in wide.stdout

    apply(cli, app("hidden", net_agents[0].name))
    wait_until(functools.partial(has_endpoint, cli, "hidden", "default"), 90, "hidden ready", net_agents[0].log)
    pod_ip = pod(cli, "hidden")["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(subnets[net_agents[0].name])
    assert pod(cli, "hidden")["status"]["podIPs"] == [{"ip": pod_ip}]
    endpoints = cli.run("get", "endpoints", "hidden")
    print(endpoints.stdout)
    assert f"{pod_ip}:8080" in endpoints.stdout

    # Published nowhere: not on the node's address, nor any other port of this host.
    assert published("hidden") == ""
    for address in PROXIES:
        assert not answers(address, 8080)
    # Its Service answers at its clusterIP (the node proxy dials the pod's address).
    ip = cluster_ip(cli, "hidden")
    wait_until(lambda: answers(ip, 80), 30, "the clusterIP answers")
    assert get(ip, 80) == "hidden"

    # A client pod on another node (another bridge) reaches it by name and at its pod address.
    apply(
        cli,
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: {net_agents[1].name}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: corral-test/busybox:1
    command: ["sh", "-c"]
    args:
    - while true; do
        echo "name $(timeout 3 wget -q -O- http://hidden.default.svc.cluster.local/)";
        echo "pod $(timeout 3 wget -q -O- http://{pod_ip}:8080/)";
        echo "peer $(timeout 3 wget -q -O- http://{pod_ip}:8080/cgi-bin/peer)";
        sleep 1;
      done
""",
    )

    def client_log() -> set[str]:
        result = cli.run("logs", "client")
        return set(result.stdout.splitlines()) if result.returncode == 0 else set()

    try:
        wait_until(lambda: {"name hidden", "pod hidden"} <= client_log(), 90, "the client's answers", net_agents[1].log)
        # The pod sees the client pod's own address: pods reach pods without NAT (busybox's httpd
        # listens on IPv6 and gives an IPv4 peer as [::ffff:a.b.c.d]).
        client_ip = pod(cli, "client")["status"]["podIP"]
        wait_until(lambda: f"peer [::ffff:{client_ip}]" in client_log(), 30, "the client's own address", None)
    finally:
        print("client log:", sorted(client_log())[-10:])


def test_a_host_port_is_published_on_the_node_address(server: ServerProcess, net_agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    apply(cli, app("exposed", net_agents[2].name, host_port=18080))
    wait_until(functools.partial(has_endpoint, cli, "exposed", "default"), 90, "exposed ready", net_agents[2].log)
    assert "18080" in published("exposed") and "8080/tcp" in published("exposed")
    wait_until(lambda: answers(PROXIES[2], 18080), 30, "the hostPort answers")
    assert get(PROXIES[2], 18080) == "exposed"
    # The Service still goes to the pod's own address.
    pod_ip = pod(cli, "exposed")["status"]["podIP"]
    assert f"{pod_ip}:8080" in cli.run("get", "endpoints", "exposed").stdout
    assert get(cluster_ip(cli, "exposed"), 80) == "exposed"
