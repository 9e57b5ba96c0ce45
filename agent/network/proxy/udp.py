"""The userspace proxy's UDP relay: one socket per UDP frontend, one session per client.

`update(frontends)` takes every UDP frontend with its Service, backends,
traffic weights and algorithm (`UdpFrontend`, from `ProxyServer`, which sorts
routes into frontends). Each frontend is a
socket bound on its address (the clusterIP, or every proxy address for a node
frontend) and port. A datagram from a new client (address, port) opens a
session: a backend picked by the frontend's `Balancer`, per flow as the TCP
relay picks per connection (round robin, the Service's traffic weights — a
10% canary gets every tenth new flow — LeastConnections by open sessions) and a connected socket to it; the
client's datagrams go to that backend, the backend's answers back to the
client from the frontend's address (with sessionAffinity: ClientIP, a new
session from a client address goes where its previous one went, within the
timeout). A session idle for `idle_seconds` (30 s,
as conntrack's UDP timeout) is closed; so is one whose backend left the
Service. Datagrams that arrive before the backend socket is open wait (at
most `MAX_PENDING`). A socket that cannot be bound (the address not local
yet, the port taken) is retried every `retry_seconds`.

What a relay cannot do: the backend sees the proxy's address, not the
client's (externalTrafficPolicy: Local keeps only the choice of local
backends here); the kernel data path keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import structlog

from agent.network.proxy.endpoints import ROUND_ROBIN, Backend, Balancer
from agent.network.proxy.frontends import NODE, Frontend, allows

log = structlog.get_logger(__name__)

IDLE_SECONDS = 30.0
MAX_PENDING = 64
MAX_DATAGRAM = 65535

Client = tuple[str, int]


@dataclass(frozen=True)
class UdpFrontend:
    """A UDP frontend to serve: its Service ("namespace/name"), backends, and how to pick among them."""

    service: str
    frontend: Frontend
    backends: list[Backend]
    weights: Mapping[str, int] = field(default_factory=dict)
    algorithm: str = ROUND_ROBIN


class _Upstream(asyncio.DatagramProtocol):
    """A session's socket to its backend: answers go back to the client."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        del addr
        self.session.touch()
        self.session.reply(data)


@dataclass(eq=False)
class _Session:
    frontend: _Socket
    client: Client
    backend: Backend
    clock: Callable[[], float]
    transport: asyncio.DatagramTransport | None = None
    pending: list[bytes] = field(default_factory=list)
    last: float = 0.0
    closed: bool = False

    def touch(self) -> None:
        self.last = self.clock()

    def send(self, data: bytes) -> None:
        self.touch()
        if self.transport is None:
            if len(self.pending) < MAX_PENDING:
                self.pending.append(data)
            return
        self.transport.sendto(data)

    def reply(self, data: bytes) -> None:
        if self.frontend.transport is not None:
            self.frontend.transport.sendto(data, self.client)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self.frontend.entry.balancer.closed(self.backend.key)


@dataclass(eq=False)
class _Entry:
    service: str
    frontend: Frontend
    balancer: Balancer
    sockets: list[_Socket] = field(default_factory=list)


