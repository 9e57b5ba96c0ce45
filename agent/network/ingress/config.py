"""The node's ingress table as Caddy's JSON config: pure, the one home of routing decisions.

The control plane sends the table in precedence order (`ingress.proto`): hosts most
specific first (exact names, longest wildcards, then ""), and per host the paths longest
first, Exact before Prefix for the same path. Each server (HTTP, HTTPS) gets one route per
host, in that order, `terminal` (Caddy tries routes in order, so the first host that
matches is the one chosen, as Kubernetes documents); inside, a subroute tries the host's
paths in order, then the default backend, then 404. Matching follows Kubernetes:

- host: Caddy's `host` matcher (case-insensitive, without the port; `*.example.com`
  matches exactly one more leading label);
- path: `path_regexp` (case-sensitive, unlike Caddy's `path` matcher): Exact matches the
  path as is; Prefix by `/`-separated elements (`/foo` matches `/foo`, `/foo/`,
  `/foo/bar`, not `/foobar`; a trailing `/` in the rule is ignored).

A backend is a `reverse_proxy` to the ready endpoints of the Service port (the route the
node proxy gets), with the Service's traffic weights as per-endpoint weights
(`traffic_weights`) under `weighted_round_robin`, else `round_robin` or `least_conn`.
A connect failure has the request try the next endpoint the policy picks (`max_attempts` in
all; Caddy also retries a GET whose backend failed after connecting). No endpoint is marked
down: a failing one is left to readiness, which takes it out of the route (an ejection
would answer 503 while the only endpoint is marked, as Caddy does not fall back to
ejected endpoints). No endpoint, no such Service or port, or the table's `problem`:
503 with the reason. Plain HTTP to a backend that asks for it: 308 to https.

`Upstreams.via_cluster_ip` (the kernel data path serves this node's clusterIPs): a
Service port the kernel balances (`nft_rules.kernel_capable`, with a clusterIP; not one
with ClientIP affinity or internalTrafficPolicy Local: see `kernel_address`) is
dialled at `<clusterIP>:<port>` instead, keep-alive off, so that the kernel picks an
endpoint, with the Service's weights, for every request (a pooled connection would pin
its requests to one endpoint). The config then no longer changes with the endpoints
(only when the last one goes or the first comes: the 503), so endpoint changes swap
no config and close no client connection.

TLS: the usable certificates of the table, inline (`load_pem`, tagged by Secret), chosen by
SNI through one connection policy per host (most specific first); any other name gets the
self-signed default. Automatic HTTPS, ACME and the config autosave are off; the admin API
listens on a unix socket only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.network.proxy.endpoints import LEAST_CONNECTIONS, backends_of, is_tcp, traffic_weights
from agent.network.proxy.frontends import frontends
from agent.network.proxy.nft_rules import kernel_capable
from protos.corral.v1 import discovery_pb2, ingress_pb2
from protos.services import LOCAL

EXACT = "Exact"
DEFAULT_TAG = "corral-default"
# The admin API's unix socket, relative to Caddy's working directory (mode 0600).
ADMIN_SOCKET = "admin.sock"
# Go regexp's special characters (regexp.QuoteMeta).
_SPECIAL = frozenset("\\.+*?()|[]{}^$")
# Open WebSockets (and other upgraded streams) outlive a config change by this long.
STREAM_CLOSE_DELAY = "24h"

Json = dict[str, Any]


@dataclass(frozen=True)
class Listen:
    addresses: Sequence[str]
    http_port: int
    https_port: int


@dataclass(frozen=True)
class Upstreams:
    connect_timeout: float = 5.0
    max_attempts: int = 3
    # The kernel (nftables) serves this node's clusterIPs: dial a Service port it balances
    # at <clusterIP>:<port>, one new connection per request (see the module docstring).
    via_cluster_ip: bool = False


def quote_meta(text: str) -> str:
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def path_pattern(path_type: str, path: str) -> str | None:
    """The RE2 pattern of an Ingress path (None: every path)."""
    if path_type == EXACT:
        return f"^{quote_meta(path)}$"
    prefix = path.rstrip("/")
    return None if not prefix else f"^{quote_meta(prefix)}(/.*)?$"


def host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def sni_order(host: str) -> tuple[int, int]:
    """Exact names first, then wildcards, longest first."""
    return (1 if host.startswith("*.") else 0, -len(host))


def certificate_tag(secret: str) -> str:
    return f"secret:{secret}"


def _text(status: int, body: str) -> Json:
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
        "body": body,
    }


def _redirect(https_port: int) -> Json:
    authority = "{http.request.host}" + ("" if https_port == 443 else f":{https_port}")
    return {
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [f"https://{authority}{{http.request.uri}}"]},
    }


def _find_port(
    services: Mapping[str, discovery_pb2.ServiceRoute], service: str, port_name: str
) -> tuple[discovery_pb2.ServiceRoute, discovery_pb2.RoutePort] | None:
    route = services.get(service)
    if route is None:
        return None
    port = next((p for p in route.ports if p.name == port_name and is_tcp(p)), None)
    return None if port is None else (route, port)


def kernel_address(route: discovery_pb2.ServiceRoute, port: discovery_pb2.RoutePort) -> str | None:
    """`<clusterIP>:<port>` when the kernel data path balances this port there (None: it does not,
    or not as the Ingress must: with ClientIP affinity every request, all from this node, would go
    to one pod; with internalTrafficPolicy Local only to this node's pods, where Kubernetes'
    Ingress controllers reach every ready endpoint)."""
    if route.session_affinity_seconds > 0 or route.internal_traffic_policy == LOCAL:
        return None
    clustered = any(f.address for f in frontends(route, port))
    if not clustered or ":" in route.cluster_ip or not kernel_capable(route, port):
        return None
    return host_port(route.cluster_ip, port.port)


@dataclass(frozen=True)
class Target:
    """Where a backend's requests go, for any data path: `dials` (`host:port`, weight), the
    selection `policy` (`first`, `weighted_round_robin`, `round_robin`, `least_conn`) and
    whether connections to them may be kept alive (not to a kernel-balanced clusterIP)."""

    dials: tuple[tuple[str, int], ...]
    policy: str
    keep_alive: bool = True


def resolve_backend(
    backend: ingress_pb2.IngressRouteBackend,
    services: Mapping[str, discovery_pb2.ServiceRoute],
    upstreams: Upstreams,
) -> Target | str:
    """The backend's target, or why it answers 503 (the body's reason)."""
    if backend.problem:
        return backend.problem
    found = _find_port(services, backend.service, backend.port_name)
    if found is None:
        return f"{backend.service} is not known here"
    route, route_port = found
    weighted = traffic_weights(backends_of(route_port), dict(route.weights))
    if not weighted:
        return f"{backend.service} has no ready endpoint"
    kernel = kernel_address(route, route_port) if upstreams.via_cluster_ip else None
    if kernel is not None:  # the kernel picks an endpoint per connection
        return Target(((kernel, 1),), "first", keep_alive=False)
    dials = tuple((host_port(b.address, b.port), w) for b, w in weighted)
    if route.weights:
        return Target(dials, "weighted_round_robin")
    if route.load_balancing == LEAST_CONNECTIONS:
        return Target(dials, "least_conn")
    return Target(dials, "round_robin")


def backend_handler(
    backend: ingress_pb2.IngressRouteBackend,
    services: Mapping[str, discovery_pb2.ServiceRoute],
    scheme: str,
    port: int,
    upstreams: Upstreams,
) -> Json:
    target = resolve_backend(backend, services, upstreams)
    if isinstance(target, str):
        return _text(503, f"503 Service Unavailable: {target}\n")
    transport: Json = {"protocol": "http", "dial_timeout": f"{upstreams.connect_timeout:g}s"}
    if not target.keep_alive:
        transport["keep_alive"] = {"enabled": False}
    policy: Json = {"policy": target.policy}
    if target.policy == "weighted_round_robin":
        policy["weights"] = [w for _, w in target.dials]
    return {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": d} for d, _ in target.dials],
        "load_balancing": {"selection_policy": policy, "retries": max(0, upstreams.max_attempts - 1)},
        "transport": transport,
        "headers": {
            "request": {
                "set": {
                    "X-Real-IP": ["{http.request.remote.host}"],
                    "X-Forwarded-Port": [str(port)],
                }
            }
        },
        "stream_close_delay": STREAM_CLOSE_DELAY,
    }


def _handler(
    backend: ingress_pb2.IngressRouteBackend,
    services: Mapping[str, discovery_pb2.ServiceRoute],
    scheme: str,
    port: int,
    https_port: int,
    upstreams: Upstreams,
) -> Json:
    if scheme == "http" and backend.ssl_redirect and https_port:
        return _redirect(https_port)
    return backend_handler(backend, services, scheme, port, upstreams)


def server_routes(
    ingress: ingress_pb2.IngressRoutes,
    services: Mapping[str, discovery_pb2.ServiceRoute],
    scheme: str,
    port: int,
    https_port: int,
    upstreams: Upstreams = Upstreams(),
) -> list[Json]:
    """The routes of the server of `scheme` listening on `port`."""

    def handler(backend: ingress_pb2.IngressRouteBackend) -> Json:
        return _handler(backend, services, scheme, port, https_port, upstreams)

    fallback = (
        handler(ingress.default_backend)
        if ingress.HasField("default_backend")
        else _text(404, "404 Not Found: no Ingress rule matches this host and path\n")
    )
    routes: list[Json] = []
    for host in ingress.hosts:
        inner: list[Json] = []
        for path in host.paths:
            pattern = path_pattern(path.path_type, path.path)
            entry: Json = {"handle": [handler(path.backend)], "terminal": True}
            if pattern is not None:
                entry["match"] = [{"path_regexp": {"pattern": pattern}}]
            inner.append(entry)
        inner.append({"handle": [fallback], "terminal": True})
        route: Json = {"handle": [{"handler": "subroute", "routes": inner}], "terminal": True}
        if host.host:
            route["match"] = [{"host": [host.host]}]
        routes.append(route)
    routes.append({"handle": [fallback], "terminal": True})
    return routes


def certificate_hosts(certificates: Sequence[ingress_pb2.IngressCertificate]) -> dict[str, str]:
    """Each TLS host of the usable certificates → its Secret (the first that names it), in
    SNI order (exact names, then wildcards, longest first)."""
    by_host: dict[str, str] = {}
    for certificate in certificates:
        for host in certificate.hosts:
            by_host.setdefault(host.lower(), certificate.secret)
    return {host: by_host[host] for host in sorted(by_host, key=sni_order)}


def host_matches(rule: str, name: str) -> bool:
    """Kubernetes' host match: `""` any, `*.example.com` exactly one more leading label."""
    if not rule or rule == name:
        return True
    if rule.startswith("*."):
        label, _, rest = name.partition(".")
        return bool(label) and label != "*" and rest == rule[2:]
    return rule == name


