"""Ingress with the kernel data path (`corral agent --proxy-mode nftables`) on three
real agents with Docker: the managed proxy (nginx where installed, else Caddy) dials the Service's clusterIP, so an
endpoint change (a scale-up here) is no config swap, and a client's idle keep-alive
connection to the ingress carries its next request on the same TCP connection; the
kernel picks the endpoint per request, so a canary at 10% gets 10% of the requests of
one keep-alive client. (busybox httpd closes after each answer, so the proxy reconnects
for every request here whatever its upstream keep-alive; that it is off, so that a
backend that keeps connections open is not pinned, is a unit test's.)"""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, running_agents, wait_until
from tests.e2e.test_ingress import app, free_ports
from tests.e2e.test_services import CANARY, PROXIES, apply, canary_paused, endpoints

pytestmark = pytest.mark.docker

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}}}
spec:
  rules:
  - host: {name}.test
    http:
      paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {name}, port: {{name: web}}}}}}}}]
"""


@pytest.fixture
def http_port() -> int:
    return free_ports(1)[0]


@pytest.fixture
def kernel_agents(server: ServerProcess, tmp_path: Path, http_port: int) -> Iterator[list[AgentProcess]]:
    kernel = ("--dns-port", "0", "--proxy-mode", "nftables", "--ingress-http-port", str(http_port))
    args = [
        (f"ik{i}-{os.getpid()}", ("--proxy-address", a, *kernel, "--ingress-https-port", "0"))
        for i, a in enumerate(PROXIES)
    ]
    with running_agents(server, tmp_path, args) as procs:
        yield procs


def fresh_get(port: int, host: str = "keep.test") -> str:
    """One request on a new connection (the answer's body, '' when it failed)."""
    conn = http.client.HTTPConnection(PROXIES[0], port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        body = response.read().decode().strip()
        return body if response.status == 200 else ""
    except OSError:
        return ""
    finally:
        conn.close()


def test_an_endpoint_change_keeps_an_idle_keep_alive_client_connection(
    server: ServerProcess, kernel_agents: list[AgentProcess], http_port: int
) -> None:
    cli = Cli(server.env)
    (service_port,) = free_ports(1)
    apply(cli, app("keep", "keep", service_port, replicas=1))
    apply(cli, INGRESS.format(name="keep"))
    wait_until(lambda: len(endpoints(cli, "keep")) == 1, 90, "1 ready endpoint", kernel_agents[0].log)
    wait_until(lambda: fresh_get(http_port).startswith("keep "), 30, "the ingress answers", kernel_agents[0].log)
    client = http.client.HTTPConnection(PROXIES[0], http_port, timeout=5)

    def kept_get() -> str:
        client.request("GET", "/", headers={"Host": "keep.test"})
        response = client.getresponse()
        assert response.status == 200
        return response.read().decode().strip()

    try:
        first = kept_get()
        sock = client.sock
        apply(cli, app("keep", "keep", service_port, replicas=2))
        wait_until(lambda: len(endpoints(cli, "keep")) == 2, 90, "2 ready endpoints", kernel_agents[0].log)
        # This node's kernel has the new endpoint once new connections reach both pods.
        seen: set[str] = set()

        def both_pods_answer() -> bool:
            seen.add(fresh_get(http_port))
            return len(seen - {""}) >= 2

        wait_until(both_pods_answer, 30, "both pods answer through the ingress", kernel_agents[0].log)
        second = kept_get()  # on the connection opened before the change
        assert client.sock is sock and sock is not None
        assert first.startswith("keep ") and second.startswith("keep ")
        print(f"ingress over nftables: the keep-alive connection carried a request across an endpoint change: {second}")
    finally:
        client.close()


def test_a_canary_gets_its_weight_of_one_keep_alive_clients_requests(
    server: ServerProcess, kernel_agents: list[AgentProcess], http_port: int
) -> None:
    cli = Cli(server.env)
    (service_port,) = free_ports(1)
    apply(cli, app("kcan", "v1", service_port, replicas=3, strategy=CANARY))
    apply(cli, INGRESS.format(name="kcan"))
    wait_until(lambda: len(endpoints(cli, "kcan")) == 3, 90, "3 ready endpoints", kernel_agents[0].log)
    apply(cli, app("kcan", "v2", service_port, replicas=3, strategy=CANARY))
    wait_until(lambda: canary_paused(cli, "kcan"), 120, "the canary at 10% and paused", kernel_agents[0].log)
    wait_until(lambda: len(endpoints(cli, "kcan")) == 4, 30, "4 ready endpoints")
    wait_until(lambda: fresh_get(http_port, "kcan.test").startswith("v2 "), 30, "the canary answers")
    client = http.client.HTTPConnection(PROXIES[0], http_port, timeout=5)
    try:
        bodies = []
        for _ in range(500):  # one keep-alive connection for all
            client.request("GET", "/", headers={"Host": "kcan.test"})
            bodies.append(client.getresponse().read().decode())
    finally:
        client.close()
    share = sum(1 for b in bodies if b.startswith("v2 ")) / len(bodies)
    print(f"canary at 10% through the ingress over nftables, one keep-alive client: {share:.1%} of 500 requests")
    assert 0.08 <= share <= 0.12
