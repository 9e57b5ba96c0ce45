"""Ingress on three real agents with Docker: a.test, a.test/api and b.test over TLS
with each Secret's certificate through every node's ingress proxy, a canary's
10% weight on Ingress traffic, and a rolling update behind the Ingress under load.

Each agent's ingress listens on its own loopback address (127.0.0.2-4) at ports
free on all three; clients connect to an address and send the name as SNI and
Host (as curl --resolve does)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.network.ingress.nginx import find_nginx
from corral.common.pki.certs import cert_pem, key_pem, self_signed
from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, running_agents, wait_until
from tests.e2e.test_services import CANARY, PROXIES, apply, canary_paused, endpoints, versions_settled

pytestmark = pytest.mark.docker


def free_ports(count: int) -> list[int]:
    """Ports free on every proxy address."""
    rng = random.Random()
    found: list[int] = []
    while len(found) < count:
        port = rng.randrange(20000, 30000)
        try:
            for address in PROXIES:
                with socket.socket() as s:
                    s.bind((address, port))
        except OSError:
            continue
        if port not in found:
            found.append(port)
    return found


@pytest.fixture
def ports() -> tuple[int, int]:
    http_port, https_port = free_ports(2)
    return http_port, https_port


@pytest.fixture
def agents(server: ServerProcess, tmp_path: Path, ports: tuple[int, int]) -> Iterator[list[AgentProcess]]:
    ingress = ("--ingress-http-port", str(ports[0]), "--ingress-https-port", str(ports[1]))
    args = [(f"i{i}-{os.getpid()}", ("--proxy-address", a, "--dns-port", "0", *ingress)) for i, a in enumerate(PROXIES)]
    with running_agents(server, tmp_path, args) as procs:
        yield procs


def app(name: str, text: str, port: int, *, replicas: int = 1, strategy: str = "") -> str:
    """A Deployment answering `<text> <hostname>` on / and /api/, and its Service on `port`
    (each Service its own port until Services get virtual IPs)."""
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
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: corral-test/busybox:1
        command: ["sh", "-c"]
        args:
        - mkdir -p /www/api; echo "$TEXT $(hostname)" > /www/index.html; cp /www/index.html /www/api/index.html;
          exec httpd -f -p 80 -h /www
        env:
        - {{name: TEXT, value: "{text}"}}
        ports:
        - {{name: http, containerPort: 80}}
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: web, port: {port}, targetPort: http}}
"""


def tls_secret(name: str, host: str) -> tuple[str, bytes]:
    key, cert = self_signed(host, [host], dt.datetime.now(dt.UTC))
    crt = cert_pem(cert)
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": crt.decode(), "tls.key": key_pem(key).decode()},
    }
    return json.dumps(doc), crt


# {api_port}: the api Service's port (a backend by number; the others by name).
INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  tls:
  - {{hosts: [a.test], secretName: a-tls}}
  - {{hosts: [b.test], secretName: b-tls}}
  rules:
  - host: a.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: a, port: {{name: web}}}}}}}}
      - {{path: /api, pathType: Prefix, backend: {{service: {{name: api, port: {{number: {api_port}}}}}}}}}
  - host: b.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: b, port: {{name: web}}}}}}}}
