"""sessionAffinity: ClientIP and internalTrafficPolicy: Local end to end: `corral apply` →
the API's defaults and validation → the registry's routes → a real agent → its data path, on both
data paths (`--proxy-mode userspace` and `nftables`).

The Services have no selector: their endpoints are EndpointSlices this test writes, pointing at
small HTTP servers on 127.0.0.1 that answer their name, on this agent's node or on a node that
does not exist ("elsewhere"), so a test decides which endpoints are local without Docker. A host
process (this test) is the client, at each Service's clusterIP. The server's Service range is
one of this test's own, so concurrent tests on the box never share a clusterIP."""

from __future__ import annotations

import http.client
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, running_agents, wait_until
from tests.e2e.test_services import apply, cluster_ip

SERVICE_CIDR = f"10.{200 + os.getpid() % 50}.{os.getpid() // 50 % 250}.0/24"


@pytest.fixture
def server_args() -> tuple[str, ...]:
    return ("--service-cidr", SERVICE_CIDR)


@pytest.fixture(params=["userspace", "nftables"])
def node(request: pytest.FixtureRequest, server: ServerProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    name = f"pol-{request.param[:4]}-{os.getpid()}"
    args = ("--proxy-address", "127.0.0.2", "--dns-port", "0", "--proxy-mode", request.param)
    with running_agents(server, tmp_path, [(name, args)], runtimes=("process",)) as procs:
        yield procs[0]


class _Named(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    """Three HTTP servers on 127.0.0.1 answering "a", "b", "c": name → port."""
    servers = []
    for name in ("a", "b", "c"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield {s.name: s.server_address[1] for s in servers}
    for server in servers:
        server.shutdown()
        server.server_close()


def endpoint_slice(service: str, pod: str, port: int, node: str) -> str:
    """One endpoint of `service`: `pod` at 127.0.0.1:`port` on `node`. The port is given both as the
    slice's port and as corral's host port, so that either reading of an endpoint (node address and
    host port, pod address and port) reaches the server."""
    return f"""
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-{pod}
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
ports: [{{name: "", port: {port}}}]
endpoints:
- addresses: ["127.0.0.1"]
  conditions: {{ready: true}}
  nodeName: {node}
  hostPorts: {{"": {port}}}
  targetRef: {{kind: Pod, name: {pod}}}
"""


def service(name: str, ports: dict[str, int], nodes: dict[str, str], **spec: str) -> str:
    """A Service without selector on port 80 and its endpoints: pod → port, each on its node."""
    extra = "".join(f"\n  {key}: {value}" for key, value in spec.items())
    slices = "".join(endpoint_slice(name, pod, port, nodes[pod]) for pod, port in ports.items())
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  ports: [{{port: 80}}]{extra}
{slices}"""


def get(address: str) -> str:
    """One request on a new connection; the answer, or the error's type name."""
    conn = http.client.HTTPConnection(address, 80, timeout=5)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        return conn.getresponse().read().decode()
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        conn.close()


def test_client_ip_affinity_keeps_a_client_on_one_backend(
    server: ServerProcess, node: AgentProcess, backends: dict[str, int]
) -> None:
    cli = Cli(server.env)
    here = dict.fromkeys(backends, node.name)
    apply(cli, service("sticky", backends, here, sessionAffinity="ClientIP"))
    apply(cli, service("plain", backends, here))
    sticky, plain = cluster_ip(cli, "sticky"), cluster_ip(cli, "plain")
    wait_until(lambda: get(sticky) in backends and get(plain) in backends, 30, "both Services answer", node.log)
    stuck = [get(sticky) for _ in range(20)]
    spread = [get(plain) for _ in range(20)]
    print(f"{node.name}: ClientIP affinity {sorted(set(stuck))}, none {sorted(set(spread))} over 20 requests")
    assert len(set(stuck)) == 1 and stuck[0] in backends
    assert set(spread) == set(backends)


def test_internal_traffic_policy_local_refuses_without_a_local_endpoint(
    server: ServerProcess, node: AgentProcess, backends: dict[str, int]
) -> None:
    cli = Cli(server.env)
    away = {"a": backends["a"]}
    apply(cli, service("local", away, {"a": "elsewhere"}, internalTrafficPolicy="Local"))
    apply(cli, service("cluster", away, {"a": "elsewhere"}))
    local, cluster = cluster_ip(cli, "local"), cluster_ip(cli, "cluster")
    wait_until(lambda: get(cluster) == "a", 30, "the Cluster Service answers", node.log)
    refused = [get(local) for _ in range(5)]
    print(f"{node.name}: internalTrafficPolicy Local without a local endpoint: {sorted(set(refused))}")
    assert all(answer not in backends for answer in refused)
    # An endpoint on this node joins: the Local Service answers, from it only.
    both = {"a": backends["a"], "b": backends["b"]}
    apply(cli, service("local", both, {"a": "elsewhere", "b": node.name}, internalTrafficPolicy="Local"))
    wait_until(lambda: get(local) == "b", 30, "the Local Service answers from this node", node.log)
    assert {get(local) for _ in range(10)} == {"b"}
