"""Which Ingress backend a request goes to, and which certificate a TLS name gets: pure.

Matching follows Kubernetes' Ingress documentation:

- host: the request's Host without its port, lower case, compared with each
  rule host; `*.example.com` matches exactly one more leading label
  (`a.example.com`, not `example.com` nor `a.b.example.com`); the most
  specific host wins (an exact name, then the longest wildcard), and a
  request matching no host goes to the rules without a host ("*"). Only the
  chosen host's paths are tried (as ingress-nginx's servers), then the
  default backend, then none (404);
- path: Exact matches the path as is (case-sensitive); Prefix matches by
  `/`-separated elements (`/foo` matches `/foo`, `/foo/` and `/foo/bar`, not
  `/foobar`; a trailing `/` in the rule's path is ignored);
  ImplementationSpecific arrives as Prefix. The longest matching path wins;
  for the same path Exact beats Prefix (the control plane sends paths in that
  order, so the first match is the answer).

A TLS name (SNI) picks the certificate of the most specific host it matches
(same host rule); none: the default certificate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protos.corral.v1 import ingress_pb2

EXACT = "Exact"


def normal_host(host: str) -> str:
    """A Host header or SNI name as matched: without the port, lower case, without a final dot."""
    host = host.strip()
    if host.startswith("["):  # an IPv6 literal
        return host.split("]", 1)[0].lower() + "]"
    return host.rsplit(":", 1)[0].lower().rstrip(".") if host.count(":") <= 1 else host.lower()


def host_matches(rule: str, host: str) -> bool:
    if not rule:
        return True
    if rule.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == rule[2:]
    return rule == host


def _specificity(rule: str) -> tuple[int, int]:
    if not rule:
        return (0, 0)
    if rule.startswith("*."):
        return (1, len(rule))
    return (2, len(rule))


def best_host(rules: Iterable[str], host: str) -> str | None:
    """The most specific rule host that matches `host` (None: none, not even "")."""
    matching = [r for r in rules if host_matches(r, host)]
    return max(matching, key=_specificity) if matching else None


def path_matches(path_type: str, rule: str, path: str) -> bool:
    if path_type == EXACT:
        return path == rule
    prefix = rule.rstrip("/")
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Match:
    backend: ingress_pb2.IngressRouteBackend
    host: str
    path: str


class IngressRouter:
    """The routing table of one `IngressRoutes` message; replaced whole on a change."""

    def __init__(self, routes: ingress_pb2.IngressRoutes | None = None) -> None:
        self.routes = routes or ingress_pb2.IngressRoutes()
        self._hosts = {h.host: h for h in self.routes.hosts}
        self._cert_hosts = {name: c.secret for c in self.routes.certificates for name in c.hosts}

    @property
    def empty(self) -> bool:
        return not self.routes.hosts and not self.routes.HasField("default_backend")

    def match(self, host: str, path: str) -> Match | None:
        """The backend for a request (`host` as sent, `path` without the query), or None (404)."""
        name = best_host(self._hosts, normal_host(host))
        if name is not None:
            for route in self._hosts[name].paths:
                if path_matches(route.path_type, route.path, path):
                    return Match(route.backend, name, route.path)
        if self.routes.HasField("default_backend"):
            return Match(self.routes.default_backend, "", "")
        return None

    def certificate_for(self, server_name: str) -> str | None:
        """The Secret ("namespace/name") whose certificate serves this SNI name, or None (default)."""
        name = best_host(self._cert_hosts, normal_host(server_name)) if server_name else None
        return None if not name else self._cert_hosts[name]
