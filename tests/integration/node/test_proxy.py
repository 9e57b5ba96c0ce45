"""The node proxy on real sockets: agent/network/proxy/server.py.

Backends are small asyncio servers on 127.0.0.1 that answer every line with
their name; the proxy listens on its own loopback address (127.0.0.x), so a
test never collides with a port the backends use. Every wait has a deadline.
Each test runs on the stdlib loop and on uvloop (conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from agent.network.proxy.server import ProxyServer
from protos.corral.v1 import discovery_pb2

pytestmark = pytest.mark.timeout(30)

PROXY = "127.0.0.7"
WAIT = 10.0


@dataclass
class Backend:
    """Answers each line with its name; `hold` lines are answered only once released."""

    name: str
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    accepted: int = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> Backend:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            while line := await reader.readline():
                if line.startswith(b"echo-all"):  # read to EOF, then answer with the size and close
                    rest = await reader.read()
                    writer.write(f"{self.name} {len(rest)}\n".encode())
                    await writer.drain()
                    break
                writer.write(f"{self.name}\n".encode())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()


def route_backend(backend: Backend, group: str = "") -> discovery_pb2.RouteBackend:
    return discovery_pb2.RouteBackend(address="127.0.0.1", port=backend.port, pod=backend.name, group=group)


def route(
    name: str,
    port: int,
    backends: list[discovery_pb2.RouteBackend],
    *,
    namespace: str = "default",
    load_balancing: str = "",
    weights: dict[str, int] | None = None,
) -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        namespace=namespace,
        name=name,
        load_balancing=load_balancing,
        weights=weights or {},
        ports=[discovery_pb2.RoutePort(name="tcp", protocol="TCP", port=port, backends=backends)],
    )


def routes(*items: discovery_pb2.ServiceRoute) -> dict[str, discovery_pb2.ServiceRoute]:
    return {f"{r.namespace}/{r.name}": r for r in items}


def free_port(address: str = PROXY) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    return free_port("127.0.0.1")


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"gave up after {WAIT:g}s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def ask(self) -> str:
        self.writer.write(b"who\n")
        await self.writer.drain()
        async with asyncio.timeout(WAIT):
            return (await self.reader.readline()).decode().strip()

    async def closed(self) -> bool:
        """True once the proxy has closed this connection (EOF or reset)."""
        try:
            async with asyncio.timeout(0.05):
                data = await self.reader.read(100)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return data == b""

    def close(self) -> None:
        self.writer.close()


async def connect(port: int) -> Conn:
    reader, writer = await asyncio.open_connection(PROXY, port)
    return Conn(reader, writer)


async def ask_new(port: int) -> str:
    """One line on a new connection: the backend's name, "" if the proxy closed it."""
    conn = await connect(port)
    try:
        return await conn.ask()
    except ConnectionResetError:  # closed with our request unread
        return ""
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def running(proxy: ProxyServer) -> AsyncIterator[ProxyServer]:
    task = asyncio.create_task(proxy.run())
    try:
        yield proxy
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def backends() -> AsyncIterator[list[Backend]]:
    started = [await Backend(name).start() for name in ("a", "b", "c")]
    yield started
    for backend in started:
        await backend.stop()


@pytest.fixture
def port() -> int:
    return free_port()


# -- balancing -------------------------------------------------------------------------


async def test_round_robin_spreads_new_connections_evenly(backends: list[Backend], port: int) -> None:
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(routes(route("web", port, [route_backend(b) for b in backends])))
        answers = [await ask_new(port) for _ in range(30)]

    assert answers[:3] == ["a", "b", "c"]
    assert Counter(answers) == {"a": 10, "b": 10, "c": 10}


async def test_least_connections_avoids_the_busy_backend(backends: list[Backend], port: int) -> None:
    a, b = backends[:2]
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(
            routes(route("web", port, [route_backend(a), route_backend(b)], load_balancing="LeastConnections"))
        )
        held = await connect(port)
        busy = await held.ask()
        answers = []
        for _ in range(5):
            answers.append(await ask_new(port))
            await eventually(lambda: proxy.stats()["default/web"].connections_active == 1, "the relay closed")
        held.close()

    assert busy == "a"
    assert answers == ["b"] * 5


async def test_weights_send_nothing_to_a_group_weighted_0(backends: list[Backend], port: int) -> None:
    a, b, c = backends
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(
            routes(
                route(
                    "web",
                    port,
                    [route_backend(a, "blue"), route_backend(b, "green"), route_backend(c, "blue")],
                    weights={"blue": 100, "green": 0},
                )
            )
        )
        answers = [await ask_new(port) for _ in range(10)]

    assert Counter(answers) == {"a": 5, "c": 5}


