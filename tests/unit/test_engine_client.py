"""The Docker Engine API client against a scripted engine on a unix socket: versions, errors,
framed streams, a stream closed from another thread, and registry credentials.
(tests/contract/test_runtime.py runs the Docker runtime through it against the real engine.)"""

from __future__ import annotations

import base64
import contextlib
import json
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from agent.runtime.engine import (
    Endpoint,
    EngineClient,
    EngineError,
    EngineImageNotFoundError,
    EngineNotFoundError,
    EngineUnavailableError,
    registry_auth,
    registry_of,
    split_image,
)

pytestmark = pytest.mark.timeout(30)

Route = Callable[[BaseHTTPRequestHandler], None]


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def answer(status: int, body: Any, content_type: str = "application/json") -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    return route


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[dict[str, Route], list[str], str]]:
    """Routes keyed by "METHOD /path" (query left out); the requests seen; the socket path."""
    routes: dict[str, Route] = {"GET /version": answer(200, {"ApiVersion": "1.43"})}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def address_string(self) -> str:
            return "engine"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.append(f"{self.command} {self.path}")
            route = routes.get(f"{self.command} {self.path.split('?')[0]}")
            (route or answer(404, {"message": "page not found"}))(self)

        do_GET = do_POST = do_DELETE = _serve

    path = str(tmp_path / "docker.sock")
    server = _Server(path, Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield routes, seen, path
    finally:
        server.shutdown()
        server.server_close()


def test_the_client_speaks_the_engines_api_version_capped_at_its_own(engine: Any) -> None:
    routes, seen, path = engine
    routes["GET /v1.43/containers/abc/json"] = answer(200, {"Id": "abc"})
    client = EngineClient.from_env(f"unix://{path}")
    assert client.inspect_container("abc") == {"Id": "abc"}
    assert seen == ["GET /version", "GET /v1.43/containers/abc/json"]

    routes["GET /version"] = answer(200, {"ApiVersion": "1.47"})
    assert EngineClient.from_env(f"unix://{path}").api_version == (1, 45)


def test_an_engine_too_old_is_refused_with_the_versions(engine: Any) -> None:
    routes, _, path = engine
    routes["GET /version"] = answer(200, {"ApiVersion": "1.30"})
    with pytest.raises(EngineError, match=r"offers API 1\.30; corral needs 1\.40"):
        EngineClient.from_env(f"unix://{path}")


def test_nothing_at_the_socket_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailableError, match="does not answer"):
        EngineClient.from_env(f"unix://{tmp_path}/none.sock")


def test_errors_carry_the_engines_message_and_tell_a_missing_image_from_a_missing_container(engine: Any) -> None:
    routes, _, path = engine
    client = EngineClient.from_env(f"unix://{path}")
    routes["GET /v1.43/images/x%3A1/json"] = answer(404, {"message": "No such image: x:1"})
    routes["GET /v1.43/containers/gone/json"] = answer(404, {"message": "No such container: gone"})
    routes["POST /v1.43/containers/create"] = answer(404, {"message": "No such image: y:2"})
    routes["POST /v1.43/containers/c/start"] = answer(500, {"message": "port is already allocated"})

    with pytest.raises(EngineImageNotFoundError, match="No such image: x:1"):
        client.inspect_image("x:1")
    with pytest.raises(EngineNotFoundError, match="No such container: gone") as missing:
        client.inspect_container("gone")
    assert not isinstance(missing.value, EngineImageNotFoundError)
    with pytest.raises(EngineImageNotFoundError, match="No such image: y:2"):
        client.create_container("c", {"Image": "y:2"})
    with pytest.raises(EngineError, match="port is already allocated") as failed:
        client.start("c")
    assert failed.value.status == 500


def test_listing_skips_containers_removed_between_the_list_and_the_look(engine: Any) -> None:
    routes, seen, path = engine
    client = EngineClient.from_env(f"unix://{path}")
    routes["GET /v1.43/containers/json"] = answer(200, [{"Id": "a"}, {"Id": "b"}])
    routes["GET /v1.43/containers/a/json"] = answer(200, {"Id": "a", "State": {}})
    assert client.list_containers({"io.corral.node": "n1"}) == [{"Id": "a", "State": {}}]
    listed = next(s for s in seen if s.startswith("GET /v1.43/containers/json"))
    assert "all=1" in listed and "io.corral.node%3Dn1" in listed