class _Socket(asyncio.DatagramProtocol):
    """One bound address:port of a frontend."""

    def __init__(self, relay: UdpProxy, entry: _Entry, address: str) -> None:
        self.relay = relay
        self.entry = entry
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[Client, _Session] = {}
        self.retry_at = 0.0
        self.error = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's are not subclasses

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        client = (str(addr[0]), int(str(addr[1])))
        session = self.sessions.get(client)
        if session is None or session.closed:
            if not allows(self.entry.frontend, client[0]):
                return
            backend = self.entry.balancer.pick(self.relay.clock(), client=client[0])
            if backend is None:
                return
            self.entry.balancer.opened(backend.key)
            session = _Session(self, client, backend, self.relay.clock)
            self.sessions[client] = session
            self.relay.open_soon(session)
        session.send(data)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class UdpProxy:
    """See the module docstring; `addresses`: the node's proxy addresses (for node frontends)."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        idle_seconds: float = IDLE_SECONDS,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = list(dict.fromkeys(addresses))
        self.idle_seconds = idle_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._entries: dict[tuple[str, int, str], _Entry] = {}
        self._wake = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None

    def update(self, wanted: Sequence[UdpFrontend]) -> None:
        seen: dict[tuple[str, int, str], UdpFrontend] = {}
        for want in wanted:
            seen.setdefault(want.frontend.key, want)  # the first Service by name keeps it
        for key, entry in list(self._entries.items()):
            if key not in seen or seen[key].service != entry.service:
                for sock in entry.sockets:
                    sock.close()
                del self._entries[key]
        for key, want in seen.items():
            front = want.frontend
            held = self._entries.get(key)
            if held is None:
                balancer = Balancer(
                    want.backends,
                    weights=want.weights,
                    algorithm=want.algorithm,
                    affinity_seconds=front.affinity_seconds,
                )
                entry = _Entry(want.service, front, balancer)
                where = self.addresses if front.address == NODE else [front.address]
                entry.sockets = [_Socket(self, entry, address) for address in where]
                self._entries[key] = entry
            else:
                entry = held
                entry.frontend = front
                removed = entry.balancer.update(
                    want.backends,
                    weights=want.weights,
                    algorithm=want.algorithm,
                    affinity_seconds=front.affinity_seconds,
                )
                for sock in entry.sockets:
                    for client, session in list(sock.sessions.items()):
                        if session.backend.key in removed:
                            session.close()
                            del sock.sessions[client]
        self._wake.set()

    def retry_binds(self) -> None:
        for entry in self._entries.values():
            for sock in entry.sockets:
                sock.retry_at = 0.0
        self._wake.set()

    def listening(self) -> list[tuple[str, int]]:
        return sorted(
            (s.address, e.frontend.port) for e in self._entries.values() for s in e.sockets if s.transport is not None
        )

    def open_soon(self, session: _Session) -> None:
        if self._group is None:
            session.close()
            return
        self._group.create_task(self._open(session))

    async def _open(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Upstream(session), remote_addr=(session.backend.address, session.backend.port)
            )
        except OSError as e:
            log.warning("proxy_udp_backend_failed", backend=session.backend.key, reason=e.strerror or str(e))
            session.close()
            return
        if session.closed:
            transport.close()
            return
        session.transport = transport
        pending, session.pending = session.pending, []
        for data in pending:
            transport.sendto(data)

    async def _bind(self, loop: asyncio.AbstractEventLoop, entry: _Entry, sock: _Socket) -> None:
        raw = socket.socket(socket.AF_INET6 if ":" in sock.address else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            raw.bind((sock.address, entry.frontend.port))
            raw.setblocking(False)
            await loop.create_datagram_endpoint(lambda: sock, sock=raw)
        except OSError as e:
            raw.close()
            reason = e.strerror or str(e)
            (log.warning if reason != sock.error else log.debug)(
                "proxy_port_unavailable",
                address=sock.address,
                port=entry.frontend.port,
                protocol="udp",
                service=entry.service,
                reason=reason,
            )
            sock.error = reason
            sock.retry_at = self.clock() + self.retry_seconds
            return
        sock.error = ""
        log.info(
            "proxy_listening", address=sock.address, port=entry.frontend.port, protocol="udp", service=entry.service
        )

    def _sweep(self, now: float) -> None:
        for entry in self._entries.values():
            for sock in entry.sockets:
                for client, session in list(sock.sessions.items()):
                    if session.closed or now - session.last >= self.idle_seconds:
                        session.close()
                        del sock.sessions[client]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                while True:
                    self._wake.clear()
                    now = self.clock()
                    for entry in list(self._entries.values()):
                        for sock in entry.sockets:
                            if sock.transport is None and sock.retry_at <= now:
                                await self._bind(loop, entry, sock)
                    self._sweep(self.clock())
                    timeout = min(self.retry_seconds, max(self.idle_seconds / 4, 0.05))
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
        finally:
            self._group = None
            for entry in self._entries.values():
                for sock in entry.sockets:
                    sock.close()
