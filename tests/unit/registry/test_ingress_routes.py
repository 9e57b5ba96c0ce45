"""The control plane's ingress routing core: which Ingresses are served, path order,
backend resolution, conflicts (oldest wins) and TLS certificates from Secrets."""

from __future__ import annotations

import pytest

from controlplane.registry.ingress import ingress_plan
from protos.corral.v1 import ingress_pb2, secret_pb2, service_pb2
from protos.ingresses import CONTROLLER, IS_DEFAULT_CLASS


def klass(name: str = "corral", controller: str = CONTROLLER, *, default: bool = True) -> ingress_pb2.IngressClass:
    c = ingress_pb2.IngressClass(spec=ingress_pb2.IngressClassSpec(controller=controller))
    c.metadata.name = name
    if default:
        c.metadata.annotations[IS_DEFAULT_CLASS] = "true"
    return c


def ingress(
    name: str,
    rules: list[tuple[str, str, str, str]] = (),  # type: ignore[assignment]
    *,
    age: int = 0,
    class_name: str | None = None,
    tls: list[tuple[list[str], str]] = (),  # type: ignore[assignment]
    default: str = "",
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
) -> ingress_pb2.Ingress:
    """rules: (host, path, pathType, service)."""
    i = ingress_pb2.Ingress()
    i.metadata.name, i.metadata.namespace = name, namespace
    i.metadata.creation_timestamp.FromSeconds(1_000_000 + age)
    i.metadata.annotations.update(annotations or {})
    if class_name is not None:
        i.spec.ingress_class_name = class_name
    for host, path, path_type, svc in rules:
        rule = next((r for r in i.spec.rules if r.host == host), None) or i.spec.rules.add(host=host)
        p = rule.http.paths.add(path=path, path_type=path_type)
        p.backend.service.name = svc
        p.backend.service.port.number = 80
    for hosts, secret in tls:
        i.spec.tls.add(hosts=hosts, secret_name=secret)
    if default:
        i.spec.default_backend.service.name = default
        i.spec.default_backend.service.port.number = 80
    return i


def service(name: str, port: int = 80, port_name: str = "") -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name, s.metadata.namespace = name, "default"
    s.spec.ports.add(name=port_name, port=port)
    return s


def tls_secret(
    name: str, cert: bytes = b"CERT", key: bytes = b"KEY", type_: str = "kubernetes.io/tls"
) -> secret_pb2.Secret:
    s = secret_pb2.Secret(type=type_)
    s.metadata.name, s.metadata.namespace = name, "default"
    s.data["tls.crt"], s.data["tls.key"] = cert, key
    return s


SERVICES = {f"default/{n}": service(n) for n in ("a", "b", "api", "c")}


def paths(plan_routes: ingress_pb2.IngressRoutes) -> list[tuple[str, str, str, str]]:
    return [(h.host, p.path, p.path_type, p.backend.service.split("/")[1]) for h in plan_routes.hosts for p in h.paths]


def test_hosts_most_specific_first_and_paths_longest_first_exact_before_prefix() -> None:
    plan = ingress_plan(
        [
            ingress(
                "web",
                [
                    ("", "/", "Prefix", "c"),
                    ("*.test", "/", "Prefix", "b"),
                    ("a.test", "/", "Prefix", "a"),
                    ("a.test", "/api", "Prefix", "api"),
                    ("a.test", "/api", "Exact", "a"),
                    ("a.test", "", "ImplementationSpecific", "b"),
                ],
            )
        ],
        [klass()],
        SERVICES,
        {},
    )
    assert paths(plan.routes) == [
        ("a.test", "/api", "Exact", "a"),
        ("a.test", "/api", "Prefix", "api"),
        ("a.test", "/", "Prefix", "a"),
        ("*.test", "/", "Prefix", "b"),
        ("", "/", "Prefix", "c"),
    ]
    # ImplementationSpecific "" is Prefix "/": the same claim as the older rule, which keeps it.
    assert plan.conflicts == {}


@pytest.mark.parametrize(
    ("classes", "ing", "served"),
    [
        pytest.param([klass()], ingress("x", [("", "/", "Prefix", "a")]), True, id="no-class-default-is-corral"),
        pytest.param([klass(default=False)], ingress("x", [("", "/", "Prefix", "a")]), False, id="no-class-no-default"),
        pytest.param([klass()], ingress("x", [("", "/", "Prefix", "a")], class_name="corral"), True, id="named"),
        pytest.param(
            [klass(), klass("nginx", "k8s.io/ingress-nginx", default=False)],
            ingress("x", [("", "/", "Prefix", "a")], class_name="nginx"),
            False,
            id="another-controller",
        ),
        pytest.param([klass()], ingress("x", [("", "/", "Prefix", "a")], class_name="gone"), False, id="unknown-class"),
        pytest.param(
            [klass(), klass("mine", default=False)],
            ingress("x", [("", "/", "Prefix", "a")], annotations={"kubernetes.io/ingress.class": "mine"}),
            True,
            id="annotation-names-a-corral-class",
        ),
    ],
)
def test_which_ingresses_are_served(
    classes: list[ingress_pb2.IngressClass], ing: ingress_pb2.Ingress, served: bool
) -> None:
    plan = ingress_plan([ing], classes, SERVICES, {})
    assert plan.served == (["default/x"] if served else [])
    assert bool(plan.routes.hosts) is served