async def test_a_dead_backend_is_retried_elsewhere_and_ejected(backends: list[Backend], port: int) -> None:
    dead = discovery_pb2.RouteBackend(address="127.0.0.1", port=closed_port(), pod="dead")
    async with running(ProxyServer([PROXY], eject_seconds=30)) as proxy:
        proxy.update(routes(route("web", port, [dead, route_backend(backends[0])])))
        with capture_logs() as logs:
            answers = [await ask_new(port) for _ in range(10)]
        stats = proxy.stats()["default/web"]

    assert answers == ["a"] * 10
    assert stats.connect_failures == 1  # ejected after the first failure: not tried again
    assert stats.connections_total == 10
    ejections = [e for e in logs if e["event"] == "proxy_backend_ejected"]
    assert len(ejections) == 1
    assert ejections[0]["pod"] == "dead" and ejections[0]["reason"]


async def test_with_no_backend_left_the_client_is_closed(port: int) -> None:
    dead = [discovery_pb2.RouteBackend(address="127.0.0.1", port=closed_port(), pod=f"dead-{i}") for i in range(4)]
    async with running(ProxyServer([PROXY], max_attempts=3)) as proxy:
        proxy.update(routes(route("web", port, dead), route("empty", free_port(), [])))
        assert await ask_new(port) == ""
        await eventually(lambda: proxy.stats()["default/web"].connections_active == 0, "the connection closed")
        stats = proxy.stats()["default/web"]

    assert stats.connect_failures == 3  # max_attempts distinct backends


# -- relaying --------------------------------------------------------------------------


async def test_half_close_reaches_the_backend_and_the_answer_comes_back(backends: list[Backend], port: int) -> None:
    payload = b"x" * 3_000_000
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(routes(route("web", port, [route_backend(backends[0])])))
        conn = await connect(port)
        conn.writer.write(b"echo-all\n" + payload)
        conn.writer.write_eof()
        async with asyncio.timeout(WAIT):
            answer = await conn.reader.read()
        conn.close()
        await eventually(lambda: proxy.stats()["default/web"].connections_active == 0, "the relay closed")
        stats = proxy.stats()["default/web"]

    assert answer == f"a {len(payload)}\n".encode()
    assert stats.bytes_in == len(payload) + len(b"echo-all\n")
    assert stats.bytes_out == len(answer)


