"""The ingress table as nginx's config: Kubernetes' path rules as locations, host rules as
server names in the table's order, upstreams with the Services' weights, redirects, 503s,
certificates by SNI, headers and WebSockets; and `nginx -t` accepts a representative config
(the real binary, in a temporary prefix). (tests/integration/test_ingress_proxy.py sends
requests through a real nginx with these configs.)"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.network.ingress.certs import default_certificate
from agent.network.ingress.config import Listen, Upstreams
from agent.network.ingress.nginx import find_nginx
from agent.network.ingress.nginx_config import NginxConfig, Settings, locations, nginx_config, server_name
from corral.common.pki.certs import cert_pem, key_pem, self_signed
from protos.corral.v1 import discovery_pb2, ingress_pb2
from tests.unit.agent.test_ingress_config import kernel_route, route, target

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
DEFAULT = default_certificate(NOW)


@dataclass
class Server:
    listen: list[str] = field(default_factory=list)
    names: str = ""
    certificate: str = ""
    locations: dict[str, list[str]] = field(default_factory=dict)


def servers(text: str) -> list[Server]:
    """The server blocks of a generated config (its own layout: 4 spaces a level)."""
    found: list[Server] = []
    location: list[str] | None = None
    for line in text.splitlines():
        if line == "    server {":
            found.append(Server())
        elif line.startswith("        listen "):
            found[-1].listen.append(line.strip().removeprefix("listen ").rstrip(";"))
        elif line.startswith("        server_name "):
            found[-1].names = line.strip().removeprefix("server_name ").rstrip(";")
        elif line.startswith("        ssl_certificate "):
            found[-1].certificate = line.strip().removeprefix("ssl_certificate ").rstrip(";")
        elif line.startswith("        location ") and line.endswith("{"):
            location = found[-1].locations.setdefault(line.strip()[len("location ") : -2], [])
        elif line.startswith("            ") and location is not None:
            location.append(line.strip())
        elif line == "        }":
            location = None
    return found


def certificate(*hosts: str) -> tuple[bytes, bytes]:
    key, cert = self_signed(hosts[0], list(hosts), NOW)
    return cert_pem(cert), key_pem(key)


def render(
    t: ingress_pb2.IngressRoutes,
    services: dict[str, discovery_pb2.ServiceRoute] | None = None,
    *,
    http: int = 80,
    https: int = 443,
    certificates: list[ingress_pb2.IngressCertificate] | None = None,
    upstreams: Upstreams = Upstreams(),  # noqa: B008
    user: str | None = None,
) -> NginxConfig:
    return nginx_config(
        t,
        services if services is not None else {"default/s": route(("http", "TCP", 80))},
        listen=Listen(["127.0.0.1"], http, https),
        settings=Settings("/d", user=user),
        certificates=certificates or [],
        default_certificate=DEFAULT,
        upstreams=upstreams,
    )


def two_endpoints() -> discovery_pb2.ServiceRoute:
    r = route(("http", "TCP", 80), weights={"new": 1})
    r.ports[0].backends.add(address="10.0.0.1", port=81, pod="p81", group="new")
    return r


def table(*hosts: str, redirect: str = "") -> ingress_pb2.IngressRoutes:
    t = ingress_pb2.IngressRoutes()
    for host in hosts:
        h = t.hosts.add(host=host)
        h.paths.add(path="/api", path_type="Exact", backend=target(ssl_redirect=host == redirect))
        h.paths.add(path="/", path_type="Prefix", backend=target())
    return t


@pytest.mark.parametrize(
    ("path_type", "path", "expected"),
    [
        pytest.param("Exact", "/foo", ['= "/foo"'], id="exact"),
        pytest.param("Exact", "/foo/", ['= "/foo/"'], id="exact-trailing-slash-kept"),
        pytest.param("Prefix", "/foo", ['= "/foo"', '"/foo/"'], id="prefix-by-elements"),
        pytest.param("Prefix", "/foo/", ['= "/foo"', '"/foo/"'], id="prefix-trailing-slash-ignored"),
        pytest.param("Prefix", "/", ['"/"'], id="prefix-root"),
        pytest.param("Prefix", '/a"b', ['= "/a\\"b"', '"/a\\"b/"'], id="quoted"),
    ],
)
def test_locations(path_type: str, path: str, expected: list[str]) -> None:
    assert locations(path_type, path) == expected


@pytest.mark.parametrize(
    ("host", "name", "matches"),
    [
        pytest.param("*.b.test", "x.b.test", True, id="one-label"),
        pytest.param("*.b.test", "y.x.b.test", False, id="not-two-labels"),
        pytest.param("*.b.test", "b.test", False, id="not-the-domain"),
        pytest.param("*.b.test", "xb.test", False, id="dot-is-literal"),
    ],
)
def test_wildcard_hosts_match_exactly_one_label(host: str, name: str, matches: bool) -> None:
    pattern = server_name(host).strip('"')
    assert pattern.startswith("~")
    assert (re.search(pattern[1:], name) is not None) is matches


def test_hosts_in_the_tables_order_paths_as_locations_and_404() -> None:
    t = table("a.test", "*.b.test", "")
    t.hosts[0].paths.add(path="/api", path_type="Prefix", backend=target(service="default/other"))
    http = servers(render(t, https=0).text)
    assert [s.names for s in http] == ['"_"', '"a.test"', '"~^[^.]+[.]b[.]test$"']
    assert http[0].listen == ["127.0.0.1:80 default_server"]
    # Exact /api first: the Prefix /api's exact location is left to it, its /api/ kept.
    assert list(http[1].locations) == ['= "/api"', '"/"', '"/api/"']
    assert "503" in http[1].locations['"/api/"'][0]
    # No default backend: a host's unmatched paths are 404, as are unknown hosts.
    nothing = servers(render(ingress_pb2.IngressRoutes(), https=0).text)
    assert nothing[0].locations['"/"'][0].startswith("return 404")


def test_the_default_backend_replaces_the_404() -> None:
    t = table("a.test")
    t.hosts[0].paths.pop()  # only Exact /api
    t.default_backend.CopyFrom(target())
    for s in servers(render(t, https=0).text):
        assert s.locations['"/"'][0].startswith("proxy_pass http://corral_")


@pytest.mark.parametrize(
    ("https", "location"),
    [
        pytest.param(443, "return 308 https://$host$request_uri;", id="default-port"),
        pytest.param(8443, "return 308 https://$host:8443$request_uri;", id="other-port"),
        pytest.param(0, None, id="no-https-port"),
    ],
)
def test_redirect_to_https_when_asked(https: int, location: str | None) -> None:
    config = servers(render(table("a.test", redirect="a.test"), https=https).text)
    http, tls = config[1], config[3] if https else None
    assert (http.locations['= "/api"'][0] == location) is (location is not None)
    assert http.locations['"/"'][0].startswith("proxy_pass")  # only the rule that asks
    if tls is not None:
        assert tls.locations['= "/api"'][0].startswith("proxy_pass")  # not over HTTPS


@pytest.mark.parametrize(
    ("services", "upstreams", "expected"),
    [
        pytest.param(
            {"default/s": two_endpoints()},
            Upstreams(),
            ["server 10.0.0.1:80 max_fails=0;", "server 10.0.0.1:81 max_fails=0;", "keepalive 32;"],
            id="weighted-even",
        ),
        pytest.param(
            {"default/s": route(("http", "TCP", 80), lb="LeastConnections")},
            Upstreams(),
            ["least_conn;", "server 10.0.0.1:80 max_fails=0;", "keepalive 32;"],
            id="least-connections",
        ),
        pytest.param(
            {"default/s": kernel_route()},
            Upstreams(via_cluster_ip=True),
            ["server 10.43.0.7:8080 max_fails=0;"],
            id="kernel-cluster-ip-no-keepalive",
        ),
    ],
)
def test_upstreams(services: dict[str, discovery_pb2.ServiceRoute], upstreams: Upstreams, expected: list[str]) -> None:
    text = render(table("a.test"), services, https=0, upstreams=upstreams).text
    block = re.search(r"upstream corral_0 \{\n(.*?)\n    \}", text, re.S)
    assert block is not None
    assert [line.strip() for line in block.group(1).splitlines()] == expected
    location = servers(text)[1].locations['"/"']
    close = "$corral_connection_close" if upstreams.via_cluster_ip else "$corral_connection"
    assert f"proxy_set_header Connection {close};" in location


def test_canary_weights() -> None:
    r = discovery_pb2.ServiceRoute(namespace="default", name="s", weights={"v1": 90, "v2": 10})
    port = r.ports.add(name="http", protocol="TCP", port=80)
    port.backends.add(address="10.0.0.1", port=1, pod="a", group="v1")
    port.backends.add(address="10.0.0.2", port=1, pod="b", group="v2")
    text = render(table("a.test"), {"default/s": r}, https=0).text
    assert "server 10.0.0.1:1 weight=9 max_fails=0;" in text and "server 10.0.0.2:1 max_fails=0;" in text


@pytest.mark.parametrize(
    ("services", "backend", "body"),
    [
        pytest.param({}, target(problem="no port 81"), "no port 81", id="problem"),
        pytest.param({}, target(), "default/s is not known here", id="unknown-service"),
        pytest.param({"default/s": route()}, target(), "is not known here", id="no-port"),
        pytest.param(
            {"default/s": route(("http", "TCP", 80), weights={"old": 1})},
            target(),
            "no ready endpoint",
            id="none-ready",
        ),
    ],
)
def test_backends_without_endpoints_are_503(
    services: dict[str, discovery_pb2.ServiceRoute], backend: ingress_pb2.IngressRouteBackend, body: str
) -> None:
    t = ingress_pb2.IngressRoutes()
    t.hosts.add(host="a.test").paths.add(path="/", path_type="Prefix", backend=backend)
    answer = servers(render(t, services, https=0).text)[1].locations['"/"']
    assert answer[0].startswith('return 503 "503 Service Unavailable: ') and body in answer[0]


def test_forwarded_headers_and_websockets_in_every_proxied_location() -> None:
    text = render(table("a.test", "")).text
    assert 'map $http_upgrade $corral_connection { default upgrade; "" ""; }' in text
    for s in servers(text):
        for name, body in s.locations.items():
            if body[0].startswith("proxy_pass"):
                for header in (
                    "Host $http_host",
                    "Upgrade $http_upgrade",
                    "X-Forwarded-For $remote_addr",
                    "X-Forwarded-Proto $scheme",
                    "X-Forwarded-Host $host",
                    "X-Real-IP $remote_addr",
                ):
                    assert f"proxy_set_header {header};" in body, (s.names, name, header)


def test_certificates_by_sni_the_default_for_other_names_and_http2() -> None:
    wild, a = certificate("*.a.test"), certificate("a.test", "www.a.test")
    certificates = [
        ingress_pb2.IngressCertificate(secret="default/wild", hosts=["*.a.test"], cert_pem=wild[0], key_pem=wild[1]),
        ingress_pb2.IngressCertificate(secret="default/a", hosts=["a.test", "www.a.test"], cert_pem=a[0], key_pem=a[1]),
    ]
    config = render(table("a.test", "x.a.test", ""), http=0, certificates=certificates)
    stem = {
        content: path.removesuffix(".crt").removeprefix("certs/")
        for path, content in config.files.items()
        if path.endswith(".crt")
    }
    by_name = {s.names: s for s in servers(config.text)}
    assert by_name['"a.test"'].certificate == f'"/d/certs/{stem[a[0]]}.crt"'
    assert by_name['"x.a.test"'].certificate == f'"/d/certs/{stem[wild[0]]}.crt"'  # the wildcard covers it
    assert by_name['"_"'].certificate == f'"/d/certs/{stem[DEFAULT[0]]}.crt"'
    # Certificate names without a host rule get a server of their own, routed as "" is.
    assert by_name['"www.a.test"'].certificate == f'"/d/certs/{stem[a[0]]}.crt"'
    assert by_name['"~^[^.]+[.]a[.]test$"'].certificate == f'"/d/certs/{stem[wild[0]]}.crt"'
    assert by_name['"www.a.test"'].locations == by_name['"_"'].locations
    assert all(listen.split()[1:3] == ["ssl", "http2"] for s in by_name.values() for listen in s.listen)
    assert {p for p in config.files if p.endswith(".key")} == {f"certs/{s}.key" for s in stem.values()}


def test_everything_in_its_directory() -> None:
    text = render(table("a.test"), user="nobody nogroup").text
    assert text.startswith("# Written by the corral agent")
    assert "user nobody nogroup;" in text and "daemon off;" in text and "worker_processes auto;" in text
    assert 'pid "/d/nginx.pid";' in text and 'error_log "/d/error.log" warn;' in text
    assert 'proxy_temp_path "/d/temp/proxy";' in text and 'client_body_temp_path "/d/temp/client_body";' in text
    assert "/etc/nginx" not in text and "/var/" not in text
    assert "user " not in render(table("a.test")).text


LONGEST_NAME = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters: a valid Ingress host


@pytest.mark.parametrize(
    "extra_hosts",
    [
        pytest.param((), id="representative"),
        # nginx refused the whole config (every Ingress of the cluster) for one host past ~120 characters.
        pytest.param((LONGEST_NAME, "*." + LONGEST_NAME[2:]), id="longest-host-names"),
    ],
)
def test_nginx_accepts_a_representative_config(tmp_path: Path, extra_hosts: tuple[str, ...]) -> None:
    binary = find_nginx()
    if binary is None:
        pytest.skip("no nginx binary (the nginx-light package)")
    t = table("a.test", "*.b.test", "", *extra_hosts, redirect="a.test")
    t.hosts[0].paths.add(path="/v1+(x) y", path_type="Prefix", backend=target(problem='no "port" $x'))
    t.default_backend.CopyFrom(target())
    a = certificate("a.test")
    certificates = [ingress_pb2.IngressCertificate(secret="default/a", hosts=["a.test"], cert_pem=a[0], key_pem=a[1])]
    services = {"default/s": two_endpoints()}
    config = nginx_config(
        t,
        services,
        listen=Listen(["127.0.0.1", "::1"], 18080, 18443),
        settings=Settings(str(tmp_path)),
        certificates=certificates,
        default_certificate=DEFAULT,
    )
    for name, content in config.files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(content)
    (tmp_path / "temp").mkdir()
    (tmp_path / "nginx.conf").write_text(config.text)
    args = [binary, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "e.log")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