def test_the_oldest_ingress_wins_a_conflict_and_the_loser_is_told() -> None:
    old = ingress("old", [("a.test", "/", "Prefix", "a")], age=0, default="a")
    new = ingress("new", [("a.test", "/", "Prefix", "b"), ("a.test", "/x", "Prefix", "b")], age=5, default="b")
    plan = ingress_plan([new, old], [klass()], SERVICES, {})
    assert paths(plan.routes) == [("a.test", "/x", "Prefix", "b"), ("a.test", "/", "Prefix", "a")]
    assert plan.routes.default_backend.service == "default/a"
    assert plan.conflicts == {
        "default/new": [
            "the default backend is Ingress default/old's (older)",
            "host a.test path / (Prefix) is served by Ingress default/old (older)",
        ]
    }


@pytest.mark.parametrize(
    ("port_name", "number", "service_port_name", "want_port", "problem"),
    [
        pytest.param("", 80, "http", "http", "", id="number-resolves-to-the-port-name"),
        pytest.param("http", 0, "http", "http", "", id="by-name"),
        pytest.param("", 8080, "http", "", 'Service "a" has no port 8080', id="no-such-number"),
        pytest.param("web", 0, "http", "", 'Service "a" has no port web', id="no-such-name"),
    ],
)
def test_backend_port_resolution(
    port_name: str, number: int, service_port_name: str, want_port: str, problem: str
) -> None:
    ing = ingress("x", [("", "/", "Prefix", "a")])
    port = ing.spec.rules[0].http.paths[0].backend.service.port
    port.name, port.number = port_name, number
    plan = ingress_plan([ing], [klass()], {"default/a": service("a", 80, service_port_name)}, {})
    backend = plan.routes.hosts[0].paths[0].backend
    assert (backend.port_name, backend.problem) == (want_port, problem)


def test_a_missing_service_is_a_problem_on_the_backend() -> None:
    plan = ingress_plan([ingress("x", [("", "/", "Prefix", "nope")])], [klass()], SERVICES, {})
    assert plan.routes.hosts[0].paths[0].backend.problem == 'no Service "nope" in namespace "default"'


def test_certificates_come_only_from_referenced_tls_secrets() -> None:
    ings = [
        ingress("one", [("a.test", "/", "Prefix", "a")], tls=[(["a.test", "*.a.test"], "a-tls")], age=0),
        ingress("two", [("b.test", "/", "Prefix", "b")], tls=[([], "b-tls")], age=1),
        ingress("three", [("c.test", "/", "Prefix", "c")], tls=[(["c.test"], "missing")], age=2),
        ingress("four", [("d.test", "/", "Prefix", "c")], tls=[(["d.test"], "opaque")], age=3),
        ingress("five", [("a.test", "/z", "Prefix", "c")], tls=[(["a.test"], "b-tls")], age=4),
        ingress("other", [("e.test", "/", "Prefix", "c")], tls=[(["e.test"], "unused")], class_name="nginx"),
    ]
    secrets = {
        f"default/{s.metadata.name}": s
        for s in (tls_secret("a-tls", b"A"), tls_secret("b-tls", b"B"), tls_secret("opaque", type_="Opaque"))
    }
    secrets["default/unused"] = tls_secret("unused")
    plan = ingress_plan(ings, [klass()], SERVICES, secrets)
    got = {c.secret: (c.cert_pem, list(c.hosts)) for c in plan.routes.certificates}
    assert got == {"default/a-tls": (b"A", ["a.test", "*.a.test"]), "default/b-tls": (b"B", ["b.test"])}
    assert list(plan.routes.hosts_without_certificate) == ["c.test", "d.test"]
    assert plan.tls_problems == {
        "default/three": ['Secret "missing" not found: serving a self-signed default certificate for c.test'],
        "default/four": [
            'Secret "opaque" is of type "Opaque", not kubernetes.io/tls: '
            "serving a self-signed default certificate for d.test"
        ],
    }
    assert plan.conflicts == {
        "default/five": ["the certificate for a.test is from Secret default/a-tls (an older Ingress')"]
    }


def test_ssl_redirect_annotations() -> None:
    ings = [
        ingress("plain", [("a.test", "/", "Prefix", "a")]),
        ingress(
            "nginx", [("b.test", "/", "Prefix", "b")], annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "true"}
        ),
        ingress(
            "force",
            [("c.test", "/", "Prefix", "c")],
            annotations={"nginx.ingress.kubernetes.io/force-ssl-redirect": "True"},
        ),
        ingress("corral", [("d.test", "/", "Prefix", "c")], annotations={"corral.io/ssl-redirect": "true"}),
        ingress("off", [("e.test", "/", "Prefix", "c")], annotations={"corral.io/ssl-redirect": "false"}),
    ]
    plan = ingress_plan(ings, [klass()], SERVICES, {})
    assert {h.host: h.paths[0].backend.ssl_redirect for h in plan.routes.hosts} == {
        "a.test": False,
        "b.test": True,
        "c.test": True,
        "d.test": True,
        "e.test": False,
    }


def test_a_rule_without_paths_still_claims_its_host() -> None:
    ing = ingress("x", [("", "/", "Prefix", "a")], default="b")
    ing.spec.rules.add(host="quiet.test")
    plan = ingress_plan([ing], [klass()], SERVICES, {})
    assert [(h.host, len(h.paths)) for h in plan.routes.hosts] == [("quiet.test", 0), ("", 1)]
