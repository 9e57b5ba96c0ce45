"""The ingress proxy's matching, as Kubernetes documents it: hosts (exact, one-label
wildcards, catch-all), paths (Exact, element-wise Prefix, longest wins, Exact over
Prefix), the default backend, and the certificate for a TLS name."""

from __future__ import annotations

import pytest

from agent.network.ingress.routing import IngressRouter, host_matches, normal_host, path_matches
from controlplane.registry.ingress import ingress_plan
from protos.corral.v1 import ingress_pb2, service_pb2
from protos.ingresses import CONTROLLER, IS_DEFAULT_CLASS


@pytest.mark.parametrize(
    ("rule", "host", "matches"),
    [
        pytest.param("foo.bar.com", "foo.bar.com", True, id="exact"),
        pytest.param("*.foo.com", "bar.foo.com", True, id="wildcard-one-label"),
        pytest.param("*.foo.com", "baz.bar.foo.com", False, id="wildcard-not-two-labels"),
        pytest.param("*.foo.com", "foo.com", False, id="wildcard-not-the-bare-domain"),
        pytest.param("", "anything.example", True, id="no-host-matches-all"),
        pytest.param("foo.bar.com", "bar.com", False, id="other-host"),
    ],
)
def test_host_matching(rule: str, host: str, matches: bool) -> None:
    assert host_matches(rule, host) is matches


@pytest.mark.parametrize(
    ("path_type", "rule", "path", "matches"),
    [
        pytest.param("Prefix", "/", "/anything", True, id="prefix-root"),
        pytest.param("Exact", "/foo", "/foo", True, id="exact"),
        pytest.param("Exact", "/foo", "/bar", False, id="exact-other"),
        pytest.param("Exact", "/foo", "/foo/", False, id="exact-no-trailing-slash"),
        pytest.param("Exact", "/foo/", "/foo", False, id="exact-slash-rule"),
        pytest.param("Prefix", "/foo", "/foo", True, id="prefix-same"),
        pytest.param("Prefix", "/foo", "/foo/", True, id="prefix-trailing-slash"),
        pytest.param("Prefix", "/foo/", "/foo", True, id="prefix-rule-trailing-slash-ignored"),
        pytest.param("Prefix", "/aaa/bb", "/aaa/bbb", False, id="prefix-not-string-prefix"),
        pytest.param("Prefix", "/aaa/bbb", "/aaa/bbb/ccc", True, id="prefix-subpath"),
        pytest.param("Prefix", "/aaa/bbb/", "/aaa/bbbxyz", False, id="prefix-not-partial-element"),
    ],
)
def test_path_matching(path_type: str, rule: str, path: str, matches: bool) -> None:
    """Kubernetes' Ingress documentation's examples table."""
    assert path_matches(path_type, rule, path) is matches


def router(
    rules: list[tuple[str, str, str, str]], *, default: str = "", certs: dict[str, list[str]] | None = None
) -> IngressRouter:
    """Built through the control plane's core, so the order is the one nodes get."""
    i = ingress_pb2.Ingress()
    i.metadata.name, i.metadata.namespace = "web", "default"
    services = {}
    for host, path, path_type, svc in rules:
        rule = next((r for r in i.spec.rules if r.host == host), None) or i.spec.rules.add(host=host)
        p = rule.http.paths.add(path=path, path_type=path_type)
        p.backend.service.name, p.backend.service.port.number = svc, 80
    for svc in {r[3] for r in rules} | ({default} if default else set()):
        s = service_pb2.Service()
        s.metadata.name, s.metadata.namespace = svc, "default"
        s.spec.ports.add(port=80)
        services[f"default/{svc}"] = s
    if default:
        i.spec.default_backend.service.name, i.spec.default_backend.service.port.number = default, 80
    klass = ingress_pb2.IngressClass(spec=ingress_pb2.IngressClassSpec(controller=CONTROLLER))
    klass.metadata.name = "corral"
    klass.metadata.annotations[IS_DEFAULT_CLASS] = "true"
    routes = ingress_plan([i], [klass], services, {}).routes
    for secret, hosts in (certs or {}).items():
        routes.certificates.add(secret=secret, hosts=hosts)
    return IngressRouter(routes)


RULES = [
    ("a.test", "/", "Prefix", "a"),
    ("a.test", "/api", "Prefix", "api"),
    ("a.test", "/api/v1", "Exact", "v1"),
    ("a.test", "/exact", "Exact", "exact"),
    ("a.test", "/exact", "Prefix", "prefix"),
    ("*.b.test", "/", "Prefix", "wild"),
    ("", "/catch", "Prefix", "all"),
]


@pytest.mark.parametrize(
    ("host", "path", "service"),
    [
        pytest.param("a.test", "/", "a", id="root"),
        pytest.param("A.Test:8443", "/page", "a", id="host-case-and-port"),
        pytest.param("a.test", "/api", "api", id="longest-prefix"),
        pytest.param("a.test", "/api/v2", "api", id="prefix-below"),
        pytest.param("a.test", "/api/v1", "v1", id="longer-exact-wins"),
        pytest.param("a.test", "/api/v1/x", "api", id="exact-only-exact"),
        pytest.param("a.test", "/exact", "exact", id="exact-over-prefix-same-path"),
        pytest.param("a.test", "/exact/more", "prefix", id="prefix-of-same-path"),
        pytest.param("x.b.test", "/", "wild", id="wildcard"),
        pytest.param("x.y.b.test", "/catch", "all", id="wildcard-one-label-only"),
        pytest.param("other", "/catch/it", "all", id="catch-all-host"),
        pytest.param("other", "/", None, id="nothing-404"),
        pytest.param("x.b.test", "/catch", "wild", id="host-chosen-before-path"),
    ],
)
def test_request_routing(host: str, path: str, service: str | None) -> None:
    match = router(RULES).match(host, path)
    assert (match.backend.service.split("/")[1] if match else None) == service


def test_a_host_without_paths_goes_to_the_default_backend_not_the_catch_all() -> None:
    r = router([("", "/", "Prefix", "all")], default="fallback")
    r.routes.hosts.add(host="quiet.test")  # as the control plane sends a rule without http
    r = IngressRouter(r.routes)
    match = r.match("quiet.test", "/")
    assert match is not None and match.backend.service == "default/fallback"
    match = r.match("other.test", "/")
    assert match is not None and match.backend.service == "default/all"


def test_the_default_backend_takes_what_no_rule_matches() -> None:
    r = router([("a.test", "/api", "Exact", "api")], default="fallback")
    match = r.match("a.test", "/other")
    assert match is not None and match.backend.service == "default/fallback"
    assert IngressRouter().match("a.test", "/") is None


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        pytest.param("a.test", "default/a", id="exact"),
        pytest.param("x.a.test", "default/wild", id="wildcard"),
        pytest.param("A.TEST", "default/a", id="case"),
        pytest.param("b.test", None, id="none-default"),
        pytest.param("", None, id="no-sni"),
    ],
)
def test_certificate_by_sni(name: str, secret: str | None) -> None:
    r = router(RULES, certs={"default/a": ["a.test"], "default/wild": ["*.a.test"]})
    assert r.certificate_for(name) == secret


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        pytest.param("a.test:80", "a.test", id="port"),
        pytest.param("A.test.", "a.test", id="case-dot"),
        pytest.param("[::1]:443", "[::1]", id="ipv6"),
    ],
)
def test_normal_host(raw: str, host: str) -> None:
    assert normal_host(raw) == host
