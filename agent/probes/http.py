"""The HTTP GET probe: a minimal HTTP/1.1 client over asyncio streams.

It sends one GET (`Host`, `User-Agent: corral-probe/1`, `Accept: */*`,
`Connection: close`, then the probe's own headers, which may replace the first
three), reads only the status line and hangs up. As in Kubernetes, a status
from 200 to 399 is a success (redirects are not followed: a 3xx passes), and
HTTPS does not verify the server's certificate.

`probe_http` never raises (except `CancelledError`): a refused or reset
connection, a timeout or a garbage status line is a failed `ProbeResult`
whose message says which.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from contextlib import suppress
from functools import cache
from urllib.parse import quote

from agent.probes.dial import describe_error, dial_error, join_host_port
from agent.probes.result import ProbeResult, timed_out

USER_AGENT = "corral-probe/1"

# Longest status or header line we read; the stream limit.
_MAX_LINE = 8192
# 1xx responses (103 Early Hints, …) skipped before the final status.
_MAX_INTERIM = 8
_MAX_HEADERS = 200
_STATUS_LINE = re.compile(rb"HTTP/\d\.\d (\d{3})(?: [^\r\n]*)?\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PATH_SAFE = "/?&=%:@!$'()*+,;~[]"


class MalformedResponseError(ValueError):
    """The server's answer is not HTTP/1.x."""


async def probe_http(
    host: str,
    port: int,
    path: str,
    *,
    scheme: str = "HTTP",
    headers: Sequence[tuple[str, str]] = (),
    timeout: float,  # noqa: ASYNC109 - the probe's own deadline is part of its contract
) -> ProbeResult:
    """GET scheme://host:port/path; success when 200 <= status < 400."""
    try:
        request = build_request(host, port, path, headers)
        context = ssl_context(scheme)
    except ValueError as exc:
        return ProbeResult.failed(f"HTTP probe failed: {exc}")
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(host, port, ssl=context, limit=_MAX_LINE)
    except TimeoutError:
        return timed_out(timeout)
    except Exception as exc:
        return ProbeResult.failed(dial_error(host, port, exc))
    try:
        async with asyncio.timeout_at(deadline):
            status = await _exchange(reader, writer, request)
    except TimeoutError:
        return timed_out(timeout)
    except Exception as exc:
        return ProbeResult.failed(f"HTTP probe failed: {describe_error(exc)}")
    finally:
        await _hang_up(writer)
    return judge_status(status)


def judge_status(status: int) -> ProbeResult:
    if 200 <= status < 400:
        return ProbeResult.ok(f"HTTP probe succeeded with statuscode: {status}")
    return ProbeResult.failed(f"HTTP probe failed with statuscode: {status}")


def build_request(host: str, port: int, path: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """The request bytes; ValueError for a header that cannot be sent."""
    own = {name.lower() for name, _ in headers}
    defaults = [
        ("Host", join_host_port(host, port)),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
    ]
    lines = [f"GET {request_target(path)} HTTP/1.1"]
    lines += [_header_line(name, value) for name, value in defaults if name.lower() not in own]
    lines += [_header_line(name, value) for name, value in headers if name.lower() != "connection"]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request_target(path: str) -> str:
    """The path as sent: rooted, with unsafe characters percent-encoded."""
    if not path.startswith("/"):
        path = "/" + path
    return quote(path, safe=_PATH_SAFE)


def _header_line(name: str, value: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if any(char in value for char in "\r\n\0"):
        raise ValueError(f"invalid value for header {name!r}")
    return f"{name}: {value}"


def ssl_context(scheme: str) -> ssl.SSLContext | None:
    """None for HTTP; for HTTPS a context that does not verify (as Kubernetes)."""
    match scheme.upper():
        case "" | "HTTP":
            return None
        case "HTTPS":
            return _insecure_context()
        case _:
            raise ValueError(f"unsupported scheme {scheme!r}")


@cache
def _insecure_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def parse_status_line(line: bytes) -> int:
    """The status code of `HTTP/1.1 200 OK`; MalformedResponseError otherwise."""
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise MalformedResponseError(f"malformed HTTP status line: {line[:80]!r}")
    return int(match.group(1))


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    return await _read_final_status(reader)


async def _read_final_status(reader: asyncio.StreamReader) -> int:
    for _ in range(_MAX_INTERIM + 1):
        status = parse_status_line(await _read_line(reader, first=True))
        if not 100 <= status < 200:
            return status
        await _skip_headers(reader)
    raise MalformedResponseError("too many interim (1xx) responses")


async def _skip_headers(reader: asyncio.StreamReader) -> None:
    for _ in range(_MAX_HEADERS):
        if await _read_line(reader, first=False) in (b"\r\n", b"\n"):
            return
    raise MalformedResponseError("too many header lines")


async def _read_line(reader: asyncio.StreamReader, *, first: bool) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if first and not exc.partial:
            raise MalformedResponseError("connection closed before the status line") from exc
        raise MalformedResponseError(f"malformed HTTP response: {exc.partial[:80]!r}") from exc
    except asyncio.LimitOverrunError as exc:
        raise MalformedResponseError(f"HTTP response line longer than {_MAX_LINE} bytes") from exc


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    """Drop the connection at once: the status is all a probe needs."""
    writer.transport.abort()
    with suppress(Exception):
        await writer.wait_closed()