"""


def https_get(address: str, port: int, host: str, path: str, ca: Path) -> str:
    """One HTTPS request to `address` with `host` as SNI and Host, trusting only `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection((address, port), timeout=5)
    conn = http.client.HTTPConnection(address, port, timeout=5)
    conn.sock = context.wrap_socket(raw, server_hostname=host)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}: {body[:100]}")
        return body
    finally:
        conn.close()


def answers(*args: object) -> bool:
    try:
        https_get(*args)  # type: ignore[arg-type]
    except OSError:
        return False
    return True


def test_hosts_and_paths_over_tls_through_every_node(
    server: ServerProcess, agents: list[AgentProcess], ports: tuple[int, int], tmp_path: Path
) -> None:
    cli = Cli(server.env)
    cas = {}
    for host, name in (("a.test", "a-tls"), ("b.test", "b-tls")):
        secret, crt = tls_secret(name, host)
        apply(cli, secret)
        cas[host] = tmp_path / f"{host}.pem"
        cas[host].write_bytes(crt)
    service_ports = dict(zip(("a", "b", "api"), free_ports(3), strict=True))
    for name, port in service_ports.items():
        apply(cli, app(name, f"app-{name}", port))
    apply(cli, INGRESS.format(api_port=service_ports["api"]))
    for name in ("a", "b", "api"):
        wait_until(lambda n=name: len(endpoints(cli, n)) == 1, 90, f"{name} ready", agents[0].log)  # type: ignore[misc]
    https = ports[1]
    for address in PROXIES:
        wait_until(lambda a=address: answers(a, https, "b.test", "/", cas["b.test"]), 30, f"ingress on {address}")  # type: ignore[misc]
        assert https_get(address, https, "a.test", "/", cas["a.test"]).startswith("app-a ")
        assert https_get(address, https, "a.test", "/api/", cas["a.test"]).startswith("app-api ")
        assert https_get(address, https, "b.test", "/", cas["b.test"]).startswith("app-b ")
        with pytest.raises(ssl.SSLCertVerificationError):  # each name gets its own Secret's certificate
            https_get(address, https, "b.test", "/", cas["a.test"])
    if find_nginx() is not None:  # the default data path where nginx is installed (--ingress-proxy auto)
        for agent in agents:
            assert (agent.data_dir / "ingress" / "nginx.conf").is_file(), agent.name
    listing = cli.run("get", "ingress")
    assert listing.returncode == 0 and "a.test,b.test" in listing.stdout and "80, 443" in listing.stdout, listing.stdout
    # The default class the server made, and the status the ingress controller writes: the nodes' addresses.
    classes = cli.run("get", "ingressclass")
    assert "corral.io/ingress" in classes.stdout, classes.stdout + classes.stderr

    def addresses() -> list[str]:
        got = json.loads(cli.run("get", "ingress", "web", "-o", "json").stdout)
        return [i.get("ip", "") for i in got.get("status", {}).get("loadBalancer", {}).get("ingress", [])]

    wait_until(lambda: len(addresses()) >= 1, 30, "the Ingress status lists node addresses")
    # A newer Ingress claiming a.test / loses to the older one, with an event saying so; so does its missing Secret.
    apply(
        cli,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: late}
spec:
  tls: [{hosts: [a.test], secretName: nowhere}]
  rules:
  - host: a.test
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: b, port: {name: web}}}}]
""",
    )

    def events() -> str:
        return str(cli.run("get", "events").stdout)

    wait_until(lambda: "Conflict" in events() and "DefaultCertificate" in events(), 30, "events on the newer Ingress")
    assert https_get(PROXIES[0], https, "a.test", "/", cas["a.test"]).startswith("app-a ")


def test_a_canary_at_ten_percent_gets_ten_percent_of_ingress_requests(
    server: ServerProcess, agents: list[AgentProcess], ports: tuple[int, int]
) -> None:
    cli = Cli(server.env)
    (port,) = free_ports(1)
    apply(cli, app("can", "v1", port, replicas=3, strategy=CANARY))
    apply(
        cli,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: can}
spec:
  rules:
  - host: can.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: can, port: {name: web}}}}
""",
    )
    wait_until(lambda: len(endpoints(cli, "can")) == 3, 90, "3 ready endpoints", agents[0].log)
    apply(cli, app("can", "v2", port, replicas=3, strategy=CANARY))
    wait_until(lambda: canary_paused(cli, "can"), 120, "the canary at 10% and paused", agents[0].log)
    wait_until(lambda: len(endpoints(cli, "can")) == 4, 30, "4 ready endpoints")

    def get(path: str = "/") -> str:
        conn = http.client.HTTPConnection(PROXIES[1], ports[0], timeout=5)
        try:
            conn.request("GET", path, headers={"Host": "can.test"})
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    wait_until(lambda: get().startswith("v"), 30, "the ingress answers")
    bodies = [get() for _ in range(500)]
    share = sum(1 for b in bodies if b.startswith("v2 ")) / len(bodies)
    print(f"canary at 10% through the ingress: {share:.1%} of 500 requests")
    assert 0.08 <= share <= 0.12


@dataclass
class IngressLoad:
    """Requests for `host` through one node's ingress in a thread (keep-alive, a new
    connection after any failure), until stopped or `limit` requests or `deadline_s` seconds.

    As HTTP clients do (RFC 9112 9.3.1: browsers, urllib3, Go's client), a GET that finds its
    idle keep-alive connection closed by the server before any answer is sent again once on a
    new connection (`reopened`): a config change closes idle keep-alive connections, as an
    nginx reload does. Anything else is a failure."""

    address: str
    port: int
    host: str
    limit: int = 20_000
    deadline_s: float = 180.0
    bodies: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    reopened: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> IngressLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _get(self, conn: http.client.HTTPConnection) -> str:
        conn.request("GET", "/", headers={"Host": self.host})
        response = conn.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}: {body[:100]}")
        return body

    def _run(self) -> None:
        end = time.monotonic() + self.deadline_s
        conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
        used = False
        while not self._stop.is_set() and len(self.bodies) + len(self.failures) < self.limit and time.monotonic() < end:
            try:
                try:
                    self.bodies.append(self._get(conn))
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not used:
                        raise
                    self.reopened += 1  # closed while idle: once more on a new connection
                    conn.close()
                    conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
                    self.bodies.append(self._get(conn))
                used = True
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection(self.address, self.port, timeout=5)
                used = False
            time.sleep(0.005)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)


def test_a_rolling_update_behind_the_ingress_fails_no_request(
    server: ServerProcess, agents: list[AgentProcess], ports: tuple[int, int]
) -> None:
    cli = Cli(server.env)
    (port,) = free_ports(1)
    apply(cli, app("roll", "v1", port, replicas=3))
    apply(
        cli,
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: roll}
spec:
  defaultBackend: {service: {name: roll, port: {name: web}}}
""",
    )
    wait_until(lambda: len(endpoints(cli, "roll")) == 3, 90, "3 ready endpoints", agents[0].log)
    load = IngressLoad(PROXIES[2], ports[0], "any.name").start()
    wait_until(lambda: len(load.bodies) > 50, 30, "load running through the ingress", agents[2].log)
    apply(cli, app("roll", "v2", port, replicas=3))
    wait_until(lambda: versions_settled(cli, "roll", "v2", 3), 180, "rollout done", agents[0].log)
    wait_until(lambda: len(endpoints(cli, "roll")) == 3, 60, "3 ready endpoints after the rollout")
    seen = len(load.bodies)
    wait_until(lambda: len(load.bodies) > seen + 100, 30, "requests after the rollout")
    load.stop()
    print(
        f"rolling update behind the ingress: {len(load.bodies)} requests ok, {len(load.failures)} failed, "
        f"{load.reopened} sent again after an idle keep-alive connection was closed by a config change"
    )
    assert load.failures == []
    assert load.bodies[0].startswith("v1 ") and load.bodies[-1].startswith("v2 ")
