"""The node-local DNS server: UDP and TCP on each (address, port) it is given.

Service names are answered from the route table (`records.py`); everything
else is forwarded to the host's resolvers (the `nameserver` lines of
/etc/resolv.conf, re-read when the file changes, without our own addresses)
with a 2 s timeout per upstream, and SERVFAIL when none answers. A query that
does not parse is dropped (logged at debug). An address:port that cannot be
bound is logged (`dns_port_unavailable`) and retried every `retry_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import cast

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import structlog

from agent.network.dns.records import Zone, build_zone, error_response, respond
from protos.corral.v1 import discovery_pb2

log = structlog.get_logger(__name__)

RESOLV_CONF = Path("/etc/resolv.conf")
# At most this many forwarded queries in flight; more are answered SERVFAIL at once.
MAX_FORWARDS = 256
TCP_IDLE_SECONDS = 10.0
RESOLV_CONF_CHECK_SECONDS = 5.0

Reply = Callable[[bytes], None]


def nameservers(text: str) -> list[str]:
    """The `nameserver` addresses of a resolv.conf, in order."""
    found = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            found.append(parts[1])
    return found


class _Upstreams:
    """The host's resolvers from resolv.conf, re-read when the file changes."""

    def __init__(self, path: Path, exclude: set[str], fixed: Sequence[tuple[str, int]] | None) -> None:
        self.path = path
        self.exclude = exclude | {"0.0.0.0", "::"}
        self.fixed = list(fixed) if fixed is not None else None
        self._mtime: float | None = None
        self._checked = float("-inf")
        self._current: list[tuple[str, int]] = []

    def current(self, now: float) -> list[tuple[str, int]]:
        if self.fixed is not None:
            return self.fixed
        if now - self._checked >= RESOLV_CONF_CHECK_SECONDS:
            self._checked = now
            self._reload()
        return self._current

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime == self._mtime:
                return
            text = self.path.read_text()
        except OSError as e:
            log.warning("dns_resolv_conf_unreadable", path=str(self.path), reason=e.strerror or str(e))
            self._current = []
            return
        self._mtime = mtime
        self._current = [(a, 53) for a in nameservers(text) if a not in self.exclude]
        log.info("dns_upstreams", upstreams=[a for a, _ in self._current])


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, address: str) -> None:
        self.server = server
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        transport = self.transport
        if transport is None:
            return

        def reply(wire: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(wire, addr)

        self.server.handle(data, self.address, reply, tcp=False)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns_udp_error", address=self.address, error=str(exc))


class _Tcp(asyncio.Protocol):
    """DNS over TCP: two-byte length, message; several per connection."""

    def __init__(self, server: DnsServer, address: str) -> None:
        self.server = server
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self._touch()

    def _touch(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.transport is not None:
            self.idle = asyncio.get_running_loop().call_later(TCP_IDLE_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        self._touch()
        self.buffer += data
        while len(self.buffer) >= 2:
            length = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + length:
                return
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            self.server.handle(message, self.address, self._reply, tcp=True)

    def _reply(self, wire: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(wire).to_bytes(2, "big") + wire)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None


class DnsServer:
    """The node-local DNS server; see the module docstring."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        *,
        upstreams: Sequence[tuple[str, int]] | None = None,
        resolv_conf: Path = RESOLV_CONF,
        upstream_timeout: float = 2.0,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`upstreams` (address, port) replaces the resolvers of `resolv_conf`."""
        self.endpoints = list(dict.fromkeys(endpoints))
        self.upstream_timeout = upstream_timeout
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._upstreams = _Upstreams(resolv_conf, {a for a, _ in self.endpoints}, upstreams)
        self._zone = Zone()
        self._group: asyncio.TaskGroup | None = None
        self._forwards = 0
        self._bound: dict[tuple[str, int], tuple[asyncio.DatagramTransport, asyncio.AbstractServer]] = {}
        self._errors: dict[tuple[str, int], str] = {}

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self._zone = build_zone(routes.values())

    def listening(self) -> list[tuple[str, int]]:
        return sorted(self._bound)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                while True:
                    for endpoint in self.endpoints:
                        if endpoint not in self._bound:
                            await self._bind(endpoint)
                    if len(self._bound) == len(self.endpoints):
                        await asyncio.Event().wait()  # until cancelled
                    await asyncio.sleep(self.retry_seconds)
        finally:
            self._group = None
            for transport, server in self._bound.values():
                transport.close()
                server.close()
            self._bound.clear()

    async def _bind(self, endpoint: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        address, port = endpoint
        transport: asyncio.DatagramTransport | None = None
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self, address), local_addr=endpoint)
            server = await loop.create_server(lambda: _Tcp(self, address), address, port, reuse_address=True)
        except OSError as e:
            if transport is not None:
                transport.close()
            reason = e.strerror or str(e)
            log_event = log.warning if self._errors.get(endpoint) != reason else log.debug
            log_event("dns_port_unavailable", address=address, port=port, reason=reason, retry_in=self.retry_seconds)
            self._errors[endpoint] = reason
            return
        self._errors.pop(endpoint, None)
        self._bound[endpoint] = (transport, server)
        log.info("dns_listening", address=address, port=port)

    # -- queries -----------------------------------------------------------------------

    def handle(self, data: bytes, local_address: str, reply: Reply, *, tcp: bool) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception as e:  # any parse failure: a malformed packet is dropped, never fatal
            log.debug("dns_malformed_query", address=local_address, error=f"{type(e).__name__}: {e}")
            return
        if query.flags & dns.flags.QR:
            return
        response = respond(query, self._zone, local_address)
        if response is not None:
            reply(response.to_wire())
            return
        if self._group is None or self._forwards >= MAX_FORWARDS:
            reply(error_response(query, dns.rcode.SERVFAIL).to_wire())
            return
        try:
            self._group.create_task(self._forward(query, reply, tcp=tcp))
        except RuntimeError:  # the server is shutting down
            return
        self._forwards += 1

    async def _forward(self, query: dns.message.Message, reply: Reply, *, tcp: bool) -> None:
        try:
            for address, port in self._upstreams.current(self._clock()):
                with contextlib.suppress(dns.exception.DNSException, OSError, ValueError):
                    if tcp:
                        response = await dns.asyncquery.tcp(query, address, timeout=self.upstream_timeout, port=port)
                    else:
                        response = await dns.asyncquery.udp(
                            query, address, timeout=self.upstream_timeout, port=port, ignore_unexpected=True
                        )
                    reply(response.to_wire())
                    return
            log.debug("dns_forward_failed", name=str(query.question[0].name) if query.question else "")
            reply(error_response(query, dns.rcode.SERVFAIL).to_wire())
        except Exception:  # one query's surprise must not take the server (and the agent) down
            log.exception("dns_forward_crashed")
            reply(error_response(query, dns.rcode.SERVFAIL).to_wire())
        finally:
            self._forwards -= 1
