"""Health probes against real sockets on 127.0.0.1: agent/probes/{http,tcp,exec,runner}.py.

A tiny asyncio HTTP server answers by path (`/status/500`, `/hang`, `/garbage`, …);
closed ports come from binding a socket and closing it. Every test is bounded
(`timeout` mark) and uses sub-second probe timeouts.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from agent.probes import exec as exec_probe
from agent.probes.exec import probe_exec
from agent.probes.http import probe_http
from agent.probes.result import ProbeResult
from agent.probes.runner import run_probe
from agent.probes.target import ExecTarget, HttpTarget, InvalidTarget, ProbeTarget, TcpTarget
from agent.probes.tcp import probe_tcp
from agent.runtime.base import ContainerRuntime, ExecResult
from agent.runtime.errors import ContainerNotFoundError

pytestmark = pytest.mark.timeout(5)

HOST = "127.0.0.1"


@dataclass
class HttpServer:
    """Answers GET /status/<code>; /hang never answers; /garbage, /close, /interim misbehave."""

    port: int = 0
    requests: list[bytes] = field(default_factory=list)
    hanging: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            await self.answer(head.split(b" ", 2)[1].decode(), writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path == "/hang":
            self.hanging.set()
            await self.release.wait()
            return
        if path == "/close":
            return
        if path == "/garbage":
            writer.write(b"garbage\r\n\r\n")
        elif path == "/interim":
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        else:
            code = path.removeprefix("/status/")
            writer.write(f"HTTP/1.1 {code} Whatever\r\nContent-Length: 2\r\n\r\nhi".encode())
        await writer.drain()


async def serve(tls: ssl.SSLContext | None = None) -> tuple[HttpServer, asyncio.Server]:
    app = HttpServer()
    server = await asyncio.start_server(app.handle, HOST, 0, ssl=tls)
    app.port = server.sockets[0].getsockname()[1]
    return app, server


async def shut(app: HttpServer, server: asyncio.Server) -> None:
    app.release.set()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    app, server = await serve()
    yield app
    await shut(app, server)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A self-signed certificate made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=probe.test"],
        check=True, capture_output=True, timeout=10,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(Path(cert), Path(key))
    return context


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("path", "success", "message"),
    [
        pytest.param("/status/200", True, "HTTP probe succeeded with statuscode: 200", id="200"),
        pytest.param("/status/302", True, "HTTP probe succeeded with statuscode: 302", id="302-redirect-passes"),
        pytest.param("/status/399", True, "HTTP probe succeeded with statuscode: 399", id="399"),
        pytest.param("/status/404", False, "HTTP probe failed with statuscode: 404", id="404"),
        pytest.param("/status/500", False, "HTTP probe failed with statuscode: 500", id="500"),
        pytest.param("/interim", True, "HTTP probe succeeded with statuscode: 204", id="1xx-skipped"),
        pytest.param(
            "/garbage", False, "HTTP probe failed: malformed HTTP status line: b'garbage\\r\\n'", id="garbage"
        ),
        pytest.param(
            "/close", False, "HTTP probe failed: connection closed before the status line", id="closed-silently"
        ),
    ],
)
async def test_http_status(http_server: HttpServer, path: str, success: bool, message: str) -> None:
    result = await probe_http(HOST, http_server.port, path, timeout=1.0)
    assert result == ProbeResult(success, message)


async def test_http_sends_a_minimal_get(http_server: HttpServer) -> None:
    headers = [("X-Probe", "yes"), ("User-Agent", "mine/2")]
    await probe_http(HOST, http_server.port, "status/200?x=1", headers=headers, timeout=1.0)
    lines = http_server.requests[0].decode().split("\r\n")
    assert lines[0] == "GET /status/200?x=1 HTTP/1.1"
    assert f"Host: {HOST}:{http_server.port}" in lines
    assert "Connection: close" in lines
    assert "X-Probe: yes" in lines
    assert "User-Agent: mine/2" in lines and "User-Agent: corral-probe/1" not in lines


async def test_http_default_user_agent(http_server: HttpServer) -> None:
    await probe_http(HOST, http_server.port, "/status/200", timeout=1.0)
    assert b"User-Agent: corral-probe/1\r\n" in http_server.requests[0]


async def test_http_hanging_server_times_out(http_server: HttpServer) -> None:
    result = await probe_http(HOST, http_server.port, "/hang", timeout=0.2)
    assert result == ProbeResult(False, "timeout after 0.2s")


async def test_http_refused(closed_port: int) -> None:
    result = await probe_http(HOST, closed_port, "/", timeout=1.0)
    assert result == ProbeResult(False, f"dial tcp {HOST}:{closed_port}: connection refused")


async def test_http_bad_header_is_a_failure_not_an_exception(http_server: HttpServer) -> None:
    result = await probe_http(HOST, http_server.port, "/", headers=[("X-Evil", "a\r\nInjected: 1")], timeout=1.0)
    assert result == ProbeResult(False, "HTTP probe failed: invalid value for header 'X-Evil'")
    assert http_server.requests == []


async def test_https_does_not_verify_the_certificate(server_tls: ssl.SSLContext) -> None:
    app, server = await serve(server_tls)
    try:
        result = await probe_http(HOST, app.port, "/status/200", scheme="HTTPS", timeout=2.0)
    finally:
        await shut(app, server)
    assert result == ProbeResult(True, "HTTP probe succeeded with statuscode: 200")


async def test_https_against_plain_http_fails_in_the_handshake() -> None:
    async def blurt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(blurt, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe_http(HOST, port, "/", scheme="HTTPS", timeout=1.0)
    finally:
        server.close()
        await server.wait_closed()
    assert not result.success
    assert result.message.startswith(f"dial tcp {HOST}:{port}: tls: ")


async def test_tcp_open(http_server: HttpServer) -> None:
    result = await probe_tcp(HOST, http_server.port, timeout=1.0)
    assert result == ProbeResult(True, f"dial tcp {HOST}:{http_server.port}: connected")


async def test_tcp_closed(closed_port: int) -> None:
    result = await probe_tcp(HOST, closed_port, timeout=1.0)
    assert result == ProbeResult(False, f"dial tcp {HOST}:{closed_port}: connection refused")


async def test_tcp_unknown_host() -> None:
    result = await probe_tcp("no-such-host.invalid", 80, timeout=1.0)
    assert not result.success
    assert result.message.startswith("dial tcp: lookup no-such-host.invalid: ")


class StubRuntime:
    """Just `exec`: returns a fixed result, raises, or never answers."""

    def __init__(self, answer: ExecResult | Exception | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, list[str], float]] = []

    async def exec(self, container_id: str, command: list[str], *, timeout: float) -> ExecResult:
        self.calls.append((container_id, command, timeout))
        if self.answer is None:
            await asyncio.Event().wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        assert self.answer is not None
        return self.answer


def runtime(answer: ExecResult | Exception | None) -> ContainerRuntime:
    return cast(ContainerRuntime, StubRuntime(answer))


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        pytest.param(ExecResult(0, b"fine\n"), ProbeResult(True, "command exited with 0"), id="exit-0"),
        pytest.param(
            ExecResult(1, b"not healthy\n"), ProbeResult(False, "command exited with 1: not healthy"), id="exit-1"
        ),
        pytest.param(ExecResult(2, b""), ProbeResult(False, "command exited with 2"), id="exit-2-silent"),
        pytest.param(
            ExecResult(1, b"x" * 500), ProbeResult(False, "command exited with 1: " + "x" * 200), id="output-cut"
        ),
        pytest.param(
            ExecResult(124, b""),
            ProbeResult(False, "timeout after 0.5s: command exited with 124"),
            id="runtime-timeout",
        ),
        pytest.param(
            ContainerNotFoundError("no such container c1"),
            ProbeResult(False, "exec probe failed: no such container c1"),
            id="runtime-raises",
        ),
    ],
)
async def test_exec(answer: ExecResult | Exception, result: ProbeResult) -> None:
    stub = StubRuntime(answer)
    got = await probe_exec(cast(ContainerRuntime, stub), "c1", ["cat", "/tmp/ok"], timeout=0.5)
    assert got == result
    assert stub.calls == [("c1", ["cat", "/tmp/ok"], 0.5)]


async def test_exec_runtime_that_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exec_probe, "RUNTIME_GRACE", 0.1)
    result = await probe_exec(runtime(None), "c1", ["true"], timeout=0.1)
    assert result == ProbeResult(False, "timeout after 0.1s")


@pytest.mark.parametrize(
    ("make_target", "success", "message"),
    [
        pytest.param(
            lambda port, closed: HttpTarget(HOST, port, "/status/503"),
            False,
            "HTTP probe failed with statuscode: 503",
            id="http",
        ),
        pytest.param(
            lambda port, closed: TcpTarget(HOST, port), True, f"dial tcp {HOST}:{{port}}: connected", id="tcp-open"
        ),
        pytest.param(
            lambda port, closed: TcpTarget(HOST, closed),
            False,
            f"dial tcp {HOST}:{{closed}}: connection refused",
            id="tcp-closed",
        ),
        pytest.param(lambda port, closed: ExecTarget(("true",)), True, "command exited with 0", id="exec"),
        pytest.param(
            lambda port, closed: InvalidTarget('port "web" not found in container'),
            False,
            'port "web" not found in container',
            id="invalid",
        ),
    ],
)
async def test_run_probe_dispatches(
    http_server: HttpServer,
    closed_port: int,
    make_target: Callable[[int, int], ProbeTarget],
    success: bool,
    message: str,
) -> None:
    target = make_target(http_server.port, closed_port)
    result = await run_probe(target, runtime=runtime(ExecResult(0, b"")), container_id="c1", timeout=1.0)
    assert result == ProbeResult(success, message.format(port=http_server.port, closed=closed_port))


async def test_run_probe_turns_unexpected_errors_into_failures() -> None:
    class Broken:
        async def exec(self, container_id: str, command: list[str], *, timeout: float) -> ExecResult:
            return cast(ExecResult, None)  # a runtime bug: .exit_code blows up

    result = await run_probe(
        ExecTarget(("true",)), runtime=cast(ContainerRuntime, Broken()), container_id="c1", timeout=1.0
    )
    assert result == ProbeResult(False, "probe failed: AttributeError: 'NoneType' object has no attribute 'exit_code'")


async def test_run_probe_lets_cancellation_through(http_server: HttpServer) -> None:
    probing: Awaitable[ProbeResult] = run_probe(
        HttpTarget(HOST, http_server.port, "/hang"), runtime=runtime(None), container_id="c1", timeout=30.0
    )
    task = asyncio.ensure_future(probing)
    await asyncio.wait_for(http_server.hanging.wait(), 2.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
