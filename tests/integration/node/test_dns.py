"""The node-local DNS server on real sockets: agent/network/dns/server.py.

Queries go through dnspython's own async client (`dns.asyncquery`), over UDP
and TCP. The upstream resolver is a tiny UDP server on another loopback
address that answers every name with 192.0.2.55.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from structlog.testing import capture_logs

from agent.network.dns.server import DnsServer, nameservers
from protos.corral.v1 import discovery_pb2

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.9"
OTHER = "127.0.0.10"
UPSTREAM = "127.0.0.12"
UPSTREAM_ANSWER = "192.0.2.55"
WAIT = 10.0

ROUTES = {
    "default/web": discovery_pb2.ServiceRoute(
        namespace="default", name="web", ports=[discovery_pb2.RoutePort(name="http", protocol="TCP", port=8080)]
    )
}


def free_port(address: str) -> int:
    """A port free for both UDP and TCP on `address`."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port: int = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port")


class Upstream(asyncio.DatagramProtocol):
    """Answers every A query with UPSTREAM_ANSWER."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        query = dns.message.from_wire(data)
        self.queries.append(str(query.question[0].name))
        response = dns.message.make_response(query)
        rrset = dns.rrset.RRset(query.question[0].name, dns.rdataclass.IN, dns.rdatatype.A)
        rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, UPSTREAM_ANSWER), 60)
        response.answer.append(rrset)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@contextlib.asynccontextmanager
async def upstream(port: int) -> AsyncIterator[Upstream]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Upstream, local_addr=(UPSTREAM, port))
    try:
        yield protocol
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def running(server: DnsServer) -> AsyncIterator[DnsServer]:
    task = asyncio.create_task(server.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while len(server.listening()) < len(server.endpoints) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ask(name: str, where: str, port: int, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(query, where, port=port, timeout=WAIT)
    return await dns.asyncquery.udp(query, where, port=port, timeout=WAIT)


def addresses(response: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in response.answer for rd in rrset]


async def test_each_address_answers_service_names_with_itself() -> None:
    port, other_port = free_port(LOCAL), free_port(OTHER)
    server = DnsServer([(LOCAL, port), (OTHER, other_port)], upstreams=[])
    server.update(ROUTES)
    async with running(server):
        here = await ask("web.default.svc.cluster.local.", LOCAL, port)
        there = await ask("web.default.", OTHER, other_port)
        over_tcp = await ask("web.default.svc.", LOCAL, port, tcp=True)
        srv = await ask("_http._tcp.web.default.svc.cluster.local.", LOCAL, port, "SRV")
        missing = await ask("nope.default.svc.cluster.local.", LOCAL, port)

    assert addresses(here) == [LOCAL]
    assert addresses(there) == [OTHER]
    assert addresses(over_tcp) == [LOCAL]
    assert addresses(srv) == ["0 100 8080 web.default.svc.cluster.local."]
    assert missing.rcode() == dns.rcode.NXDOMAIN


async def test_route_updates_are_answered_at_once() -> None:
    port = free_port(LOCAL)
    server = DnsServer([(LOCAL, port)], upstreams=[])
    async with running(server):
        before = await ask("web.default.svc.cluster.local.", LOCAL, port)
        server.update(ROUTES)
        after = await ask("web.default.svc.cluster.local.", LOCAL, port)
        server.update({})
        removed = await ask("web.default.svc.cluster.local.", LOCAL, port)

    assert before.rcode() == dns.rcode.NXDOMAIN
    assert addresses(after) == [LOCAL]
    assert removed.rcode() == dns.rcode.NXDOMAIN


async def test_other_names_are_forwarded_upstream() -> None:
    port, upstream_port = free_port(LOCAL), free_port(UPSTREAM)
    server = DnsServer([(LOCAL, port)], upstreams=[(UPSTREAM, upstream_port)])
    server.update(ROUTES)
    async with upstream(upstream_port) as resolver, running(server):
        forwarded = await ask("example.com.", LOCAL, port)
        short_unknown = await ask("nope.default.", LOCAL, port)
        ours = await ask("web.default.svc.cluster.local.", LOCAL, port)

    assert addresses(forwarded) == [UPSTREAM_ANSWER]
    assert addresses(short_unknown) == [UPSTREAM_ANSWER]  # not a Service: may be a real name
    assert addresses(ours) == [LOCAL]
    assert resolver.queries == ["example.com.", "nope.default."]


async def test_an_upstream_that_does_not_answer_gives_servfail() -> None:
    port, silent = free_port(LOCAL), free_port(UPSTREAM)
    server = DnsServer([(LOCAL, port)], upstreams=[(UPSTREAM, silent)], upstream_timeout=0.3)
    async with running(server):
        response = await ask("example.com.", LOCAL, port)

    assert response.rcode() == dns.rcode.SERVFAIL


async def test_upstreams_come_from_resolv_conf_without_our_own_addresses(tmp_path: Path) -> None:
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text(f"# generated\nsearch example.org\nnameserver {LOCAL}\nnameserver {UPSTREAM}\n")
    port = free_port(LOCAL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((UPSTREAM, 53))
        except OSError as e:
            pytest.fail(f"the test upstream needs {UPSTREAM}:53 ({e})")
    server = DnsServer([(LOCAL, port)], resolv_conf=resolv_conf)
    async with upstream(53) as resolver, running(server):
        response = await ask("example.com.", LOCAL, port)

    assert addresses(response) == [UPSTREAM_ANSWER]
    assert resolver.queries == ["example.com."]


async def test_malformed_packets_are_dropped() -> None:
    port = free_port(LOCAL)
    server = DnsServer([(LOCAL, port)], upstreams=[])
    server.update(ROUTES)
    async with running(server):
        with capture_logs() as logs:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"\x12\x34garbage", (LOCAL, port))
            response = await ask("web.default.svc.cluster.local.", LOCAL, port)

    assert addresses(response) == [LOCAL]
    assert [e["log_level"] for e in logs if e["event"] == "dns_malformed_query"] == ["debug"]


async def test_a_port_in_use_is_logged_and_retried() -> None:
    port = free_port(LOCAL)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((LOCAL, port))
    server = DnsServer([(LOCAL, port)], upstreams=[], retry_seconds=0.1)
    server.update(ROUTES)
    task = asyncio.create_task(server.run())
    try:
        with capture_logs() as logs:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT
            while not any(e["event"] == "dns_port_unavailable" for e in logs) and loop.time() < deadline:
                await asyncio.sleep(0.01)
            squatter.close()
            while not server.listening() and loop.time() < deadline:
                await asyncio.sleep(0.01)
        response = await ask("web.default.svc.cluster.local.", LOCAL, port)
    finally:
        squatter.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    warnings = [e for e in logs if e["event"] == "dns_port_unavailable" and e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert addresses(response) == [LOCAL]


def test_nameservers_of_a_resolv_conf() -> None:
    text = "nameserver 10.0.0.1\n# nameserver 10.0.0.9\nnameserver 10.0.0.2 # comment\noptions ndots:5\nnameserver\n"
    assert nameservers(text) == ["10.0.0.1", "10.0.0.2"]