async def test_a_slow_reader_gets_every_byte(port: int) -> None:
    """A backend streams more than every buffer holds; the client reads slowly: flow control, no loss."""
    size = 8 * 1024 * 1024

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk = bytes(range(256)) * 256
        for _ in range(size // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(stream, "127.0.0.1", 0)
    backend = discovery_pb2.RouteBackend(address="127.0.0.1", port=server.sockets[0].getsockname()[1])
    try:
        async with running(ProxyServer([PROXY])) as proxy:
            proxy.update(routes(route("bulk", port, [backend])))
            conn = await connect(port)
            received = bytearray()
            async with asyncio.timeout(WAIT * 2):
                while data := await conn.reader.read(65536):
                    received += data
                    if len(received) < 1024 * 1024:
                        await asyncio.sleep(0.001)
            conn.close()
    finally:
        server.close()

    assert len(received) == size
    assert received[:512] == bytes(range(256)) * 2


# -- endpoint changes ------------------------------------------------------------------


async def test_kept_connections_survive_and_removed_ones_drain(backends: list[Backend], port: int) -> None:
    a, b = backends[:2]
    async with running(ProxyServer([PROXY], drain_seconds=0.3)) as proxy:
        proxy.update(routes(route("web", port, [route_backend(a), route_backend(b)])))
        to_a, to_b = await connect(port), await connect(port)
        assert [await to_a.ask(), await to_b.ask()] == ["a", "b"]

        with capture_logs() as logs:
            proxy.update(routes(route("web", port, [route_backend(b)])))
            assert await to_a.ask() == "a"  # still served until the drain time is up
            assert await ask_new(port) == "b"  # new connections only go to what remains
            await eventually(to_a.closed, "the removed backend's connection closed")

        assert await to_b.ask() == "b"
        assert not await to_b.closed()
        to_a.close()
        to_b.close()

    assert any(e["event"] == "proxy_connections_drained" and e["closed"] == 1 for e in logs)


async def test_a_removed_service_stops_listening_at_once_and_drains(backends: list[Backend], port: int) -> None:
    async with running(ProxyServer([PROXY], drain_seconds=0.3)) as proxy:
        proxy.update(routes(route("web", port, [route_backend(backends[0])])))
        conn = await connect(port)
        assert await conn.ask() == "a"

        proxy.update({})
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(PROXY, port)
        assert await conn.ask() == "a"
        await eventually(conn.closed, "the removed service's connection closed")
        conn.close()

    assert proxy.listening() == []


async def test_update_is_idempotent(backends: list[Backend], port: int) -> None:
    table = routes(route("web", port, [route_backend(b) for b in backends]))
    async with running(ProxyServer([PROXY], drain_seconds=0.1)) as proxy:
        proxy.update(table)
        conn = await connect(port)
        assert await conn.ask() == "a"
        with capture_logs() as logs:
            for _ in range(3):
                proxy.update(table)
            assert await conn.ask() == "a"
        conn.close()
        listening = proxy.listening()

    assert listening == [(PROXY, port)]
    assert not [e for e in logs if e["event"] in ("proxy_port_closed", "proxy_connections_drained")]


# -- ports -----------------------------------------------------------------------------


async def test_listens_on_every_address(backends: list[Backend]) -> None:
    second = "127.0.0.8"
    port = free_port(second)
    async with running(ProxyServer([PROXY, second])) as proxy:
        proxy.update(routes(route("web", port, [route_backend(backends[0])])))
        reader, writer = await asyncio.open_connection(second, port)
        writer.write(b"who\n")
        answer = await reader.readline()
        writer.close()
        listening = proxy.listening()

    assert answer == b"a\n"
    assert listening == [(PROXY, port), (second, port)]


async def test_the_service_holding_a_port_keeps_it(backends: list[Backend], port: int) -> None:
    a, b = backends[:2]
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(routes(route("zeta", port, [route_backend(a)])))
        with capture_logs() as logs:
            proxy.update(routes(route("zeta", port, [route_backend(a)]), route("alpha", port, [route_backend(b)])))
        answer = await ask_new(port)

    assert answer == "a"  # zeta was there first, though alpha sorts lower
    conflicts = [e for e in logs if e["event"] == "proxy_port_conflict"]
    assert len(conflicts) == 1
    assert conflicts[0]["service"] == "default/alpha" and conflicts[0]["held_by"] == "default/zeta"
    assert conflicts[0]["log_level"] == "warning"


async def test_a_tie_goes_to_the_lower_namespace_and_name(backends: list[Backend], port: int) -> None:
    a, b = backends[:2]
    async with running(ProxyServer([PROXY])) as proxy:
        with capture_logs() as logs:
            proxy.update(
                routes(
                    route("web", port, [route_backend(a)], namespace="prod"),
                    route("web", port, [route_backend(b)], namespace="dev"),
                )
            )
        answer = await ask_new(port)

    assert answer == "b"
    assert [e["service"] for e in logs if e["event"] == "proxy_port_conflict"] == ["prod/web"]


async def test_a_port_in_use_is_logged_and_retried(backends: list[Backend], port: int) -> None:
    squatter = socket.socket()
    squatter.bind((PROXY, port))
    squatter.listen()
    try:
        async with running(ProxyServer([PROXY], retry_seconds=0.1)) as proxy:
            with capture_logs() as logs:
                proxy.update(routes(route("web", port, [route_backend(backends[0])])))
                await asyncio.sleep(0)  # the run loop takes its first look
            assert proxy.listening() == []
            squatter.close()
            await eventually(lambda: proxy.listening() == [(PROXY, port)], "the port bound after the retry")
            answer = await ask_new(port)
    finally:
        squatter.close()

    unavailable = [e for e in logs if e["event"] == "proxy_port_unavailable"]
    assert len(unavailable) == 1  # retries of the same failure are not repeated at warning level
    assert unavailable[0]["log_level"] == "warning" and "in use" in unavailable[0]["reason"]
    assert answer == "a"


async def test_stats_count_connections_and_bytes(backends: list[Backend], port: int) -> None:
    async with running(ProxyServer([PROXY])) as proxy:
        proxy.update(routes(route("web", port, [route_backend(backends[0])])))
        conn = await connect(port)
        await conn.ask()
        during = proxy.stats()["default/web"]
        conn.close()
        await eventually(lambda: proxy.stats()["default/web"].connections_active == 0, "the relay closed")
        after = proxy.stats()["default/web"]

    assert (during.connections_total, during.connections_active) == (1, 1)
    assert (during.bytes_in, during.bytes_out) == (4, 2)
    assert (after.connections_total, after.connections_active) == (1, 0)
