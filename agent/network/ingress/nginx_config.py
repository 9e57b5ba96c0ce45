"""The node's ingress table as an nginx config: pure, from the routes `config.py` resolves.

The same table and the same backend resolution (`config.resolve_backend`) as the Caddy
path; only the rendering differs. The HTTP and the HTTPS listeners get one `server` per
host of the table:

- host: an exact name is a `server_name`; `*.example.com` a regex name matching exactly
  one more leading label (nginx's own `*.` form would match any number), in the table's
  order (regexes are tried in order of appearance, and the table has the longest
  wildcards first); `""` is the `default_server`, which also takes any other name;
- path: Exact → `location = /p`; Prefix `/p` → `location = /p` and `location /p/` (by
  `/`-separated elements: not `/pq`; a trailing `/` in the rule is ignored), `/` →
  `location /`. nginx picks the longest matching prefix and an exact match first, which
  is Kubernetes' order; of two rules that make the same location the table's first wins.
  Paths no rule matches go to the default backend, else 404.

A backend is an `upstream` of the Service port's ready endpoints with the Service's
traffic weights (`weight=`, nginx's smooth weighted round robin) or `least_conn`, kept
alive (`keepalive`: nginx picks the peer per request, so weights hold); a port the kernel
balances (`Upstreams.via_cluster_ip`) is its clusterIP, one connection per request. No
endpoint, no such Service or port, or the table's `problem`: 503 with the reason. Plain
HTTP to a backend that asks for it: 308 to https. Requests carry X-Forwarded-For (the
client's address: a client is no trusted proxy), -Proto, -Host, -Port and X-Real-IP;
WebSockets are passed through (`Upgrade`/`Connection`).

TLS: each usable certificate is two files (`certs/<digest>.crt|.key`, 0600, read by the
master) chosen by SNI: a host's server gets the certificate of its name (exact, else the
wildcard covering it); a certificate's host that has no server of its own gets one that
routes as the host rule its name matches. Any other name gets the self-signed default.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.network.ingress.config import (
    EXACT,
    Listen,
    Target,
    Upstreams,
    certificate_hosts,
    host_matches,
    host_port,
    resolve_backend,
)
from protos.corral.v1 import discovery_pb2, ingress_pb2

CERTS = "certs"
DEFAULT_UPSTREAMS = Upstreams()
DEFAULT_CERT = "default"
NOT_FOUND = "404 Not Found: no Ingress rule matches this host and path\n"
# nginx's compiled-in temporary directories (Debian's are under /var/lib/nginx): all moved.
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# Idle connections per worker kept to each upstream.
UPSTREAM_KEEPALIVE = 32
PROXY_HEADERS = (
    ("Host", "$http_host"),
    ("Upgrade", "$http_upgrade"),
    ("X-Real-IP", "$remote_addr"),
    ("X-Forwarded-For", "$remote_addr"),
    ("X-Forwarded-Proto", "$scheme"),
    ("X-Forwarded-Host", "$host"),
)
# Proxied streams (WebSockets, long polls) may stay quiet this long.
STREAM_TIMEOUT = "3600s"


@dataclass(frozen=True)
class Settings:
    """The process' side of the config: its directory (prefix), pid and log files, workers' user."""

    directory: str
    user: str | None = None
    worker_connections: int = 16384


@dataclass(frozen=True)
class NginxConfig:
    text: str
    # Relative path under the directory → content (written 0600 before the config is tested).
    files: Mapping[str, bytes] = field(default_factory=dict)


def quote(text: str, *, dollar: bool = False) -> str:
    """An nginx string: double-quoted, `\\`, `"` and newlines escaped; `$` (a variable where
    one is expanded) left out unless `dollar` (a regex's end)."""
    text = text if dollar else text.replace("$", "")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def server_name(host: str) -> str:
    if host.startswith("*."):
        # A DNS name's only regex character is the dot (no backslash to escape in the string).
        return quote("~^[^.]+" + re.sub(r"[^a-z0-9-]", lambda m: f"[{m.group()}]", "." + host[2:]) + "$", dollar=True)
    return quote(host)


def locations(path_type: str, path: str) -> list[str]:
    """The location arguments of an Ingress path."""
    if path_type == EXACT:
        return [f"= {quote(path)}"]
    prefix = path.rstrip("/")
    if not prefix:
        return [quote("/")]
    return [f"= {quote(prefix)}", quote(prefix + "/")]


def _digest(cert: bytes, key: bytes) -> str:
    return hashlib.sha256(cert + b"\0" + key).hexdigest()[:24]


def certificate_for(name: str, by_host: Mapping[str, str]) -> str | None:
    """The Secret whose certificate serves SNI `name` (None: the default's)."""
    return next((secret for host, secret in by_host.items() if host_matches(host, name)), None)


class _Renderer:
    def __init__(
        self,
        services: Mapping[str, discovery_pb2.ServiceRoute],
        listen: Listen,
        upstreams: Upstreams,
        directory: str,
    ) -> None:
        self.directory = directory
        self.services = services
        self.listen = listen
        self.upstreams = upstreams
        self.upstream_blocks: dict[Target, str] = {}

    def upstream(self, target: Target) -> str:
        name = self.upstream_blocks.get(target)
        if name is None:
            name = self.upstream_blocks[target] = f"corral_{len(self.upstream_blocks)}"
        return name

    def upstream_text(self) -> list[str]:
        lines: list[str] = []
        for target, name in self.upstream_blocks.items():
            lines.append(f"    upstream {name} {{")
            if target.policy == "least_conn":
                lines.append("        least_conn;")
            for dial, weight in target.dials:
                extra = f" weight={weight}" if target.policy == "weighted_round_robin" and weight != 1 else ""
                lines.append(f"        server {dial}{extra} max_fails=0;")
            if target.keep_alive:
                lines.append(f"        keepalive {UPSTREAM_KEEPALIVE};")
            lines.append("    }")
        return lines

    def handler(self, backend: ingress_pb2.IngressRouteBackend, scheme: str, port: int) -> list[str]:
        https = self.listen.https_port
        if scheme == "http" and backend.ssl_redirect and https:
            authority = "$host" + ("" if https == 443 else f":{https}")
            return [f"return 308 https://{authority}$request_uri;"]
        target = resolve_backend(backend, self.services, self.upstreams)
        if isinstance(target, str):
            return [f"return 503 {quote(f'503 Service Unavailable: {target}' + chr(10))};"]
        connection = "$corral_connection" if target.keep_alive else "$corral_connection_close"
        # All in the location: one proxy_set_header there drops every inherited one.
        return [
            f"proxy_pass http://{self.upstream(target)};",
            *(f"proxy_set_header {name} {value};" for name, value in PROXY_HEADERS),
            f"proxy_set_header Connection {connection};",
            f"proxy_set_header X-Forwarded-Port {port};",
        ]

    def server(
        self,
        ingress: ingress_pb2.IngressRoutes,
        host: ingress_pb2.IngressHostRoute | None,
        names: Sequence[str],
        scheme: str,
        port: int,
        tls: str | None,
    ) -> list[str]:
        default = not names
        listen = "".join(
            f"        listen {host_port(a, port)}{' ssl http2' if tls else ''}{' default_server' if default else ''};\n"
            for a in self.listen.addresses
        )
        lines = ["    server {", listen.rstrip("\n")]
        lines.append(f"        server_name {' '.join(server_name(n) for n in names) if names else quote('_')};")
        if tls is not None:
            certs = f"{self.directory}/{CERTS}/{tls}"
            lines.append(f"        ssl_certificate {quote(certs + '.crt')};")
            lines.append(f"        ssl_certificate_key {quote(certs + '.key')};")
        seen: set[str] = set()
        for path in host.paths if host is not None else ():
            body = self.handler(path.backend, scheme, port)
            for location in locations(path.path_type, path.path):
                if location in seen:
                    continue
                seen.add(location)
                lines += [f"        location {location} {{", *(f"            {b}" for b in body), "        }"]
        if quote("/") not in seen:
            if ingress.HasField("default_backend"):
                body = self.handler(ingress.default_backend, scheme, port)
            else:
                body = [f"return 404 {quote(NOT_FOUND)};"]
            lines += [f"        location {quote('/')} {{", *(f"            {b}" for b in body), "        }"]
        lines += [
            "        error_page 502 @corral_502;",
            "        error_page 504 @corral_504;",
            '        location @corral_502 { return 502 "502 Bad Gateway\\n"; }',
            '        location @corral_504 { return 504 "504 Gateway Timeout\\n"; }',
            "    }",
        ]
        return lines


def _rule_for(ingress: ingress_pb2.IngressRoutes, name: str) -> ingress_pb2.IngressHostRoute | None:
    """The host rule a request for `name` takes (the table is in precedence order)."""
    return next((h for h in ingress.hosts if h.host and host_matches(h.host, name)), None) or next(
        (h for h in ingress.hosts if not h.host), None
    )


def nginx_config(
    ingress: ingress_pb2.IngressRoutes,
    services: Mapping[str, discovery_pb2.ServiceRoute],
    *,
    listen: Listen,
    settings: Settings,
    certificates: Sequence[ingress_pb2.IngressCertificate],
    default_certificate: tuple[bytes, bytes],
    upstreams: Upstreams = DEFAULT_UPSTREAMS,
) -> NginxConfig:
    """The whole config (`nginx -p <directory> -c nginx.conf`) and the certificate files;
    `certificates`: the table's usable ones."""
    files: dict[str, bytes] = {}

    def cert_files(cert: bytes, key: bytes) -> str:
        stem = _digest(cert, key)
        files[f"{CERTS}/{stem}.crt"], files[f"{CERTS}/{stem}.key"] = cert, key
        return stem

    default_stem = cert_files(*default_certificate)
    stems = {c.secret: cert_files(c.cert_pem, c.key_pem) for c in certificates}
    by_host = certificate_hosts(certificates)
    renderer = _Renderer(services, listen, upstreams, settings.directory)
    servers: list[str] = []
    for scheme, port in (("http", listen.http_port), ("https", listen.https_port)):
        if not port:
            continue
        tls = scheme == "https"

        def stem_of(name: str, tls: bool = tls) -> str | None:
            if not tls:
                return None
            secret = certificate_for(name, by_host)
            return default_stem if secret is None else stems[secret]

        default_rule = next((h for h in ingress.hosts if not h.host), None)
        servers += renderer.server(ingress, default_rule, [], scheme, port, default_stem if tls else None)
        named = [h.host for h in ingress.hosts if h.host]
        for host in ingress.hosts:
            if host.host:
                servers += renderer.server(ingress, host, [host.host], scheme, port, stem_of(host.host))
        if tls:  # a certificate's name without a host rule of its own: routed as the rule it matches
            for name in by_host:
                if name not in named:
                    servers += renderer.server(ingress, _rule_for(ingress, name), [name], scheme, port, stem_of(name))
    text = "\n".join([*_head(settings, upstreams), *renderer.upstream_text(), *servers, "}", ""])
    return NginxConfig(text, files)


def bare_config(settings: Settings) -> str:
    """What nginx starts with: no server (the table's config is loaded next)."""
    return "\n".join([*_head(settings, DEFAULT_UPSTREAMS), "}", ""])


def _head(settings: Settings, upstreams: Upstreams) -> list[str]:
    d = settings.directory
    return [
        "# Written by the corral agent: changes are overwritten.",
        *([f"user {settings.user};"] if settings.user else []),
        "daemon off;",
        "worker_processes auto;",
        f"pid {quote(d + '/nginx.pid')};",
        f"error_log {quote(d + '/error.log')} warn;",
        f"events {{ worker_connections {settings.worker_connections}; }}",
        "http {",
        "    access_log off;",
        "    server_tokens off;",
        '    default_type "text/plain; charset=utf-8";',
        *(f"    {t}_temp_path {quote(f'{d}/temp/{t}')};" for t in TEMP_PATHS),
        "    client_max_body_size 0;",
        # A bucket holds a whole name: Ingress hosts go up to 253 characters (nginx refuses the
        # config, every Ingress of it, for a name its bucket cannot hold).
        "    server_names_hash_bucket_size 512;",
        "    server_names_hash_max_size 8192;",
        "    keepalive_requests 10000;",
        "    ssl_protocols TLSv1.2 TLSv1.3;",
        "    ssl_session_cache shared:corral_tls:10m;",
        "    proxy_http_version 1.1;",
        f"    proxy_connect_timeout {upstreams.connect_timeout:g}s;",
        f"    proxy_read_timeout {STREAM_TIMEOUT};",
        f"    proxy_send_timeout {STREAM_TIMEOUT};",
        "    proxy_next_upstream error timeout;",
        f"    proxy_next_upstream_tries {max(1, upstreams.max_attempts)};",
        "    proxy_redirect off;",
        "    proxy_buffering off;",
        "    proxy_request_buffering off;",
        '    map $http_upgrade $corral_connection { default upgrade; "" ""; }',
        '    map $http_upgrade $corral_connection_close { default upgrade; "" close; }',
    ]
