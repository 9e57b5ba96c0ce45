"""Validation of Ingresses and IngressClasses (networking.k8s.io/v1), with field paths."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate, validate_update
from protos import codec
from protos.kinds import by_kind

BACKEND = {"service": {"name": "web", "port": {"number": 80}}}
INGRESS: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "web"},
    "spec": {
        "ingressClassName": "corral",
        "tls": [{"hosts": ["a.test"], "secretName": "a-tls"}],
        "rules": [{"host": "a.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": BACKEND}]}}],
    },
}


def causes(kind: str, doc: dict[str, Any]) -> list[str]:
    info = by_kind(kind)
    obj, errors = codec.from_dict(doc, info.message)
    assert errors == []
    apply_defaults(info, obj)
    return [str(c) for c in validate(info, obj)]


def with_path(**fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(INGRESS)
    doc["spec"]["rules"][0]["http"]["paths"][0].update(fields)
    return doc


def with_spec(**fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(INGRESS)
    doc["spec"].update(fields)
    return doc


P0 = "spec.rules[0].http.paths[0]"


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        pytest.param(INGRESS, [], id="valid"),
        pytest.param(
            with_path(path="api"),
            [f'{P0}.path: must be an absolute path (start with "/") for pathType Prefix, got "api"'],
            id="relative-prefix",
        ),
        pytest.param(
            with_path(path="/a//b", pathType="Exact"),
            [f'{P0}.path: must not contain "//", got "/a//b"'],
            id="double-slash",
        ),
        pytest.param(with_path(path="", pathType="ImplementationSpecific"), [], id="implementation-specific-empty"),
        pytest.param(
            with_path(pathType=""),
            [f"{P0}.pathType: required: one of Exact, Prefix, ImplementationSpecific"],
            id="no-path-type",
        ),
        pytest.param(
            with_path(pathType="Regex"),
            [f'{P0}.pathType: must be one of "Exact", "Prefix", "ImplementationSpecific", got "Regex"'],
            id="bad-path-type",
        ),
        pytest.param(
            with_path(backend={"resource": {"kind": "Bucket", "name": "b"}}),
            [
                f"{P0}.backend.resource: not supported: "
                "corral's ingress proxies Service backends only (use backend.service)"
            ],
            id="resource-backend",
        ),
        pytest.param(
            with_path(backend={"service": {"name": "web", "port": {}}}),
            [f"{P0}.backend.service.port: exactly one of name or number is required"],
            id="no-port",
        ),
        pytest.param(
            with_path(backend={"service": {"name": "web", "port": {"number": 70000}}}),
            [f"{P0}.backend.service.port.number: must be 1-65535, got 70000"],
            id="port-range",
        ),
        pytest.param(
            with_spec(
                rules=[
                    {"host": "a.test:80", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": BACKEND}]}}
                ]
            ),
            ['spec.rules[0].host: must be a DNS name without a port, got "a.test:80"'],
            id="host-with-port",
        ),
        pytest.param(
            with_spec(
                rules=[
                    {"host": "10.0.0.1", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": BACKEND}]}}
                ]
            ),
            ['spec.rules[0].host: must be a DNS name, not an IP address, got "10.0.0.1"'],
            id="host-ip",
        ),
        pytest.param(
            with_spec(
                rules=[
                    {"host": "*.a.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": BACKEND}]}}
                ]
            ),
            [],
            id="wildcard-host",
        ),
        pytest.param(
            with_spec(
                rules=[
                    {"host": "a.*.test", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": BACKEND}]}}
                ]
            ),
            [
                'spec.rules[0].host: must be a DNS-1123 subdomain (lower case letters, digits, "-", ".") '
                '(a wildcard is "*." followed by a DNS name), got "a.*.test"'
            ],
            id="wildcard-inside",
        ),
        pytest.param(
            with_spec(rules=[{"host": "a.test", "http": {"paths": []}}]),
            ["spec.rules[0].http.paths: required: at least one path"],
            id="no-paths",
        ),
        pytest.param(with_spec(rules=[{"host": "a.test"}], defaultBackend=BACKEND), [], id="host-without-http"),
        pytest.param(
            with_spec(rules=[], tls=[]), ["spec: either `defaultBackend` or `rules` must be specified"], id="empty"
        ),
        pytest.param(with_spec(rules=[], defaultBackend=BACKEND), [], id="default-backend-only"),
        pytest.param(
            with_spec(tls=[{"hosts": ["A.test"], "secretName": "x"}]),
            ['spec.tls[0].hosts[0]: must be a DNS-1123 subdomain (lower case letters, digits, "-", "."), got "A.test"'],
            id="tls-host",
        ),
        pytest.param(
            with_spec(ingressClassName="Bad_Class"),
            ['spec.ingressClassName: must be a DNS-1123 subdomain, got "Bad_Class"'],
            id="class-name",
        ),
    ],
)
def test_ingress_validation(doc: dict[str, Any], want: list[str]) -> None:
    assert causes("Ingress", doc) == want


def ingress_class(controller: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "corral"},
        "spec": {"controller": controller},
    }


@pytest.mark.parametrize(
    ("controller", "want"),
    [
        pytest.param("corral.io/ingress", [], id="valid"),
        pytest.param("", ["spec.controller: required"], id="missing"),
        pytest.param(
            "nginx",
            ['spec.controller: must be a domain-prefixed path (such as "corral.io/ingress"), got "nginx"'],
            id="no-domain",
        ),
    ],
)
def test_ingress_class_validation(controller: str, want: list[str]) -> None:
    assert causes("IngressClass", ingress_class(controller)) == want


def test_ingress_class_controller_is_immutable() -> None:
    info = by_kind("IngressClass")
    old: Message = codec.from_dict(ingress_class("corral.io/ingress"), info.message)[0]
    new: Message = codec.from_dict(ingress_class("example.com/other"), info.message)[0]
    assert [str(c) for c in validate_update(info, old, new)] == ["spec.controller: field is immutable"]


def test_a_tls_secret_needs_its_keys() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "t"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "x"},
    }
    assert causes("Secret", doc) == ["data[tls.key]: required for a Secret of type kubernetes.io/tls"]
