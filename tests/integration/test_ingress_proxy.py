"""The agent's ingress proxy (a managed nginx, and a managed Caddy) against local aiohttp backends on loopback:
host and path routing, TLS by SNI with the Secrets' certificates, HTTP/2, keep-alive,
WebSockets, X-Forwarded headers, the HTTP→HTTPS redirect, canary weights, a route change
that leaves open connections alone, an endpoint change behind a clusterIP that leaves idle
ones alone too, Caddy restarted when it dies, its private admin socket."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import http.client
import json
import socket
import ssl
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest
from aiohttp import web
from cryptography import x509

from agent.network.ingress.config import Upstreams
from agent.network.ingress.proxy import IngressPorts, IngressProxy
from controlplane.registry.ingress import ingress_plan
from corral.common.pki.certs import cert_pem, key_pem, self_signed
from protos.corral.v1 import discovery_pb2, ingress_pb2, secret_pb2, service_pb2
from protos.ingresses import CONTROLLER, IS_DEFAULT_CLASS

WAIT = 10.0
LOOPBACK = "127.0.0.1"


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Hold:
    """`/slow` requests arrive (`arrived`) and are answered once `release` is set."""

    arrived: asyncio.Event
    release: asyncio.Event


async def backend(name: str, hold: Hold | None = None) -> tuple[web.AppRunner, int]:
    """An app that answers its name, the path and the headers it got, and echoes WebSocket messages."""

    async def echo(request: web.Request) -> web.StreamResponse:
        if request.path == "/slow" and hold is not None:
            hold.arrived.set()
            await hold.release.wait()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str(f"{name}:{message.data}")
            return ws
        if request.path.startswith("/status/"):
            return web.Response(status=int(request.path.rsplit("/", 1)[1]))
        if request.path == "/crash":  # connected, then closed without an answer
            assert request.transport is not None
            request.transport.close()
        body = await request.read()
        response = web.json_response(
            {"name": name, "path": request.path_qs, "headers": dict(request.headers), "body": body.decode()}
        )
        return response

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, LOOPBACK, port).start()
    return runner, port


def service_route(
    name: str, backends: list[tuple[int, str]], weights: dict[str, int] | None = None
) -> discovery_pb2.ServiceRoute:
    route = discovery_pb2.ServiceRoute(
        namespace="default", name=name, load_balancing="RoundRobin", weights=weights or {}
    )
    port = route.ports.add(name="http", protocol="TCP", port=80)
    for n, (backend_port, group) in enumerate(backends):
        port.backends.add(address=LOOPBACK, port=backend_port, pod=f"{name}-{n}", group=group)
    return route


def service(name: str) -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name, s.metadata.namespace = name, "default"
    s.spec.ports.add(name="http", port=80)
    return s


def certificate(host: str) -> tuple[bytes, bytes]:
    key, cert = self_signed(host, [host], dt.datetime.now(dt.UTC))
    return cert_pem(cert), key_pem(key)


def table(
    rules: list[tuple[str, str, str, str]], *, certs: dict[str, tuple[bytes, bytes]], redirect: set[str]
) -> ingress_pb2.IngressRoutes:
    """Through the control plane's core: one Ingress per host, a TLS Secret per certificate."""
    klass = ingress_pb2.IngressClass(spec=ingress_pb2.IngressClassSpec(controller=CONTROLLER))
    klass.metadata.name = "corral"
    klass.metadata.annotations[IS_DEFAULT_CLASS] = "true"
    ingresses: dict[str, ingress_pb2.Ingress] = {}
    for host, path, path_type, svc in rules:
        i = ingresses.setdefault(host, ingress_pb2.Ingress())
        i.metadata.name, i.metadata.namespace = host.replace(".", "-") or "all", "default"
        if host in redirect:
            i.metadata.annotations["corral.io/ssl-redirect"] = "true"
        rule = i.spec.rules[0] if i.spec.rules else i.spec.rules.add(host=host)
        p = rule.http.paths.add(path=path, path_type=path_type)
        p.backend.service.name, p.backend.service.port.number = svc, 80
        if host in certs and not i.spec.tls:
            i.spec.tls.add(hosts=[host], secret_name=f"{host}-tls")
    secrets = {}
    for host, (crt, key) in certs.items():
        s = secret_pb2.Secret(type="kubernetes.io/tls", data={"tls.crt": crt, "tls.key": key})
        s.metadata.name, s.metadata.namespace = f"{host}-tls", "default"
        secrets[f"default/{host}-tls"] = s
    services = {f"default/{n}": service(n) for n in ("a", "b", "api", "canary", "empty")}
    return ingress_plan(list(ingresses.values()), [klass], services, secrets).routes


