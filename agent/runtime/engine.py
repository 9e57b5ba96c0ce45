"""A small client for the Docker Engine API: the calls the Docker runtime makes, nothing more.

Why not the Docker SDK: it brings requests, urllib3 and charset_normalizer, and
imports every model of the engine; on a small node that is about 9 MB of the
agent's memory for a dozen HTTP calls. This module speaks the same documented
REST API (https://docs.docker.com/engine/api/) with the standard library's
`http.client`, one connection per call (no shared state between the threads
that make them).

- Where: `DOCKER_HOST` as the SDK reads it (`unix:///path`, `tcp://host:port`;
  with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`, TLS with the client
  certificate there), else `unix:///var/run/docker.sock`.
- API version: the engine's own (from `/version`), capped at the newest this
  module was written against; engines older than MIN_API_VERSION are refused.
- Errors: `EngineUnavailableError` when nothing answers, `EngineNotFoundError`
  for a 404, `EngineError` for any other status; each carries the engine's
  message.
- Streams (logs, exec output): the engine multiplexes stdout and stderr in
  8-byte-headed frames when the container has no TTY; `Stream` yields the
  payloads in order, and `close()` from another thread wakes a blocked reader.
- Registry credentials for pulls: the `auths` entries of the Docker client
  config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`); a
  credential helper (`credsStore`, `credHelpers`) is not run (a warning says so).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_HOST = "unix:///var/run/docker.sock"
# Docker 20.10 (API 1.41) is the oldest engine corral is tested with; 1.40 is 19.03.
MIN_API_VERSION = (1, 40)
MAX_API_VERSION = (1, 45)
# Each call but the streaming ones: how long the engine may take to answer.
CALL_TIMEOUT = 60.0
_FRAME_HEADER = struct.Struct(">BxxxL")
_CHUNK = 64 * 1024
DEFAULT_REGISTRY = "docker.io"
_INDEX_SERVER = "https://index.docker.io/v1/"


class EngineError(Exception):
    """The engine answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.explanation = message


class EngineNotFoundError(EngineError):
    """404: no such container, image, network or exec."""


class EngineImageNotFoundError(EngineNotFoundError):
    """404 about an image: looked up, or missing when a container was created from it."""


class EngineUnavailableError(Exception):
    """Nothing answers at the engine's address (or it stopped answering)."""


@dataclass(frozen=True)
class Endpoint:
    """Where the engine listens, parsed from a DOCKER_HOST-style URL."""

    scheme: str  # "unix", "http" or "https"
    address: str  # the socket path, or host:port
    tls: ssl.SSLContext | None = None

    @classmethod
    def parse(cls, url: str, environ: Mapping[str, str] | None = None) -> Endpoint:
        env = os.environ if environ is None else environ
        if url.startswith("unix://"):
            return cls("unix", url[len("unix://") :] or "/var/run/docker.sock")
        if url.startswith("/"):
            return cls("unix", url)
        for prefix in ("tcp://", "http://", "https://"):
            if url.startswith(prefix):
                address = url[len(prefix) :].rstrip("/")
                if ":" not in address:
                    address += ":2376" if prefix == "https://" or env.get("DOCKER_TLS_VERIFY") else ":2375"
                if prefix == "https://" or env.get("DOCKER_TLS_VERIFY"):
                    return cls("https", address, _tls_context(env))
                return cls("http", address)
        raise ValueError(f"unsupported Docker host {url!r} (unix://PATH or tcp://HOST:PORT)")


def _tls_context(env: Mapping[str, str]) -> ssl.SSLContext:
    """TLS to the engine with the client certificate in DOCKER_CERT_PATH (as the docker CLI does)."""
    directory = Path(env.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    context = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    context.load_cert_chain(str(directory / "cert.pem"), str(directory / "key.pem"))
    return context


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class Stream:
    """The body of a streaming answer, read by one thread; `close()` may come from any thread."""

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        sock: socket.socket | None,
        framed: bool,
    ):
        self._connection = connection
        self._response = response
        # The connection forgets its socket once a response says it will close; the stream must not.
        self._sock = sock
        self._framed = framed

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self._framed:
                yield from self._frames()
            else:
                while chunk := self._response.read1(_CHUNK):
                    yield chunk
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise EngineUnavailableError(f"the engine's stream broke: {exc}") from exc
        finally:
            self.release()

    def _frames(self) -> Iterator[bytes]:
        while True:
            header = self._read_exactly(_FRAME_HEADER.size)
            if not header:
                return
            _, size = _FRAME_HEADER.unpack(header)
            payload = self._read_exactly(size)
            if payload:
                yield payload
            if len(payload) < size:
                return

    def _read_exactly(self, size: int) -> bytes:
        parts: list[bytes] = []
        wanted = size
        while wanted > 0:
            chunk = self._response.read(wanted)
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Wake a reader blocked on the socket (it then sees the end)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        with contextlib.suppress(Exception):
            self._response.close()
        with contextlib.suppress(Exception):
            self._connection.close()


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


