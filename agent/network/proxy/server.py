"""The node proxy: a TCP relay on every Service frontend.

`update(routes)` applies the full set of Service routes (idempotent). Each
route port has its frontends (`frontends.py`): `<clusterIP>:<port>` (the
address must be local: the agent puts clusterIPs on an interface, see
`cluster_ips.py`) and node frontends, bound on every address in `addresses`
(the node address, the Docker pod network's gateway, …). A node frontend
with `externalTrafficPolicy: Local` balances over this node's backends only
(the client's address is lost to the relay either way); one with source
ranges (a LoadBalancer's loadBalancerSourceRanges) closes a connection from
any other client at once. UDP frontends are served by `udp.py`. A connection accepted
there is given a backend by the port's `Balancer` (`endpoints.py`): connect
with a timeout; on failure eject that backend and try another, up to
`max_attempts` distinct backends; with none left the client's connection is
reset (zero linger), as the kernel path's reject does. With
sessionAffinity: ClientIP the balancer gives a client's connections the
backend its previous one went to (per frontend; `endpoints.py`). A clusterIP
frontend with internalTrafficPolicy: Local balances over this node's
backends only: without one here, every connection is reset at once.

The relay is two `asyncio.Protocol`s joined back to back (no streams, no
per-chunk awaits): what one side reads is written to the other at once, and
when a side's write buffer passes its high-water mark the other side stops
reading until it drains below the low-water mark. A half-close is passed on
(`write_eof`); an error or close on one side closes both.

Endpoint changes leave established connections to backends that remain
alone. Connections to a removed backend, or of a removed Service or port,
are closed `drain_seconds` later; a removed port stops listening at once.

A port that cannot be bound (in use, not permitted) is logged
(`proxy_port_unavailable`) and retried every `retry_seconds`; the agent never
fails for it. When two Services want one frontend, the one holding it
keeps it (tie: the lower namespace/name) and the other is logged
(`proxy_port_conflict`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

import structlog

from agent.network.proxy.endpoints import Backend, Balancer, backends_of
from agent.network.proxy.frontends import NODE, Frontend, allows, frontends
from agent.network.proxy.udp import UdpFrontend
from protos.corral.v1 import discovery_pb2

log = structlog.get_logger(__name__)

BACKLOG = 1024
# Per direction: the reading side pauses while the writing side holds this much unsent.
WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024


@dataclass
class ServiceStats:
    """Counters of one Service, over all its ports, since the proxy first served it."""

    connections_total: int = 0
    connections_active: int = 0
    connect_failures: int = 0
    # Client → backend, and backend → client.
    bytes_in: int = 0
    bytes_out: int = 0
    # Connections relayed to each backend pod, by pod name: every current backend pod has an entry
    # (0 until its first connection); a pod that stops being a backend is forgotten.
    backends: dict[str, int] = field(default_factory=dict)


# -- the relay ----------------------------------------------------------------------


class _Pipe(asyncio.Protocol):
    """One side of a relay: what it reads is written to the other side's transport (`peer`)."""

    def __init__(self, relay: _Relay, inbound: bool) -> None:
        self.relay = relay
        self.inbound = inbound  # True: the client's side
        self.transport: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self.eof = False
        # Read before the two sides were joined (uvloop may deliver a first chunk despite the pause).
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        transport.pause_reading()  # until both sides are joined
        if self.inbound:
            self.relay.accepted()

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            self.early.append(data)
            return
        peer.write(data)
        if self.inbound:
            self.relay.stats.bytes_in += len(data)
        else:
            self.relay.stats.bytes_out += len(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is None:  # passed on when the sides are joined
            return True
        return self.relay.pass_eof(self)

    def pause_writing(self) -> None:
        if self.peer is not None and not self.peer.is_closing():
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and not self.peer.is_closing():
            self.peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inbound or self.relay.backend is self:  # not a connect attempt given up on
            self.relay.close()


class _Relay:
    """One proxied connection: the client's pipe and, once connected, the backend's."""

    def __init__(self, proxy: ProxyServer, entry: _PortEntry) -> None:
        self.proxy = proxy
        self.entry = entry
        self.stats = entry.stats
        self.client = _Pipe(self, inbound=True)
        self.backend: _Pipe | None = None
        self.backend_key = ""
        self.closed = False
        # The client's address, read when affinity or source ranges need it.
        self.client_ip = ""

    def accepted(self) -> None:
        front = self.entry.frontend
        if front.source_ranges or front.affinity_seconds:
            assert self.client.transport is not None
            peer = self.client.transport.get_extra_info("peername")
            self.client_ip = str(peer[0]) if peer else ""
            if front.source_ranges and not allows(front, self.client_ip):
                self.closed = True
                self.client.transport.abort()
                return
        self.stats.connections_total += 1
        self.stats.connections_active += 1
        self.entry.relays.add(self)
        self.proxy._connect_soon(self)

    def attach(self, backend: Backend, pipe: _Pipe) -> None:
        """The backend is connected: join the two sides and start reading both."""
        client = self.client
        assert client.transport is not None
        assert pipe.transport is not None
        self.backend = pipe
        self.backend_key = backend.key
        self.entry.balancer.opened(backend.key)
        if backend.pod:
            self.stats.backends[backend.pod] = self.stats.backends.get(backend.pod, 0) + 1
        client.peer, pipe.peer = pipe.transport, client.transport
        for side in (client, pipe):
            early, side.early = side.early, []
            for data in early:
                side.data_received(data)
        for side in (client, pipe):
            if side.eof and not self.pass_eof(side):
                return
        client.transport.resume_reading()
        pipe.transport.resume_reading()

    def pass_eof(self, pipe: _Pipe) -> bool:
        """`pipe` read an EOF: half-close the other way; both ended (or no half-close): close.

        Returns whether `pipe`'s transport stays open (what `eof_received` answers).
        """
        other = self.backend if pipe is self.client else self.client
        if other is None or other.eof or pipe.peer is None or not pipe.peer.can_write_eof():
            self.close()
            return False
        pipe.peer.write_eof()
        return True  # the other way goes on

    def refuse(self) -> None:
        """No backend to take it: reset the client's connection (as the kernel path does), then close."""
        transport = self.client.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and not self.closed:
            with contextlib.suppress(OSError):  # closing with a zero linger time sends a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stats.connections_active -= 1
        self.entry.relays.discard(self)
        if self.backend_key:
            self.entry.balancer.closed(self.backend_key)
        for pipe in (self.client, self.backend):
            if pipe is not None and pipe.transport is not None:
                pipe.transport.close()  # what is buffered is still sent


# -- listeners and ports ------------------------------------------------------------


@dataclass
class _Listener:
    """One address:port: bound (`sock`) by `update`, then served (`server`) by the run loop."""

    address: str
    port: int
    sock: socket.socket | None = None
    server: asyncio.AbstractServer | None = None
    starting: bool = False  # the run loop is handing `sock` to a server
    closed: bool = False
    error: str = ""
    retry_at: float = 0.0

    @property
    def bound(self) -> bool:
        return self.sock is not None or self.server is not None

    def close(self) -> None:
        self.closed = True
        if self.server is not None:
            self.server.close()
            self.server = None
        elif self.sock is not None and not self.starting:  # else the run loop closes it
            self.sock.close()
            self.sock = None


@dataclass(eq=False)
class _PortEntry:
    """A listen port and the Service port it belongs to."""

    service: str  # "namespace/name"
    port_name: str
    port: int
    balancer: Balancer
    stats: ServiceStats
    frontend: Frontend
    listeners: list[_Listener] = field(default_factory=list)
    relays: set[_Relay] = field(default_factory=set)
    retired: bool = False


@dataclass(frozen=True)
class _Wanted:
    service: str
    route: discovery_pb2.ServiceRoute
    port: discovery_pb2.RoutePort
    frontend: Frontend


FrontendKey = tuple[str, int, str]


def _bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def _returning(pipe: _Pipe) -> Callable[[], _Pipe]:
    return lambda: pipe


def log_new_conflicts(conflicts: set[tuple[int, str, str]], logged: set[tuple[int, str, str]]) -> None:
    """Log each (port, Service left without it, Service holding it) not logged before."""
    for port, loser, holder in sorted(conflicts - logged):
        log.warning(
            "proxy_port_conflict",
            port=port,
            service=loser,
            held_by=holder,
            message=f"port {port} is already used by Service {holder}; {loser} gets no proxy on it",
        )


class ProxyServer:
    """The node proxy; see the module docstring."""

    def __init__(
        self,
        addresses: list[str],
        *,
        connect_timeout: float = 1.0,
        eject_seconds: float = 10.0,
        eject_max_seconds: float = 60.0,
        drain_seconds: float = 10.0,
        max_attempts: int = 3,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        node: str = "",
        reserved: Mapping[int, str] | None = None,
    ) -> None:
        self.addresses = list(dict.fromkeys(addresses))
        # This node's name (Local frontends keep its backends) and the node-address ports left alone.
        self.node = node
        self.reserved = dict(reserved or {})
        self.connect_timeout = connect_timeout
        self.eject_seconds = eject_seconds
        self.eject_max_seconds = eject_max_seconds
        self.drain_seconds = drain_seconds
        self.max_attempts = max(1, max_attempts)
        self.retry_seconds = retry_seconds
        self._clock = clock
        self._entries: dict[FrontendKey, _PortEntry] = {}
        self._stats: dict[str, ServiceStats] = {}
        self._retired: set[_PortEntry] = set()  # still draining
        self._drains: list[tuple[float, int, _PortEntry]] = []
        self._sequence = itertools.count()
        self._conflicts: set[tuple[int, str, str]] = set()
        self._unsupported: set[tuple[str, str]] = set()
        self._udp_ips: set[str] = set()
        # Told of the UDP frontends (`udp.py`); None: UDP is not served.
        self.udp: Callable[[list[UdpFrontend]], None] | None = None
        # Told of the clusterIPs the proxy serves (they must be local: `cluster_ips.py`).
        self.on_cluster_ips: Callable[[set[str]], None] | None = None
        self._wake = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None

    # -- public --------------------------------------------------------------------

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        """Apply the full desired set of routes, keyed "namespace/name"."""
        now = self._clock()
        wanted = self._wanted(routes)
        if self.on_cluster_ips is not None:
            self.on_cluster_ips({key[0] for key in wanted if key[0]} | self._udp_ips)
        for key, entry in list(self._entries.items()):
            want = wanted.get(key)
            if want is None or want.service != entry.service:
                self._retire(entry, now)
        for key, want in wanted.items():
            held = self._entries.get(key)
            if held is None:
                self._open(want, now)
            else:
                self._refresh(held, want, now)
        live = {e.service for e in self._entries.values()}
        draining = {e.service for e in self._retired}
        self._stats = {key: stats for key, stats in self._stats.items() if key in live | draining}
        self._track_backend_pods()
        self._wake.set()

    def _track_backend_pods(self) -> None:
        """Keep a connection counter for exactly the pods that are backends now."""
        pods: dict[str, set[str]] = {key: set() for key in self._stats}
        for entry in self._entries.values():
            pods[entry.service].update(b.pod for b in entry.balancer.backends if b.pod)
        for key, stats in self._stats.items():
            stats.backends = {pod: stats.backends.get(pod, 0) for pod in sorted(pods[key])}

    def stats(self) -> dict[str, ServiceStats]:
        """A copy of every Service's counters, by "namespace/name"."""
        return {key: replace(stats, backends=dict(stats.backends)) for key, stats in self._stats.items()}

    def retry_binds(self) -> None:
        """Try every unbound listener again now (its address may have just become local)."""
        for _, listener in self._listeners():
            if not listener.bound:
                listener.retry_at = 0.0
        self._wake.set()

    def listening(self) -> list[tuple[str, int]]:
        """The (address, port) pairs bound now."""
        return sorted((ls.address, ls.port) for _, ls in self._listeners() if ls.bound)

    async def run(self) -> None:
        """Serve until cancelled; then stop listening and close every connection."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                await self._maintain()
        finally:
            self._group = None
            for entry in [*self._entries.values(), *self._retired]:
                for listener in entry.listeners:
                    listener.close()
                for relay in list(entry.relays):
                    relay.close()

    # -- desired ports ---------------------------------------------------------------

    def _wanted(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> dict[FrontendKey, _Wanted]:
        claims: dict[FrontendKey, list[_Wanted]] = {}
        udp: list[UdpFrontend] = []
        for key in sorted(routes):
            route = routes[key]
            for route_port in route.ports:
                fronts = frontends(route, route_port, self.reserved)
                if not fronts and not route.headless:
                    self._note_unsupported(key, route_port)
                for front in fronts:
                    if front.protocol == "tcp":
                        claims.setdefault(front.key, []).append(_Wanted(key, route, route_port, front))
                    elif self.udp is not None:
                        udp.append(
                            UdpFrontend(
                                key, front, self._backends(route_port, front), dict(route.weights), route.load_balancing
                            )
                        )
                    else:
                        self._note_unsupported(key, route_port)
        if self.udp is not None:
            self.udp(udp)
        self._udp_ips = {u.frontend.address for u in udp if u.frontend.address != NODE}
        wanted: dict[FrontendKey, _Wanted] = {}
        conflicts: set[tuple[int, str, str]] = set()
        for number, claimants in claims.items():
            holder = self._entries.get(number)
            owner = next((c for c in claimants if holder is not None and c.service == holder.service), claimants[0])
            wanted[number] = owner
            for other in claimants:
                if other.service != owner.service:
                    conflicts.add((number[1], other.service, owner.service))
        log_new_conflicts(conflicts, self._conflicts)
        self._conflicts = conflicts
        return wanted

    def _backends(self, port: discovery_pb2.RoutePort, front: Frontend) -> list[Backend]:
        backends = backends_of(port)
        return [b for b in backends if b.node == self.node] if front.local_only else backends

    def _note_unsupported(self, service: str, port: discovery_pb2.RoutePort) -> None:
        if (service, port.name) not in self._unsupported:
            self._unsupported.add((service, port.name))
            log.warning("proxy_protocol_unsupported", service=service, port=port.port, protocol=port.protocol)

    # -- port entries ----------------------------------------------------------------

    def _open(self, want: _Wanted, now: float) -> None:
        balancer = Balancer(
            self._backends(want.port, want.frontend),
            weights=want.route.weights,
            algorithm=want.route.load_balancing,
            eject_seconds=self.eject_seconds,
            eject_max=self.eject_max_seconds,
            affinity_seconds=want.frontend.affinity_seconds,
        )
        stats = self._stats.setdefault(want.service, ServiceStats())
        front = want.frontend
        entry = _PortEntry(want.service, want.port.name, front.port, balancer, stats, front)
        where = self.addresses if front.address == NODE else [front.address]
        entry.listeners = [_Listener(address, front.port) for address in where]
        self._entries[front.key] = entry
        for listener in entry.listeners:
            self._try_bind(entry, listener, now)

    def _refresh(self, entry: _PortEntry, want: _Wanted, now: float) -> None:
        entry.port_name = want.port.name
        entry.frontend = want.frontend
        removed = entry.balancer.update(
            self._backends(want.port, want.frontend),
            weights=want.route.weights,
            algorithm=want.route.load_balancing,
            affinity_seconds=want.frontend.affinity_seconds,
        )
        if removed and any(r.backend_key in removed for r in entry.relays):
            self._schedule_drain(entry, now)

    def _retire(self, entry: _PortEntry, now: float) -> None:
        del self._entries[entry.frontend.key]
        entry.retired = True
        for listener in entry.listeners:
            listener.close()
        log.info("proxy_port_closed", port=entry.port, service=entry.service, connections=len(entry.relays))
        if entry.relays:
            self._retired.add(entry)
            self._schedule_drain(entry, now)

    def _schedule_drain(self, entry: _PortEntry, now: float) -> None:
        heapq.heappush(self._drains, (now + self.drain_seconds, next(self._sequence), entry))

    def _drain(self, entry: _PortEntry) -> None:
        """Close the entry's connections whose backend is gone (all of them once retired)."""
        keep = set() if entry.retired else entry.balancer.backend_keys()
        doomed = [r for r in entry.relays if r.backend_key and r.backend_key not in keep]
        for relay in doomed:
            relay.close()
        if doomed:
            log.info("proxy_connections_drained", service=entry.service, port=entry.port, closed=len(doomed))
        if entry.retired and not entry.relays:
            self._retired.discard(entry)

    # -- binding and serving ---------------------------------------------------------

    def _try_bind(self, entry: _PortEntry, listener: _Listener, now: float) -> None:
        try:
            listener.sock = _bind(listener.address, listener.port)
        except OSError as e:
            reason = _reason(e)
            log_event = log.warning if reason != listener.error else log.debug
            log_event(
                "proxy_port_unavailable",
                address=listener.address,
                port=listener.port,
                service=entry.service,
                reason=reason,
                retry_in=self.retry_seconds,
            )
            listener.error = reason
            listener.retry_at = now + self.retry_seconds
            return
        if listener.error:
            log.info("proxy_port_recovered", address=listener.address, port=listener.port, service=entry.service)
        listener.error = ""

    def _listeners(self) -> Iterator[tuple[_PortEntry, _Listener]]:
        for entry in list(self._entries.values()):
            for listener in entry.listeners:
                yield entry, listener

    async def _maintain(self) -> None:
        """Serve bound sockets, retry failed binds, and close drained connections, as they come due."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self._clock()
            for entry, listener in self._listeners():
                if not listener.bound and listener.retry_at <= now:
                    self._try_bind(entry, listener, now)
            for entry, listener in self._listeners():
                if listener.sock is not None and listener.server is None:
                    await self._serve(loop, entry, listener)
            now = self._clock()
            while self._drains and self._drains[0][0] <= now:
                _, _, entry = heapq.heappop(self._drains)
                self._drain(entry)
            if self._wake.is_set():
                continue
            retries = [ls.retry_at for _, ls in self._listeners() if not ls.bound]
            deadlines = [*retries, *(d[0] for d in self._drains[:1])]
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _serve(self, loop: asyncio.AbstractEventLoop, entry: _PortEntry, listener: _Listener) -> None:
        sock = listener.sock
        assert sock is not None
        listener.starting = True
        try:
            server = await loop.create_server(lambda: _Relay(self, entry).client, sock=sock, backlog=BACKLOG)
        except OSError as e:
            sock.close()
            listener.sock = None
            listener.error = _reason(e)
            listener.retry_at = self._clock() + self.retry_seconds
            log.warning(
                "proxy_port_unavailable",
                address=listener.address,
                port=listener.port,
                service=entry.service,
                reason=listener.error,
                retry_in=self.retry_seconds,
            )
            return
        finally:
            listener.starting = False
        listener.sock = None  # the server owns it now
        if listener.closed:  # retired while it was starting
            server.close()
            return
        listener.server = server
        log.info(
            "proxy_listening",
            address=listener.address,
            port=listener.port,
            service=entry.service,
            backends=len(entry.balancer.backends),
        )

    # -- connecting ------------------------------------------------------------------

    def _connect_soon(self, relay: _Relay) -> None:
        if self._group is None:
            relay.close()
            return
        try:
            self._group.create_task(self._connect(relay))
        except RuntimeError:  # the proxy is shutting down
            relay.close()

    async def _connect(self, relay: _Relay) -> None:
        try:
            await self._connect_backend(relay)
        except Exception:  # one connection's surprise must not take the proxy (and the agent) down
            log.exception("proxy_connect_crashed", service=relay.entry.service, port=relay.entry.port)
            relay.close()

    async def _connect_backend(self, relay: _Relay) -> None:
        loop = asyncio.get_running_loop()
        entry = relay.entry
        tried: set[str] = set()
        while len(tried) < self.max_attempts and not relay.closed:
            backend = entry.balancer.pick(self._clock(), exclude=tried, client=relay.client_ip)
            if backend is None:
                break
            tried.add(backend.key)
            pipe = _Pipe(relay, inbound=False)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    await loop.create_connection(_returning(pipe), backend.address, backend.port)
            except OSError as e:  # TimeoutError included
                self._connect_failed(entry, backend, e)
                continue
            if relay.closed:  # the client left meanwhile
                assert pipe.transport is not None
                pipe.transport.close()
                return
            relay.attach(backend, pipe)
            if entry.retired or backend.key not in entry.balancer.backend_keys():  # removed while connecting
                self._schedule_drain(entry, self._clock())
            return
        if not relay.closed:
            log.debug("proxy_no_backend", service=entry.service, port=entry.port, tried=len(tried))
            relay.refuse()

    def _connect_failed(self, entry: _PortEntry, backend: Backend, error: OSError) -> None:
        now = self._clock()
        was_ejected = entry.balancer.ejected(backend.key, now)
        ejected_for = entry.balancer.failed(backend.key, now)
        entry.stats.connect_failures += 1
        reason = "connect timed out" if isinstance(error, TimeoutError) else _reason(error)
        log_event = log.debug if was_ejected else log.warning
        log_event(
            "proxy_backend_ejected",
            service=entry.service,
            port=entry.port,
            backend=backend.key,
            pod=backend.pod,
            reason=reason,
            ejected_for=ejected_for,
        )
