"""The ingress table as Caddy's config: Kubernetes' path matching as patterns, routes in
the table's precedence order, each backend's endpoints and weights, redirects, 503s and
certificates by SNI. (tests/integration/test_ingress_routing.py sends requests through
a real Caddy with these configs.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent.network.ingress.config import (
    DEFAULT_TAG,
    Listen,
    Upstreams,
    backend_handler,
    caddy_config,
    connection_policies,
    path_pattern,
    server_routes,
)
from agent.network.proxy.endpoints import Backend, traffic_weights
from protos.corral.v1 import discovery_pb2, ingress_pb2


@pytest.mark.parametrize(
    ("path_type", "rule", "path", "matches"),
    [
        pytest.param("Exact", "/foo", "/foo", True, id="exact"),
        pytest.param("Exact", "/foo", "/bar", False, id="exact-other"),
        pytest.param("Exact", "/foo", "/foo/", False, id="exact-no-trailing-slash"),
        pytest.param("Exact", "/foo/", "/foo", False, id="exact-slash-rule"),
        pytest.param("Exact", "/foo", "/FOO", False, id="exact-case-sensitive"),
        pytest.param("Exact", "/a.b", "/axb", False, id="exact-dot-is-literal"),
        pytest.param("Prefix", "/foo", "/foo", True, id="prefix-same"),
        pytest.param("Prefix", "/foo", "/foo/", True, id="prefix-trailing-slash"),
        pytest.param("Prefix", "/foo/", "/foo", True, id="prefix-rule-trailing-slash-ignored"),
        pytest.param("Prefix", "/aaa/bb", "/aaa/bbb", False, id="prefix-not-string-prefix"),
        pytest.param("Prefix", "/aaa/bbb", "/aaa/bbb/ccc", True, id="prefix-subpath"),
        pytest.param("Prefix", "/aaa/bbb/", "/aaa/bbbxyz", False, id="prefix-not-partial-element"),
        pytest.param("Prefix", "/Foo", "/foo", False, id="prefix-case-sensitive"),
        pytest.param("Prefix", "/v1+(x)", "/v1+(x)/y", True, id="prefix-special-characters"),
    ],
)
def test_path_patterns(path_type: str, rule: str, path: str, matches: bool) -> None:
    """Kubernetes' Ingress documentation's examples table (RE2 and Python agree on these patterns)."""
    pattern = path_pattern(path_type, rule)
    assert pattern is not None and (re.search(pattern, path) is not None) is matches


def test_the_root_prefix_matches_every_path() -> None:
    assert path_pattern("Prefix", "/") is None


def b(port: int, group: str) -> Backend:
    return Backend("10.0.0.1", port, group=group)


@pytest.mark.parametrize(
    ("backends", "weights", "expected"),
    [
        pytest.param([b(1, "x"), b(2, "y")], {}, [1, 1], id="no-weights-even"),
        pytest.param([b(1, "v1"), b(2, "v2")], {"v1": 90, "v2": 10}, [9, 1], id="canary"),
        pytest.param([b(1, "v1"), b(2, "v1"), b(3, "v2")], {"v1": 90, "v2": 10}, [9, 9, 2], id="split-in-group"),
        pytest.param([b(1, "old"), b(2, "new")], {"old": 0, "new": 1}, [1], id="zero-left-out"),
        pytest.param([b(1, "old"), b(2, "new")], {"new": 1}, [1], id="missing-left-out"),
        pytest.param([b(1, "x"), b(1, "x")], {}, [1], id="duplicates-once"),
    ],
)
def test_traffic_weights(backends: list[Backend], weights: dict[str, int], expected: list[int]) -> None:
    assert [w for _, w in traffic_weights(backends, weights)] == expected


def route(
    *ports: tuple[str, str, int], weights: dict[str, int] | None = None, lb: str = ""
) -> discovery_pb2.ServiceRoute:
    r = discovery_pb2.ServiceRoute(namespace="default", name="s", weights=weights or {}, load_balancing=lb)
    for name, protocol, backend_port in ports:
        r.ports.add(name=name, protocol=protocol, port=53).backends.add(
            address="10.0.0.1", port=backend_port, pod=f"p{backend_port}", group="new"
        )
    return r


def target(service: str = "default/s", port: str = "http", **fields: Any) -> ingress_pb2.IngressRouteBackend:
    return ingress_pb2.IngressRouteBackend(service=service, port_name=port, **fields)


@pytest.mark.parametrize(
    ("routes", "backend", "policy", "dials"),
    [
        pytest.param(
            {"default/s": route(("http", "UDP", 5353), ("http", "TCP", 8053), weights={"new": 1, "old": 0})},
            target(),
            {"policy": "weighted_round_robin", "weights": [1]},
            ["10.0.0.1:8053"],
            id="tcp-port-of-that-name-weighted",
        ),
        pytest.param(
            {"default/s": route(("http", "TCP", 80), lb="LeastConnections")},
            target(),
            {"policy": "least_conn"},
            ["10.0.0.1:80"],
            id="least-connections",
        ),
        pytest.param(
            {"default/s": route(("http", "TCP", 80))}, target(), {"policy": "round_robin"}, ["10.0.0.1:80"], id="rr"
        ),
    ],
)
def test_backend_upstreams(
    routes: dict[str, discovery_pb2.ServiceRoute],
    backend: ingress_pb2.IngressRouteBackend,
    policy: dict[str, Any],
    dials: list[str],
) -> None:
    handler = backend_handler(backend, routes, "https", 443, Upstreams())
    assert handler["handler"] == "reverse_proxy"
    assert handler["load_balancing"]["selection_policy"] == policy
    assert [u["dial"] for u in handler["upstreams"]] == dials
    assert handler["headers"]["request"]["set"]["X-Forwarded-Port"] == ["443"]


def kernel_route(
    cluster_ip: str = "10.43.0.7", lb: str = "", address: str = "10.0.0.1", *, affinity: int = 0, internal: str = ""
) -> discovery_pb2.ServiceRoute:
    r = discovery_pb2.ServiceRoute(
        namespace="default", name="s", cluster_ip=cluster_ip, load_balancing=lb, weights={"new": 1}
    )
    r.session_affinity_seconds, r.internal_traffic_policy = affinity, internal
    r.ports.add(name="http", protocol="TCP", port=8080).backends.add(address=address, port=80, pod="p", group="new")
    return r


@pytest.mark.parametrize(
    ("route", "dials"),
    [
        pytest.param(kernel_route(), ["10.43.0.7:8080"], id="cluster-ip"),
        pytest.param(kernel_route(cluster_ip=""), ["10.0.0.1:80"], id="no-cluster-ip-endpoints"),
        pytest.param(kernel_route(lb="LeastConnections"), ["10.0.0.1:80"], id="least-connections-endpoints"),
        pytest.param(kernel_route(address="fd00::1"), ["[fd00::1]:80"], id="ipv6-endpoints"),
        # Every request would come from this node's address: ClientIP affinity would pin them all to one pod.
        pytest.param(kernel_route(affinity=10800), ["10.0.0.1:80"], id="client-ip-affinity-endpoints"),
        # The Ingress reaches every ready endpoint, as Kubernetes' controllers do, not only this node's.
        pytest.param(kernel_route(internal="Local"), ["10.0.0.1:80"], id="internal-traffic-local-endpoints"),
        pytest.param(kernel_route(internal="Cluster"), ["10.43.0.7:8080"], id="internal-traffic-cluster"),
    ],
)
def test_the_kernel_balances_the_ports_it_serves(route: discovery_pb2.ServiceRoute, dials: list[str]) -> None:
    """With the kernel serving clusterIPs, a port it balances is dialled at its clusterIP with a
    new connection per request (the kernel's weights apply to each); the others keep their endpoints."""
    handler = backend_handler(target(), {"default/s": route}, "https", 443, Upstreams(via_cluster_ip=True))
    assert [u["dial"] for u in handler["upstreams"]] == dials
    kernel = dials == ["10.43.0.7:8080"]
    assert handler["transport"].get("keep_alive") == ({"enabled": False} if kernel else None)
    if kernel:
        assert handler["load_balancing"]["selection_policy"] == {"policy": "first"}


def test_an_endpoint_change_behind_a_cluster_ip_leaves_the_config_as_it_is() -> None:
    def config(address: str, pods: int) -> dict[str, Any]:
        r = kernel_route()
        for n in range(1, pods):
            r.ports[0].backends.add(address=address, port=80 + n, pod=f"p{n}", group="new")
        return backend_handler(target(), {"default/s": r}, "https", 443, Upstreams(via_cluster_ip=True))

    assert config("10.0.0.2", 3) == config("10.0.0.9", 1)
    assert backend_handler(target(), {"default/s": kernel_route()}, "https", 443, Upstreams()) != config("10.0.0.2", 1)


@pytest.mark.parametrize(
    ("routes", "backend", "body"),
    [
        pytest.param({}, target(problem="no port 81"), "no port 81", id="problem"),
        pytest.param({}, target(), "default/s is not known here", id="unknown-service"),
        pytest.param({"default/s": route(("dns", "TCP", 53))}, target(), "is not known here", id="unknown-port"),
        pytest.param({"default/s": route()}, target(port=""), "is not known here", id="no-port"),
    ],
)
def test_backends_without_endpoints_are_503(
    routes: dict[str, discovery_pb2.ServiceRoute], backend: ingress_pb2.IngressRouteBackend, body: str
) -> None:
    handler = backend_handler(backend, routes, "http", 80, Upstreams())
    assert (handler["handler"], handler["status_code"]) == ("static_response", 503)
    assert body in handler["body"]


def table() -> ingress_pb2.IngressRoutes:
    t = ingress_pb2.IngressRoutes()
    for host in ("a.test", "*.b.test", ""):
        h = t.hosts.add(host=host)
        h.paths.add(path="/api", path_type="Exact", backend=target(ssl_redirect=host == "a.test"))
        h.paths.add(path="/", path_type="Prefix", backend=target())
    return t


def test_routes_follow_the_tables_order_and_end_in_404() -> None:
    routes = server_routes(table(), {"default/s": route(("http", "TCP", 80))}, "https", 443, 443)
    assert [r.get("match") for r in routes] == [[{"host": ["a.test"]}], [{"host": ["*.b.test"]}], None, None]
    assert all(r["terminal"] for r in routes)
    inner = routes[0]["handle"][0]["routes"]
    assert [r.get("match") for r in inner] == [[{"path_regexp": {"pattern": "^/api$"}}], None, None]
    assert inner[-1]["handle"][0]["status_code"] == 404 and routes[-1]["handle"][0]["status_code"] == 404


@pytest.mark.parametrize(
    ("scheme", "https_port", "location"),
    [
        pytest.param("http", 443, "https://{http.request.host}{http.request.uri}", id="default-port"),
        pytest.param("http", 8443, "https://{http.request.host}:8443{http.request.uri}", id="other-port"),
        pytest.param("https", 443, None, id="not-over-https"),
        pytest.param("http", 0, None, id="no-https-port"),
    ],
)
def test_redirect_when_asked(scheme: str, https_port: int, location: str | None) -> None:
    routes = server_routes(table(), {"default/s": route(("http", "TCP", 80))}, scheme, 80, https_port)
    handler = routes[0]["handle"][0]["routes"][0]["handle"][0]
    assert handler.get("headers", {}).get("Location") == ([location] if location else None)


def test_the_default_backend_replaces_the_404() -> None:
    t = table()
    t.default_backend.CopyFrom(target())
    routes = server_routes(t, {"default/s": route(("http", "TCP", 80))}, "http", 80, 0)
    assert routes[-1]["handle"][0]["handler"] == "reverse_proxy"
    assert routes[0]["handle"][0]["routes"][-1]["handle"][0]["handler"] == "reverse_proxy"


def test_certificates_by_sni_most_specific_first_then_the_default() -> None:
    certificates = [
        ingress_pb2.IngressCertificate(secret="default/wild", hosts=["*.a.test"]),
        ingress_pb2.IngressCertificate(secret="default/a", hosts=["A.test", "www.a.test"]),
    ]
    policies = connection_policies(certificates)
    assert [(p.get("match"), p["certificate_selection"]["any_tag"]) for p in policies] == [
        ({"sni": ["www.a.test"]}, ["secret:default/a"]),
        ({"sni": ["a.test"]}, ["secret:default/a"]),
        ({"sni": ["*.a.test"]}, ["secret:default/wild"]),
        (None, [DEFAULT_TAG]),
    ]
    assert all(p["alpn"] == ["h2", "http/1.1"] for p in policies)


def test_no_acme_no_autosave_admin_on_a_private_unix_socket_and_http2_over_tls() -> None:
    config = caddy_config(
        table(),
        {},
        listen=Listen(["127.0.0.1", "::1"], 80, 443),
        storage="/data/ingress/storage",
        certificates=[],
        default_certificate=(b"CERT", b"KEY"),
    )
    assert config["admin"] == {"listen": "unix/admin.sock|0600", "config": {"persist": False}}
    servers = config["apps"]["http"]["servers"]
    assert servers["https"]["listen"] == ["127.0.0.1:443", "[::1]:443"]
    assert (servers["http"]["protocols"], servers["https"]["protocols"]) == (["h1"], ["h1", "h2"])
    assert all(s["automatic_https"] == {"disable": True} for s in servers.values())
    assert config["apps"]["tls"]["certificates"]["load_pem"] == [
        {"certificate": "CERT", "key": "KEY", "tags": [DEFAULT_TAG]}
    ]
