"""Which backend a request reaches through the managed nginx and the managed Caddy, as Kubernetes documents Ingress
matching: hosts (exact, one-label wildcards, catch-all; case and port ignored), paths
(Exact, element-wise Prefix, case-sensitive, longest wins, Exact over Prefix), the host
chosen before the path, the default backend, 404; and the certificate a TLS name gets."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509

from agent.network.ingress.proxy import IngressPorts, IngressProxy
from controlplane.registry.ingress import ingress_plan
from corral.common.pki.certs import cert_pem, key_pem, self_signed
from protos.corral.v1 import ingress_pb2, secret_pb2, service_pb2
from protos.ingresses import CONTROLLER, IS_DEFAULT_CLASS
from tests.integration.test_ingress_proxy import LOOPBACK, backend, fetch, free_port, service_route, wait_for

RULES = [
    ("a.test", "/", "Prefix", "a"),
    ("a.test", "/api", "Prefix", "api"),
    ("a.test", "/api/v1", "Exact", "v1"),
    ("a.test", "/exact", "Exact", "exact"),
    ("a.test", "/exact", "Prefix", "prefix"),
    ("*.b.test", "/", "Prefix", "wild"),
    ("", "/catch", "Prefix", "all"),
    ("quiet.test", "/only", "Exact", "a"),
]
DEFAULT = "fallback"
CERTS = {"a-tls": ["a.test"], "wild-tls": ["*.a.test"]}


def routes() -> ingress_pb2.IngressRoutes:
    """Through the control plane's core, so the order is the one nodes get."""
    i = ingress_pb2.Ingress()
    i.metadata.name, i.metadata.namespace = "web", "default"
    services = {}
    for host, path, path_type, svc in RULES:
        rule = next((r for r in i.spec.rules if r.host == host), None) or i.spec.rules.add(host=host)
        p = rule.http.paths.add(path=path, path_type=path_type)
        p.backend.service.name, p.backend.service.port.number = svc, 80
    for svc in {r[3] for r in RULES} | {DEFAULT}:
        s = service_pb2.Service()
        s.metadata.name, s.metadata.namespace = svc, "default"
        s.spec.ports.add(name="http", port=80)
        services[f"default/{svc}"] = s
    i.spec.default_backend.service.name, i.spec.default_backend.service.port.number = DEFAULT, 80
    secrets = {}
    for name, hosts in CERTS.items():
        i.spec.tls.add(hosts=hosts, secret_name=name)
        key, cert = self_signed(name, hosts, dt.datetime.now(dt.UTC))
        secret = secret_pb2.Secret(type="kubernetes.io/tls", data={"tls.crt": cert_pem(cert), "tls.key": key_pem(key)})
        secret.metadata.name, secret.metadata.namespace = name, "default"
        secrets[f"default/{name}"] = secret
    klass = ingress_pb2.IngressClass(spec=ingress_pb2.IngressClassSpec(controller=CONTROLLER))
    klass.metadata.name = "corral"
    klass.metadata.annotations[IS_DEFAULT_CLASS] = "true"
    return ingress_plan([i], [klass], services, secrets).routes


@pytest.fixture(params=["nginx", "caddy"])
async def proxy(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[IngressProxy]:
    runners: list[web.AppRunner] = []
    services = {}
    for name in {r[3] for r in RULES} | {DEFAULT}:
        runner, port = await backend(name)
        runners.append(runner)
        services[f"default/{name}"] = service_route(name, [(port, "")])
    ports = IngressPorts(free_port(), free_port())
    proxy = IngressProxy([LOOPBACK], ports, directory=tmp_path / "ingress", data_path=request.param)
    proxy.update(services)
    proxy.update_ingress(routes())
    task = asyncio.create_task(proxy.run())
    try:
        await wait_for(lambda: len(proxy.bound) == 2, "the ingress listens")
        yield proxy
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for runner in runners:
            await runner.cleanup()


@pytest.mark.parametrize(
    ("host", "path", "service"),
    [
        pytest.param("a.test", "/", "a", id="root"),
        pytest.param("A.Test:8443", "/page", "a", id="host-case-and-port"),
        pytest.param("a.test", "/api", "api", id="longest-prefix"),
        pytest.param("a.test", "/api/v2", "api", id="prefix-below"),
        pytest.param("a.test", "/apix", "a", id="prefix-by-element"),
        pytest.param("a.test", "/API", "a", id="path-case-sensitive"),
        pytest.param("a.test", "/api/v1", "v1", id="longer-exact-wins"),
        pytest.param("a.test", "/api/v1/x", "api", id="exact-only-exact"),
        pytest.param("a.test", "/exact", "exact", id="exact-over-prefix-same-path"),
        pytest.param("a.test", "/exact/more", "prefix", id="prefix-of-same-path"),
        pytest.param("x.b.test", "/", "wild", id="wildcard"),
        pytest.param("x.y.b.test", "/catch", "all", id="wildcard-one-label-only"),
        pytest.param("x.b.test.evil", "/catch", "all", id="wildcard-to-the-end-only"),
        pytest.param("other", "/catch/it", "all", id="catch-all-host"),
        pytest.param("other", "/", DEFAULT, id="default-backend"),
        pytest.param("x.b.test", "/catch", "wild", id="host-chosen-before-path"),
        pytest.param("quiet.test", "/", DEFAULT, id="host-without-match-default-not-catch-all"),
    ],
)
async def test_request_routing(proxy: IngressProxy, host: str, path: str, service: str) -> None:
    status, _, body = await asyncio.to_thread(fetch, proxy.ports.http, host, path)
    assert (status, json.loads(body)["name"]) == (200, service)


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        pytest.param("a.test", "a-tls", id="exact"),
        pytest.param("x.a.test", "wild-tls", id="wildcard"),
        pytest.param("A.TEST", "a-tls", id="case"),
        pytest.param("b.test", "corral ingress default certificate", id="none-default"),
    ],
)
async def test_certificate_by_sni(proxy: IngressProxy, name: str, subject: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    _, writer = await asyncio.open_connection(LOOPBACK, proxy.ports.https, ssl=context, server_hostname=name)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    assert f"CN={subject}" in x509.load_der_x509_certificate(der).subject.rfc4514_string()