@dataclass
class Env:
    proxy: IngressProxy
    http: int
    https: int
    ports: dict[str, int]
    certs: dict[str, tuple[bytes, bytes]]
    tmp: Path
    hold: Hold
    task: asyncio.Task[None]

    def client_context(self, host: str) -> ssl.SSLContext:
        """Trusts only `host`'s certificate."""
        path = self.tmp / f"{host}.pem"
        path.write_bytes(self.certs[host][0])
        return ssl.create_default_context(cafile=str(path))


RULES = [
    ("a.test", "/", "Prefix", "a"),
    ("a.test", "/api", "Prefix", "api"),
    ("b.test", "/", "Prefix", "b"),
    ("r.test", "/", "Prefix", "a"),
    ("c.test", "/", "Prefix", "canary"),
    ("e.test", "/", "Prefix", "empty"),
]


@pytest.fixture(params=["nginx", "caddy"])
async def env(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    runners, ports = [], {}
    hold = Hold(asyncio.Event(), asyncio.Event())
    for name in ("a", "b", "api", "v1", "v2"):
        runner, port = await backend(name, hold)
        runners.append(runner)
        ports[name] = port
    certs = {"a.test": certificate("a.test"), "b.test": certificate("b.test")}
    http_port, https_port = free_port(), free_port()
    proxy = IngressProxy(
        [LOOPBACK], IngressPorts(http_port, https_port), directory=tmp_path / "ingress", data_path=request.param
    )
    proxy.update(
        {
            "default/a": service_route("a", [(ports["a"], "")]),
            "default/b": service_route("b", [(ports["b"], "")]),
            "default/api": service_route("api", [(ports["api"], "")]),
            "default/canary": service_route("canary", [(ports["v1"], "v1"), (ports["v2"], "v2")], {"v1": 90, "v2": 10}),
            "default/empty": service_route("empty", []),
        }
    )
    proxy.update_ingress(table(RULES, certs=certs, redirect={"r.test"}))
    task = asyncio.create_task(proxy.run())
    try:
        await wait_for(lambda: len(proxy.bound) == 2, "the ingress listens on HTTP and HTTPS")
        yield Env(proxy, http_port, https_port, ports, certs, tmp_path, hold, task)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for runner in runners:
            await runner.cleanup()


def fetch(port: int, host: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request through http.client (in a thread)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=WAIT)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


async def fetch_tls(port: int, host: str, path: str, context: ssl.SSLContext) -> tuple[int, dict[str, object]]:
    """One HTTPS request to the loopback address with `host` as SNI and Host."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"https://{LOOPBACK}:{port}{path}", headers={"Host": host}, ssl=context, server_hostname=host
        ) as response,
    ):
        return response.status, await response.json()


async def test_hosts_and_paths_over_tls_with_each_hosts_certificate(env: Env) -> None:
    for host, path, name in (("a.test", "/", "a"), ("a.test", "/api/users", "api"), ("b.test", "/x", "b")):
        status, body = await fetch_tls(env.https, host, path, env.client_context(host))
        assert (status, body["name"], body["path"], body["headers"]["X-Forwarded-Proto"]) == (200, name, path, "https")  # type: ignore[index]
    with pytest.raises(aiohttp.ClientConnectorCertificateError):  # b.test gets b.test's certificate, not a.test's
        await fetch_tls(env.https, "b.test", "/", env.client_context("a.test"))


async def test_a_name_without_a_certificate_gets_the_self_signed_default(env: Env) -> None:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    _, writer = await asyncio.open_connection(LOOPBACK, env.https, ssl=context, server_hostname="unknown.test")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    assert "corral ingress default certificate" in subject


async def test_forwarded_headers(env: Env) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://{LOOPBACK}:{env.http}/hello?x=1", headers={"Host": "a.test", "X-Forwarded-For": "10.9.9.9"}
        ) as response,
    ):
        got = await response.json()
    headers = got["headers"]
    assert got["path"] == "/hello?x=1"
    assert headers["Host"] == "a.test"
    # The client is no trusted proxy: its X-Forwarded-For is replaced, not extended (Caddy's rule).
    assert headers["X-Forwarded-For"] == LOOPBACK
    assert (headers["X-Forwarded-Proto"], headers["X-Forwarded-Host"], headers["X-Real-IP"]) == (
        "http",
        "a.test",
        LOOPBACK,
    )


@pytest.mark.parametrize(
    "size", [pytest.param(5000, id="buffered"), pytest.param(3 * 1024 * 1024, id="streamed-above-1MiB")]
)
async def test_request_bodies_reach_the_backend(env: Env, size: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://{LOOPBACK}:{env.http}/form", data=b"x" * size, headers={"Host": "a.test"}) as r,
    ):
        assert (await r.json())["body"] == "x" * size


@pytest.mark.parametrize(
    ("host", "status"),
    [pytest.param("nowhere.test", 404, id="no-rule"), pytest.param("e.test", 503, id="no-endpoints")],
)
async def test_no_rule_is_404_and_no_endpoint_is_503(env: Env, host: str, status: int) -> None:
    got, _, _ = await asyncio.to_thread(fetch, env.http, host, "/")
    assert got == status


async def test_redirect_to_https_when_asked(env: Env) -> None:
    status, headers, _ = await asyncio.to_thread(fetch, env.http, "r.test", "/page?q=1")
    assert (status, headers["Location"]) == (308, f"https://r.test:{env.https}/page?q=1")
    status, _, _ = await asyncio.to_thread(fetch, env.http, "a.test", "/")
    assert status == 200  # not asked: no redirect


async def test_keep_alive_reuses_the_client_connection(env: Env) -> None:
    def two_requests() -> tuple[bool, list[str]]:
        conn = http.client.HTTPConnection(LOOPBACK, env.http, timeout=WAIT)
        names = []
        conn.request("GET", "/", headers={"Host": "a.test"})
        first = conn.getresponse()
        names.append(json.loads(first.read())["name"])
        sock = conn.sock
        conn.request("GET", "/", headers={"Host": "b.test"})
        names.append(json.loads(conn.getresponse().read())["name"])
        same = conn.sock is sock and sock is not None
        conn.close()
        return same, names

    assert await asyncio.to_thread(two_requests) == (True, ["a", "b"])


async def test_websocket_upgrade_is_passed_through(env: Env) -> None:
    url = f"http://{LOOPBACK}:{env.http}/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers={"Host": "b.test"}) as ws:
        await ws.send_str("hi")
        assert (await ws.receive_str()) == "b:hi"


async def test_canary_weights_apply(env: Env) -> None:
    names: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(f"http://{LOOPBACK}:{env.http}/", headers={"Host": "c.test"}) as r:
                name = (await r.json())["name"]
                names[name] = names.get(name, 0) + 1
    assert names == {"v1": 90, "v2": 10}  # smooth weighted round robin: exact


async def test_a_route_change_keeps_open_connections(env: Env) -> None:
    """A request in flight finishes and an open WebSocket carries on; new requests take the
    new route. (Idle keep-alive connections are closed cleanly by the change: clients reopen
    them, as after an nginx reload.)"""
    url = f"http://{LOOPBACK}:{env.http}/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers={"Host": "a.test"}) as ws:
        slow = asyncio.create_task(asyncio.to_thread(fetch, env.http, "a.test", "/slow"))
        await asyncio.wait_for(env.hold.arrived.wait(), WAIT)
        # a.test now goes to b.
        moved = [(h, p, t, "b" if h == "a.test" else s) for h, p, t, s in RULES]
        env.proxy.update_ingress(table(moved, certs=env.certs, redirect=set()))
        await wait_for(lambda: env.proxy.applied == env.proxy.changes, "the change is loaded")
        _, _, body = await asyncio.to_thread(fetch, env.http, "a.test", "/")
        assert json.loads(body)["name"] == "b"
        env.hold.release.set()
        status, _, body = await slow
        assert (status, json.loads(body)["name"]) == (200, "a")
        await ws.send_str("still")
        assert (await ws.receive_str()) == "a:still"


@pytest.mark.parametrize(
    ("via_cluster_ip", "kept"),
    [
        pytest.param(True, True, id="kernel-clusterip-kept"),
        pytest.param(False, False, id="endpoints-closed-by-the-swap"),
    ],
)
async def test_an_endpoint_change_and_an_idle_keep_alive_connection(
    tmp_path: Path, via_cluster_ip: bool, kept: bool
) -> None:
    """With the kernel serving clusterIPs (`--proxy-mode nftables`) Caddy dials the Service's
    clusterIP: an endpoint change is no new config, and an idle keep-alive client connection
    carries the next request. Dialling endpoints, the change swaps the config, which closes it.
    (The "clusterIP" here is the backend's own address, standing in for the kernel's DNAT.)"""
    runner, port = await backend("a")
    spare, spare_port = await backend("a2")

    def routes(*endpoints: int) -> dict[str, discovery_pb2.ServiceRoute]:
        route = service_route("a", [(p, "") for p in endpoints])
        route.cluster_ip, route.ports[0].port = LOOPBACK, port
        return {"default/a": route}

    upstreams = Upstreams(via_cluster_ip=via_cluster_ip)
    proxy = IngressProxy([LOOPBACK], IngressPorts(free_port(), 0), directory=tmp_path / "i", upstreams=upstreams)
    proxy.update(routes(port))
    proxy.update_ingress(table([("a.test", "/", "Prefix", "a")], certs={}, redirect=set()))
    task = asyncio.create_task(proxy.run())
    conn = http.client.HTTPConnection(LOOPBACK, proxy.ports.http, timeout=WAIT)

    def get() -> int:
        conn.request("GET", "/", headers={"Host": "a.test"})
        response = conn.getresponse()
        response.read()
        return response.status

    try:
        await wait_for(lambda: len(proxy.bound) == 1, "the ingress listens")
        assert await asyncio.to_thread(get) == 200
        sock = conn.sock
        proxy.update(routes(spare_port, port))  # a second endpoint
        await wait_for(lambda: proxy.applied == proxy.changes, "the change is applied")
        if kept:
            assert await asyncio.to_thread(get) == 200
            assert conn.sock is sock and sock is not None
        else:
            with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
                await asyncio.to_thread(get)
    finally:
        conn.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        await spare.cleanup()


async def test_a_backend_that_closes_without_answering_is_a_502(env: Env) -> None:
    status, _, body = await asyncio.to_thread(fetch, env.http, "a.test", "/crash")
    assert (status, body) == (502, b"502 Bad Gateway\n")
    status, _, _ = await asyncio.to_thread(fetch, env.http, "a.test", "/")
    assert status == 200


@pytest.mark.parametrize("status", [pytest.param(204, id="no-content"), pytest.param(304, id="not-modified")])
async def test_answers_without_a_body_pass_through(env: Env, status: int) -> None:
    got, _, body = await asyncio.to_thread(fetch, env.http, "a.test", f"/status/{status}")
    assert (got, body) == (status, b"")


async def test_http2_over_tls_by_alpn(env: Env) -> None:
    context = env.client_context("a.test")
    context.set_alpn_protocols(["h2", "http/1.1"])
    _, writer = await asyncio.open_connection(LOOPBACK, env.https, ssl=context, server_hostname="a.test")
    try:
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError):  # the server's HTTP/2 SETTINGS frame is left unread
            await writer.wait_closed()


async def test_caddy_is_restarted_when_it_dies_and_stops_with_the_proxy(env: Env) -> None:
    caddy = env.proxy.caddy
    assert caddy is not None and caddy.process is not None
    first = caddy.process
    first.kill()
    await wait_for(lambda: env.proxy.caddy is not None and env.proxy.caddy is not caddy, "caddy started again")
    await wait_for(lambda: len(env.proxy.bound) == 2, "and given the config")
    got, _, _ = await asyncio.to_thread(fetch, env.http, "a.test", "/")
    assert got == 200
    again = env.proxy.caddy
    assert again is not None and again.process is not None
    process = again.process
    env.task.cancel()
    await asyncio.gather(env.task, return_exceptions=True)
    assert process.returncode is not None


@pytest.mark.parametrize("env", ["caddy"], indirect=True)
async def test_the_admin_socket_is_private_and_no_key_is_written(env: Env) -> None:
    directory = env.tmp / "ingress"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "admin.sock").stat().st_mode) == 0o600
    for path in directory.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert not list(directory.rglob("autosave.json"))


@pytest.mark.parametrize("env", ["nginx"], indirect=True)
async def test_nginx_keeps_to_its_directory_with_private_keys(env: Env) -> None:
    directory = env.tmp / "ingress"
    server = env.proxy.server
    assert server is not None and server.pid is not None
    assert (directory / "nginx.pid").read_text().strip() == str(server.pid)
    assert (directory / "error.log").exists() and (directory / "nginx.conf").exists()
    assert stat.S_IMODE((directory / "certs").stat().st_mode) == 0o700
    keys = list((directory / "certs").glob("*.key"))
    assert len(keys) == 3  # a.test's, b.test's and the default
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    workers = psutil.Process(server.pid).children()
    assert workers
    # Root's workers run as nobody where the directories above let them through.
    expected = server.user or psutil.Process().username()  # type: ignore[union-attr]
    assert {w.username() for w in workers} == {expected}


@pytest.mark.parametrize("env", ["nginx"], indirect=True)
async def test_a_config_nginx_refuses_leaves_the_running_one(env: Env) -> None:
    from agent.network.ingress.nginx import ConfigRefused, Nginx
    from agent.network.ingress.nginx_config import NginxConfig

    server = env.proxy.server
    assert isinstance(server, Nginx)
    good = (env.tmp / "ingress" / "nginx.conf").read_text()
    with pytest.raises(ConfigRefused, match="unknown directive"):
        await server.load(NginxConfig("no_such_directive on;\n"))
    assert (env.tmp / "ingress" / "nginx.conf").read_text() == good
    got, _, _ = await asyncio.to_thread(fetch, env.http, "a.test", "/")
    assert got == 200


async def test_a_data_dir_deeper_than_a_unix_socket_path_allows(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 60) / ("e" * 60) / "ingress"
    assert len(str(directory / "admin.sock")) > 108
    runner, port = await backend("a")
    proxy = IngressProxy([LOOPBACK], IngressPorts(free_port(), 0), directory=directory)
    proxy.update({"default/a": service_route("a", [(port, "")])})
    proxy.update_ingress(table([("a.test", "/", "Prefix", "a")], certs={}, redirect=set()))
    task = asyncio.create_task(proxy.run())
    try:
        await wait_for(lambda: len(proxy.bound) == 1, "the ingress listens")
        _, _, body = await asyncio.to_thread(fetch, proxy.ports.http, "a.test", "/")
        assert json.loads(body)["name"] == "a"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()


def test_caddy_starts_under_uvloop_as_in_the_agent(tmp_path: Path) -> None:
    """The agent runs on uvloop, whose subprocess PIPE is no pipe /dev/stdin can open."""
    import uvloop

    from agent.network.ingress.caddy import Caddy, find_caddy
    from agent.network.ingress.config import admin_only

    binary = find_caddy()
    assert binary is not None

    async def start_load_stop() -> int | None:
        caddy = Caddy(binary, tmp_path / "ingress")
        try:
            await caddy.start()
            await caddy.load(admin_only())
            return caddy.pid
        finally:
            await caddy.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(start_load_stop()) is not None


@pytest.mark.parametrize("server", [pytest.param("nginx", id="nginx"), pytest.param("caddy", id="caddy")])
async def test_a_proxy_left_by_a_killed_agent_is_ended_at_start(tmp_path: Path, server: str) -> None:
    from agent.network.ingress.caddy import Caddy, find_caddy
    from agent.network.ingress.nginx import Nginx, find_nginx

    kind, binary = (Nginx, find_nginx()) if server == "nginx" else (Caddy, find_caddy())
    assert binary is not None
    left, fresh = kind(binary, tmp_path / "ingress"), kind(binary, tmp_path / "ingress")
    await left.start()
    orphan = left.process
    assert orphan is not None
    try:
        await fresh.start()  # as the restarted agent's, in the same directory
        assert await asyncio.wait_for(orphan.wait(), WAIT) is not None
        assert fresh.process is not None and fresh.process.returncode is None
    finally:
        await fresh.stop()
        await left.stop()


async def test_root_nginx_workers_run_as_nobody_where_they_can_reach_the_directory() -> None:
    import os
    import shutil
    import tempfile

    from agent.network.ingress.nginx import Nginx, find_nginx

    binary = find_nginx()
    if os.geteuid() != 0 or binary is None:
        pytest.skip("as root, with nginx")
    top = Path(tempfile.mkdtemp(prefix="corral-nginx-"))
    top.chmod(0o755)
    server = Nginx(binary, top / "ingress")
    try:
        await server.start()
        assert server.pid is not None and server.user == "nobody"
        assert {w.username() for w in psutil.Process(server.pid).children()} == {"nobody"}
        assert psutil.Process(server.pid).username() == "root"
        assert stat.S_IMODE((top / "ingress" / "certs").stat().st_mode) == 0o700
    finally:
        await server.stop()
        shutil.rmtree(top)


def test_nginx_ends_when_the_agent_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves an agent's children; nginx's master (a session of its own) is told by the kernel."""
    import subprocess
    import sys

    script = f"""
import asyncio, sys
from pathlib import Path
from agent.network.ingress.nginx import Nginx, find_nginx
async def main():
    server = Nginx(find_nginx(), Path({str(tmp_path / "ingress")!r}))
    await server.start()
    print("pid", server.pid, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""
    agent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        line = ""
        while not line.startswith("pid "):  # after the agent's log lines
            line = agent.stdout.readline()
            assert line, "the agent ended without starting nginx"
        master = psutil.Process(int(line.split()[1]))
        agent.kill()
        agent.wait()
        try:
            master.wait(WAIT)
        except psutil.TimeoutExpired:
            import os
            import signal

            os.killpg(master.pid, signal.SIGKILL)  # the session: the master and its workers
            pytest.fail("nginx outlived the agent")
    finally:
        agent.kill()
        agent.wait()


def test_nginx_starts_under_uvloop_as_in_the_agent(tmp_path: Path) -> None:
    import uvloop

    from agent.network.ingress.nginx import Nginx, find_nginx

    binary = find_nginx()
    assert binary is not None

    async def start_stop() -> int | None:
        server = Nginx(binary, tmp_path / "ingress")
        try:
            await server.start()
            return server.pid
        finally:
            await server.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(start_stop()) is not None