class EngineClient:
    """The Docker Engine API calls the runtime makes; every method blocks (run them in a thread)."""

    def __init__(self, endpoint: Endpoint, api_version: tuple[int, int] = MAX_API_VERSION) -> None:
        self._endpoint = endpoint
        self._prefix = f"/v{api_version[0]}.{api_version[1]}"
        self.api_version = api_version

    @classmethod
    def from_env(cls, base_url: str | None = None, environ: Mapping[str, str] | None = None) -> EngineClient:
        """A client for `base_url`, else DOCKER_HOST, with the API version agreed with the engine."""
        env = os.environ if environ is None else environ
        endpoint = Endpoint.parse(base_url or env.get("DOCKER_HOST") or DEFAULT_HOST, env)
        probe = cls(endpoint)
        version = probe._request("GET", "/version", versioned=False)
        offered = _version_tuple(str(version.get("ApiVersion") or "0.0"))
        if offered < MIN_API_VERSION:
            raise EngineError(
                0,
                f"the Docker engine offers API {offered[0]}.{offered[1]}; corral needs "
                f"{MIN_API_VERSION[0]}.{MIN_API_VERSION[1]} (Docker 19.03) or newer",
            )
        return cls(endpoint, min(offered, MAX_API_VERSION))

    # -- transport --

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        endpoint = self._endpoint
        if endpoint.scheme == "unix":
            return _UnixConnection(endpoint.address, timeout)
        if endpoint.scheme == "https":
            return http.client.HTTPSConnection(endpoint.address, timeout=timeout, context=endpoint.tls)
        return http.client.HTTPConnection(endpoint.address, timeout=timeout)

    def _open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = CALL_TIMEOUT,
        versioned: bool = True,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, socket.socket | None]:
        url = (self._prefix if versioned else "") + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        sent = dict(headers or {})
        payload: bytes | None = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        connection = self._connection(timeout)
        try:
            connection.request(method, url, body=payload, headers=sent)
            sock = connection.sock
            response = connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise EngineUnavailableError(f"docker engine does not answer: {exc}") from exc
        if response.status >= 400:
            try:
                raw = response.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                connection.close()
            raise _error(response.status, raw, about_image=path.startswith("/images/") or path == "/containers/create")
        return connection, response, sock

    def _request(self, method: str, path: str, *, timeout: float | None = CALL_TIMEOUT, **kwargs: Any) -> Any:
        connection, response, _ = self._open(method, path, timeout=timeout, **kwargs)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineUnavailableError(f"docker engine does not answer: {exc}") from exc
        finally:
            connection.close()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return {"message": raw.decode(errors="replace")}

    # -- calls --

    def ping(self) -> None:
        self._request("GET", "/_ping", versioned=False)

    def inspect_network(self, name: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/networks/{_quote(name)}"))

    def create_network(
        self, name: str, *, driver: str, labels: Mapping[str, str], subnet: str = "", gateway: str = ""
    ) -> None:
        """Make a network; with `subnet` (and `gateway`), of that IPv4 subnet (else Docker picks one)."""
        body: dict[str, Any] = {"Name": name, "Driver": driver, "Labels": dict(labels), "CheckDuplicate": True}
        if subnet:
            body["IPAM"] = {"Driver": "default", "Config": [{"Subnet": subnet, "Gateway": gateway}]}
        self._request("POST", "/networks/create", body=body)

    def remove_network(self, name: str) -> None:
        self._request("DELETE", f"/networks/{_quote(name)}")

    def inspect_image(self, image: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/images/{_quote(image)}/json"))

    def pull(self, repository: str, tag: str) -> list[dict[str, Any]]:
        """Pull and return the engine's progress messages (errors arrive as messages, not statuses)."""
        headers = {}
        auth = registry_auth(repository)
        if auth is not None:
            headers["X-Registry-Auth"] = auth
        connection, response, _ = self._open(
            "POST", "/images/create", query={"fromImage": repository, "tag": tag}, headers=headers, timeout=None
        )
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise EngineUnavailableError(f"the engine stopped answering during a pull: {exc}") from exc
        finally:
            connection.close()
        messages = []
        for line in raw.splitlines():
            with contextlib.suppress(ValueError):
                messages.append(json.loads(line))
        return messages

    def create_container(self, name: str, config: Mapping[str, Any]) -> str:
        created = self._request("POST", "/containers/create", query={"name": name}, body=dict(config))
        return str(created["Id"])

    def start(self, container_id: str) -> None:
        self._request("POST", f"/containers/{_quote(container_id)}/start")

    def stop(self, container_id: str, timeout: int) -> None:
        self._request(
            "POST", f"/containers/{_quote(container_id)}/stop", query={"t": timeout}, timeout=timeout + CALL_TIMEOUT
        )

    def remove_container(self, container_id: str) -> None:
        self._request("DELETE", f"/containers/{_quote(container_id)}", query={"v": 1, "force": 1})

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/containers/{_quote(container_id)}/json"))

    def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every container (running or not) with these labels, each as `inspect_container` gives it."""
        filters = json.dumps({"label": [f"{key}={value}" for key, value in labels.items()]})
        found = self._request("GET", "/containers/json", query={"all": 1, "filters": filters})
        result = []
        for summary in found:
            try:
                result.append(self.inspect_container(str(summary["Id"])))
            except EngineNotFoundError:  # removed between the list and the look
                continue
        return result

    def stats(self, container_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/containers/{_quote(container_id)}/stats", query={"stream": 0}))

    def exec_create(self, container_id: str, command: list[str]) -> str:
        body = {"Cmd": command, "AttachStdout": True, "AttachStderr": True, "AttachStdin": False, "Tty": False}
        created = self._request("POST", f"/containers/{_quote(container_id)}/exec", body=body)
        return str(created["Id"])

    def exec_start(self, exec_id: str) -> Stream:
        connection, response, sock = self._open(
            "POST", f"/exec/{_quote(exec_id)}/start", body={"Detach": False, "Tty": False}, timeout=None
        )
        return Stream(connection, response, sock, framed=True)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/exec/{_quote(exec_id)}/json"))

    def logs(self, container_id: str, *, follow: bool, tail: int | None) -> Stream:
        """stdout and stderr as written; framed unless the container has a TTY (corral never gives one)."""
        query = {"stdout": 1, "stderr": 1, "follow": int(follow), "tail": "all" if tail is None else tail}
        connection, response, sock = self._open(
            "GET", f"/containers/{_quote(container_id)}/logs", query=query, timeout=None if follow else CALL_TIMEOUT
        )
        framed = response.getheader("Content-Type", "") != "application/vnd.docker.raw-stream"
        return Stream(connection, response, sock, framed=framed)


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _error(status: int, raw: bytes, about_image: bool = False) -> EngineError:
    try:
        message = str(json.loads(raw).get("message") or "")
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace").strip()
    message = message or http.client.responses.get(status, f"status {status}")
    if status == 404:
        return (EngineImageNotFoundError if about_image else EngineNotFoundError)(status, message)
    return EngineError(status, message)


# -- images and registry credentials ---------------------------------------------


def split_image(image: str) -> tuple[str, str]:
    """`repo[:tag]` or `repo@digest` as (repository, tag or digest); no tag: "latest"."""
    repository, at, digest = image.partition("@")
    if at:
        return repository, digest
    name, colon, tag = repository.rpartition(":")
    if colon and "/" not in tag:
        return name, tag
    return repository, "latest"


def registry_of(repository: str) -> str:
    """The registry host of a repository name (`docker.io` for `busybox` or `library/busybox`)."""
    first, slash, _ = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


def registry_auth(repository: str, config_dir: str | None = None) -> str | None:
    """The X-Registry-Auth header for pulling `repository`, from the Docker client config; None without one."""
    directory = Path(config_dir or os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    registry = registry_of(repository)
    auths = config.get("auths") or {}
    keys: tuple[str, ...] = (registry, f"https://{registry}", f"http://{registry}")
    if registry == DEFAULT_REGISTRY:
        keys = (_INDEX_SERVER, *keys, "index.docker.io")
    entry = next((auths[key] for key in keys if isinstance(auths.get(key), dict)), None)
    if entry is None or not entry.get("auth"):
        if config.get("credsStore") or registry in (config.get("credHelpers") or {}):
            log.warning(
                "registry_credential_helper_not_used",
                registry=registry,
                message="corral reads the auths entries of the Docker config, not credential helpers: "
                "run `docker login` with a plain config, or pull the image on the node",
            )
        return None
    try:
        username, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    payload = {"username": username, "password": password, "serveraddress": registry}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
