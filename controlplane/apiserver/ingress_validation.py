"""Validation of Ingresses and IngressClasses (networking.k8s.io/v1), as Kubernetes'
ValidateIngress and ValidateIngressClass check them. Pure.

corral refuses what it cannot serve: a `resource` backend (only Service
backends are proxied). An unknown class name is accepted, as Kubernetes does
(the client warns at apply that corral will not serve it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from controlplane.apiserver.problems import Problems
from protos.corral.v1 import ingress_pb2
from protos.ingresses import EXACT, PATH_TYPES, PREFIX

NameCheck = Callable[[Problems, str, str], None]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes' "path must not contain" rules for Exact and Prefix paths.
_BAD_PARTS = ("//", "/./", "/../", "%2f", "%2F")
_BAD_ENDINGS = ("/..", "/.")
# A controller name: a domain-prefixed path (Kubernetes' IsDomainPrefixedPath), at most 250 characters.
_CONTROLLER = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$"
)
MAX_CONTROLLER = 250


def validate_host(p: Problems, path: str, host: str, *, wildcard: bool = True) -> None:
    """A DNS name (lower case), `*.` as its whole first label if `wildcard`; not an IP, no port."""
    if ":" in host:
        p.add(path, f'must be a DNS name without a port, got "{host}"')
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        p.add(path, f'must be a DNS name, not an IP address, got "{host}"')
        return
    name = host[2:] if wildcard and host.startswith("*.") else host
    if len(host) > 253 or not _DNS_SUBDOMAIN.match(name):
        shape = ' (a wildcard is "*." followed by a DNS name)' if "*" in host else ""
        p.add(path, f'must be a DNS-1123 subdomain (lower case letters, digits, "-", "."){shape}, got "{host}"')


def validate_ingress(p: Problems, ingress: ingress_pb2.Ingress, service_name: NameCheck, port_name: NameCheck) -> None:
    spec = ingress.spec
    if spec.HasField("ingress_class_name") and not _DNS_SUBDOMAIN.match(spec.ingress_class_name):
        p.add("spec.ingressClassName", f'must be a DNS-1123 subdomain, got "{spec.ingress_class_name}"')
    if not spec.HasField("default_backend") and not spec.rules:
        p.add("spec", "either `defaultBackend` or `rules` must be specified")
    if spec.HasField("default_backend"):
        _backend(p, "spec.defaultBackend", spec.default_backend, service_name, port_name)
    for i, tls in enumerate(spec.tls):
        for j, host in enumerate(tls.hosts):
            validate_host(p, f"spec.tls[{i}].hosts[{j}]", host)
        if tls.secret_name and not _DNS_SUBDOMAIN.match(tls.secret_name):
            p.add(f"spec.tls[{i}].secretName", f'must be a DNS-1123 subdomain, got "{tls.secret_name}"')
    for i, rule in enumerate(spec.rules):
        at = f"spec.rules[{i}]"
        if rule.host:
            validate_host(p, f"{at}.host", rule.host)
        if not rule.HasField("http"):
            continue  # a host without paths: its requests go to the default backend
        if not rule.http.paths:
            p.add(f"{at}.http.paths", "required: at least one path")
            continue
        for j, http_path in enumerate(rule.http.paths):
            _path(p, f"{at}.http.paths[{j}]", http_path)
            _backend(p, f"{at}.http.paths[{j}].backend", http_path.backend, service_name, port_name)


def _path(p: Problems, at: str, http_path: ingress_pb2.HTTPIngressPath) -> None:
    if not http_path.path_type:
        p.add(f"{at}.pathType", f"required: one of {', '.join(PATH_TYPES)}")
        return
    p.one_of(f"{at}.pathType", http_path.path_type, PATH_TYPES)
    path = http_path.path
    if http_path.path_type in (EXACT, PREFIX):
        if not path.startswith("/"):
            why = f'must be an absolute path (start with "/") for pathType {http_path.path_type}'
            p.add(f"{at}.path", f'{why}, got "{path}"')
            return
        bad = next((part for part in _BAD_PARTS if part in path), None) or next(
            (end for end in _BAD_ENDINGS if path.endswith(end)), None
        )
        if bad is not None:
            p.add(f"{at}.path", f'must not contain "{bad}", got "{path}"')
    elif path and not path.startswith("/"):
        p.add(f"{at}.path", f'must be an absolute path (start with "/"), got "{path}"')


def _backend(
    p: Problems, at: str, backend: ingress_pb2.IngressBackend, service_name: NameCheck, port_name: NameCheck
) -> None:
    has_service, has_resource = backend.HasField("service"), backend.HasField("resource")
    if has_resource:
        p.add(
            f"{at}.resource",
            "not supported: corral's ingress proxies Service backends only (use backend.service)",
        )
        return
    if not has_service:
        p.add(f"{at}.service", "required")
        return
    service_name(p, f"{at}.service.name", backend.service.name)
    port = backend.service.port
    if bool(port.name) == bool(port.number):
        p.add(f"{at}.service.port", "exactly one of name or number is required")
    elif port.name:
        port_name(p, f"{at}.service.port.name", port.name)
    else:
        p.port(f"{at}.service.port.number", port.number)


def validate_ingress_class(p: Problems, ingress_class: ingress_pb2.IngressClass) -> None:
    controller = ingress_class.spec.controller
    if not controller:
        p.add("spec.controller", "required")
    elif len(controller) > MAX_CONTROLLER:
        p.add("spec.controller", f"must be no more than {MAX_CONTROLLER} characters, got {len(controller)}")
    elif not _CONTROLLER.match(controller):
        p.add("spec.controller", f'must be a domain-prefixed path (such as "corral.io/ingress"), got "{controller}"')


def validate_ingress_class_update(p: Problems, old: ingress_pb2.IngressClass, new: ingress_pb2.IngressClass) -> None:
    if old.spec.controller != new.spec.controller:
        p.add("spec.controller", "field is immutable")
