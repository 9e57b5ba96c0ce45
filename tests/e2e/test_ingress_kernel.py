"""Ingress with the kernel data path (`corral agent --proxy-mode nftables`) on three
real agents with Docker: the managed Caddy dials the Service's clusterIP, so an
endpoint change (a scale-up here) is no config swap, and a client's idle keep-alive
connection to the ingress carries its next request on the same TCP connection."""

from __future__ import annotations

import functools
import http.client
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, remove_node_containers, wait_until
from tests.e2e.test_ingress import app, free_ports
from tests.e2e.test_services import PROXIES, apply, endpoints, registered

pytestmark = pytest.mark.docker

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: keep}
spec:
  rules:
  - host: keep.test
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: keep, port: {name: web}}}}]
"""


@pytest.fixture
def http_port() -> int:
    return free_ports(1)[0]


@pytest.fixture
def kernel_agents(server: ServerProcess, tmp_path: Path, http_port: int) -> Iterator[list[AgentProcess]]:
    procs = []
    for i, address in enumerate(PROXIES):
        name = f"ik{i}-{os.getpid()}"
        args: tuple[str, ...] = ("--proxy-address", address, "--dns-port", "0", "--proxy-mode", "nftables")
        args += ("--ingress-http-port", str(http_port), "--ingress-https-port", "0")
        proc = AgentProcess(
            server.address,
            name,
            tmp_path / name,
            server.env,
            tmp_path / f"{name}.log",
            runtimes=("docker",),
            extra_args=args,
        )
        proc.start()
        procs.append(proc)
    cli = Cli(server.env)
    try:
        for proc in procs:
            wait_until(functools.partial(registered, cli, proc.name), 30, f"{proc.name} registered", proc.log)
        yield procs
    finally:
        for proc in procs:
            proc.stop()
            remove_node_containers(proc.name)


def fresh_get(port: int) -> str:
    """One request on a new connection (the answer's body, '' when it failed)."""
    conn = http.client.HTTPConnection(PROXIES[0], port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": "keep.test"})
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
    apply(cli, INGRESS)
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