def test_logs_are_read_out_of_their_frames_in_order(engine: Any) -> None:
    routes, _, path = engine
    client = EngineClient.from_env(f"unix://{path}")
    body = frame(1, b"out one\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"out two\n")
    routes["GET /v1.43/containers/c/logs"] = answer(200, body, "application/vnd.docker.multiplexed-stream")
    assert list(client.logs("c", follow=False, tail=None)) == [b"out one\n", b"err\n", b"out two\n"]


def test_a_stream_closed_from_another_thread_wakes_its_reader(engine: Any) -> None:
    routes, _, path = engine
    client = EngineClient.from_env(f"unix://{path}")
    release = threading.Event()

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
        handler.end_headers()
        handler.wfile.write(frame(1, b"first\n"))
        handler.wfile.flush()
        release.wait(10)

    routes["GET /v1.43/containers/c/logs"] = endless
    stream = client.logs("c", follow=True, tail=10)
    chunks: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        with contextlib.suppress(EngineUnavailableError):
            chunks.extend(stream)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = threading.Event()
    while not chunks and not deadline.wait(0.01):
        pass
    stream.close()
    assert done.wait(5), "the reader woke up"
    release.set()
    assert chunks == [b"first\n"]


def test_pull_returns_the_progress_messages_with_the_error_among_them(engine: Any) -> None:
    routes, seen, path = engine
    client = EngineClient.from_env(f"unix://{path}")
    lines = b'{"status":"Pulling from library/x"}\n{"error":"manifest unknown"}\n'
    routes["POST /v1.43/images/create"] = answer(200, lines)
    assert client.pull("x", "1") == [{"status": "Pulling from library/x"}, {"error": "manifest unknown"}]
    assert any("fromImage=x&tag=1" in s for s in seen)


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        pytest.param("unix:///run/docker.sock", {}, ("unix", "/run/docker.sock", False), id="unix"),
        pytest.param("/var/run/docker.sock", {}, ("unix", "/var/run/docker.sock", False), id="bare-path"),
        pytest.param("tcp://10.0.0.5:2375", {}, ("http", "10.0.0.5:2375", False), id="tcp"),
        pytest.param("tcp://10.0.0.5", {}, ("http", "10.0.0.5:2375", False), id="tcp-default-port"),
    ],
)
def test_docker_host_forms(url: str, env: dict[str, str], expected: tuple[str, str, bool]) -> None:
    endpoint = Endpoint.parse(url, env)
    assert (endpoint.scheme, endpoint.address, endpoint.tls is not None) == expected


def test_an_unknown_docker_host_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported Docker host 'ssh://box'"):
        Endpoint.parse("ssh://box", {})


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param("busybox", ("busybox", "latest"), id="no-tag"),
        pytest.param("busybox:1.36", ("busybox", "1.36"), id="tag"),
        pytest.param("registry.lan:5000/team/app", ("registry.lan:5000/team/app", "latest"), id="port-no-tag"),
        pytest.param("registry.lan:5000/team/app:2", ("registry.lan:5000/team/app", "2"), id="port-and-tag"),
        pytest.param("app@sha256:abc", ("app", "sha256:abc"), id="digest"),
    ],
)
def test_image_names_split_into_repository_and_tag(image: str, expected: tuple[str, str]) -> None:
    assert split_image(image) == expected


@pytest.mark.parametrize(
    ("repository", "registry"),
    [
        pytest.param("busybox", "docker.io", id="official"),
        pytest.param("team/app", "docker.io", id="hub-user"),
        pytest.param("registry.lan:5000/app", "registry.lan:5000", id="port"),
        pytest.param("ghcr.io/org/app", "ghcr.io", id="domain"),
        pytest.param("localhost/app", "localhost", id="localhost"),
    ],
)
def test_the_registry_of_a_repository(repository: str, registry: str) -> None:
    assert registry_of(repository) == registry


def test_registry_credentials_come_from_the_auths_of_the_docker_config(tmp_path: Path) -> None:
    token = base64.b64encode(b"me:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"registry.lan:5000": {"auth": token}}}))
    header = registry_auth("registry.lan:5000/app", str(tmp_path))
    assert header is not None
    assert json.loads(base64.urlsafe_b64decode(header)) == {
        "username": "me",
        "password": "s3cret",
        "serveraddress": "registry.lan:5000",
    }
    assert registry_auth("ghcr.io/org/app", str(tmp_path)) is None
    assert registry_auth("app", str(tmp_path / "nowhere")) is None
