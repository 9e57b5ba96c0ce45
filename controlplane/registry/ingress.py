"""Ingress routes, pure: what every node's ingress proxy needs, from the Ingresses
corral serves (`protos/ingresses.py` says which), their Services and TLS Secrets.

`ingress_plan(ingresses, classes, services, secrets)` gives:

- `routes`: one `IngressHostRoute` per host ("" for rules without one), its
  paths longest first and, for the same path, Exact before Prefix
  (ImplementationSpecific is served as Prefix; an empty ImplementationSpecific
  path as "/"), hosts ordered exact names, then wildcards, then ""; each path's
  backend names the Service and its port *name* (a port number is resolved
  here), so the node takes the endpoints, weights and algorithm from the same
  Service route its node proxy uses; a Service or port that does not exist
  gives a backend with a `problem` (the proxy answers 503);
- conflicts, resolved as Kubernetes documents: the same host, path and type
  (or a second default backend, or a second certificate for one host) in two
  Ingresses goes to the older one (creationTimestamp, then namespace/name);
  `conflicts` says what each loser lost;
- certificates: the `kubernetes.io/tls` Secrets named by served Ingresses
  (and no other Secret), for their `tls[].hosts` (the Ingress' rule hosts when
  a tls entry lists none); a TLS entry whose Secret is missing, of another
  type or without tls.crt/tls.key puts its hosts in
  `hosts_without_certificate` (the proxy's self-signed default) and is
  reported in `tls_problems`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from protos.corral.v1 import ingress_pb2, secret_pb2, service_pb2
from protos.ingresses import (
    EXACT,
    IMPLEMENTATION_SPECIFIC,
    PREFIX,
    TLS_CERT_KEY,
    TLS_PRIVATE_KEY,
    TLS_SECRET_TYPE,
    is_served,
    wants_ssl_redirect,
)


def ingress_key(ingress: ingress_pb2.Ingress) -> str:
    return f"{ingress.metadata.namespace}/{ingress.metadata.name}"


@dataclass
class IngressPlan:
    routes: ingress_pb2.IngressRoutes
    # The served Ingresses, oldest first ("namespace/name").
    served: list[str] = field(default_factory=list)
    # Ingress key → what it lost to an older Ingress, one sentence each.
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    # Ingress key → why a TLS entry gets the default certificate.
    tls_problems: dict[str, list[str]] = field(default_factory=dict)


def _age(ingress: ingress_pb2.Ingress) -> tuple[int, str, str]:
    m = ingress.metadata
    return (m.creation_timestamp.ToNanoseconds(), m.namespace, m.name)


def _host_order(host: str) -> tuple[int, int, str]:
    """Exact names first, then wildcards (longer first), then the catch-all ""."""
    if not host:
        return (2, 0, "")
    if host.startswith("*."):
        return (1, -len(host), host)
    return (0, 0, host)


def path_order(route: ingress_pb2.IngressPathRoute) -> tuple[int, int, str]:
    """Longest path first; for the same path Exact before Prefix."""
    return (-len(route.path), 0 if route.path_type == EXACT else 1, route.path)


def served_path(http_path: ingress_pb2.HTTPIngressPath) -> tuple[str, str]:
    """(path, type) as the proxy matches it: ImplementationSpecific as Prefix, "" as "/"."""
    path_type = PREFIX if http_path.path_type == IMPLEMENTATION_SPECIFIC else http_path.path_type
    return (http_path.path or "/", path_type)


def resolve_backend(
    namespace: str,
    backend: ingress_pb2.IngressBackend,
    services: Mapping[str, service_pb2.Service],
) -> ingress_pb2.IngressRouteBackend:
    """The Service and port name behind an Ingress backend (or why there is none)."""
    ref = backend.service
    key = f"{namespace}/{ref.name}"
    route = ingress_pb2.IngressRouteBackend(service=key)
    service = services.get(key)
    wanted = ref.port.name or str(ref.port.number)
    if service is None:
        route.problem = f'no Service "{ref.name}" in namespace "{namespace}"'
        return route
    for port in service.spec.ports:
        if (ref.port.name and port.name == ref.port.name) or (not ref.port.name and port.port == ref.port.number):
            route.port_name = port.name
            return route
    route.problem = f'Service "{ref.name}" has no port {wanted}'
    return route


def _certificate(secret: secret_pb2.Secret | None, name: str) -> str:
    """Why a Secret cannot serve TLS ("" when it can)."""
    if secret is None:
        return f'Secret "{name}" not found'
    if secret.type != TLS_SECRET_TYPE:
        return f'Secret "{name}" is of type "{secret.type}", not {TLS_SECRET_TYPE}'
    missing = [k for k in (TLS_CERT_KEY, TLS_PRIVATE_KEY) if not secret.data.get(k)]
    if missing:
        return f'Secret "{name}" has no {" or ".join(missing)}'
    return ""


def ingress_plan(
    ingresses: Iterable[ingress_pb2.Ingress],
    classes: Iterable[ingress_pb2.IngressClass],
    services: Mapping[str, service_pb2.Service],
    secrets: Mapping[str, secret_pb2.Secret],
) -> IngressPlan:
    classes = list(classes)
    served = sorted((i for i in ingresses if is_served(i, classes)), key=_age)
    plan = IngressPlan(ingress_pb2.IngressRoutes(), served=[ingress_key(i) for i in served])
    hosts: dict[str, ingress_pb2.IngressHostRoute] = {}
    owners: dict[tuple[str, str, str], str] = {}
    default_owner = ""
    certificates: dict[str, ingress_pb2.IngressCertificate] = {}
    sni_owner: dict[str, str] = {}
    without: list[str] = []

    def lost(key: str, message: str) -> None:
        plan.conflicts.setdefault(key, []).append(message)

    for ingress in served:
        key, namespace = ingress_key(ingress), ingress.metadata.namespace
        redirect = wants_ssl_redirect(ingress)
        if ingress.spec.HasField("default_backend"):
            if default_owner:
                lost(key, f"the default backend is Ingress {default_owner}'s (older)")
            else:
                default_owner = key
                backend = resolve_backend(namespace, ingress.spec.default_backend, services)
                backend.ingress, backend.ssl_redirect = key, redirect
                plan.routes.default_backend.CopyFrom(backend)
        for rule in ingress.spec.rules:
            # A host without paths still claims its requests (for the default backend).
            hosts.setdefault(rule.host, ingress_pb2.IngressHostRoute(host=rule.host))
            for http_path in rule.http.paths:
                path, path_type = served_path(http_path)
                claim = (rule.host, path, path_type)
                owner = owners.get(claim)
                if owner is not None:
                    if owner != key:
                        where = f"host {rule.host or '*'} path {path} ({path_type})"
                        lost(key, f"{where} is served by Ingress {owner} (older)")
                    continue
                owners[claim] = key
                backend = resolve_backend(namespace, http_path.backend, services)
                backend.ingress, backend.ssl_redirect = key, redirect
                hosts[rule.host].paths.add(path=path, path_type=path_type, backend=backend)
        rule_hosts = [r.host for r in ingress.spec.rules if r.host]
        for tls in ingress.spec.tls:
            names = list(tls.hosts) or rule_hosts
            secret_key = f"{namespace}/{tls.secret_name}"
            problem = _certificate(secrets.get(secret_key), tls.secret_name) if tls.secret_name else ""
            if problem or not tls.secret_name:
                if problem:
                    plan.tls_problems.setdefault(key, []).append(
                        f"{problem}: serving a self-signed default certificate for {', '.join(names) or 'every host'}"
                    )
                without.extend(n for n in names if n not in sni_owner)
                continue
            secret = secrets[secret_key]
            for name in names:
                if sni_owner.get(name, secret_key) != secret_key:
                    lost(key, f"the certificate for {name} is from Secret {sni_owner[name]} (an older Ingress')")
                    continue
                sni_owner[name] = secret_key
                certificate = certificates.get(secret_key)
                if certificate is None:
                    certificate = certificates[secret_key] = ingress_pb2.IngressCertificate(
                        secret=secret_key,
                        cert_pem=secret.data[TLS_CERT_KEY],
                        key_pem=secret.data[TLS_PRIVATE_KEY],
                    )
                if name not in certificate.hosts:
                    certificate.hosts.append(name)
    for name in sorted(hosts, key=_host_order):
        host = hosts[name]
        ordered = sorted(host.paths, key=path_order)
        route = plan.routes.hosts.add(host=name)
        route.paths.extend(ordered)
    plan.routes.certificates.extend(certificates[k] for k in sorted(certificates))
    plan.routes.hosts_without_certificate.extend(sorted({n for n in without if n not in sni_owner}))
    return plan