def connection_policies(certificates: Sequence[ingress_pb2.IngressCertificate]) -> list[Json]:
    by_host = certificate_hosts(certificates)
    policies: list[Json] = [
        {
            "match": {"sni": [host]},
            "certificate_selection": {"any_tag": [certificate_tag(by_host[host])]},
            "alpn": ["h2", "http/1.1"],
        }
        for host in by_host
    ]
    policies.append({"certificate_selection": {"any_tag": [DEFAULT_TAG]}, "alpn": ["h2", "http/1.1"]})
    return policies


_ERRORS: Json = {
    "routes": [
        {
            "handle": [
                {
                    "handler": "static_response",
                    "status_code": "{http.error.status_code}",
                    "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
                    "body": "{http.error.status_code} {http.error.status_text}\n",
                }
            ]
        }
    ]
}


def admin_only() -> Json:
    """What Caddy starts with: the admin API on its unix socket (owner only), nothing saved."""
    return {"admin": {"listen": f"unix/{ADMIN_SOCKET}|0600", "config": {"persist": False}}}


def caddy_config(
    ingress: ingress_pb2.IngressRoutes,
    services: Mapping[str, discovery_pb2.ServiceRoute],
    *,
    listen: Listen,
    storage: str,
    certificates: Sequence[ingress_pb2.IngressCertificate],
    default_certificate: tuple[bytes, bytes],
    upstreams: Upstreams = Upstreams(),
) -> Json:
    """The whole config; `certificates`: the table's usable ones (Caddy refuses a config
    with one that does not load)."""
    servers: Json = {}
    https = listen.https_port
    if listen.http_port:
        servers["http"] = {
            "listen": [host_port(a, listen.http_port) for a in listen.addresses],
            "protocols": ["h1"],
            "routes": server_routes(ingress, services, "http", listen.http_port, https, upstreams),
            "errors": _ERRORS,
            "automatic_https": {"disable": True},
        }
    if https:
        servers["https"] = {
            "listen": [host_port(a, https) for a in listen.addresses],
            "protocols": ["h1", "h2"],
            "routes": server_routes(ingress, services, "https", https, https, upstreams),
            "errors": _ERRORS,
            "tls_connection_policies": connection_policies(certificates),
            "automatic_https": {"disable": True},
        }
    cert, key = default_certificate
    load_pem = [{"certificate": cert.decode(), "key": key.decode(), "tags": [DEFAULT_TAG]}] + [
        {"certificate": c.cert_pem.decode(), "key": c.key_pem.decode(), "tags": [certificate_tag(c.secret)]}
        for c in certificates
    ]
    return {
        **admin_only(),
        "logging": {"logs": {"default": {"level": "WARN"}}},
        "storage": {"module": "file_system", "root": storage},
        "apps": {
            "http": {"http_port": listen.http_port or 80, "https_port": https or 443, "servers": servers},
            "tls": {"certificates": {"load_pem": load_pem}},
        },
    }
