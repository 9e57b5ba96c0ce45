"""The kernel data path with real nftables: agent/network/proxy/kernel.py, nftables.py, nft_rules.py.

Each test moves the test thread into a fresh network namespace (unshare, lo
up) and back afterwards, so the rules it applies never touch the host's
ruleset and go away with the namespace. Backends are small asyncio servers
on 127.0.0.1 that answer every line with their name; clients connect to the
proxy address 127.0.0.7, which the nat `output` hook DNATs. Needs root and
`nft` (CI has both); skipped only without root. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.network.proxy.kernel import KernelProxy
from agent.network.proxy.nftables import Nft, NftablesRejected, NftablesUnavailable
from agent.network.proxy.server import ProxyServer
from agent.network.stack import build_service_network
from protos.corral.v1 import discovery_pb2
from tests.integration.node.test_proxy import Backend, route_backend
from tests.unit.agent.test_nft_rules import route as rules_route

pytestmark = pytest.mark.timeout(30)

PROXY = "127.0.0.7"
TABLE = "corral_test_node"
WAIT = 5.0
CLONE_NEWNET = 0x40000000


@pytest.fixture
def netns() -> Iterator[None]:
    """The test thread in a new, empty network namespace for the test's duration."""
    if os.geteuid() != 0:
        pytest.skip("nftables and network namespaces need root")
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            pytest.fail(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        yield
    finally:
        if libc.setns(original, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original network namespace")
        os.close(original)


def route(
    name: str,
    port: int,
    backends: list[tuple[Backend, str]],
    *,
    weights: dict[str, int] | None = None,
    algorithm: str = "",
) -> discovery_pb2.ServiceRoute:
    """A one-port Service route to `backends` (each with its group) on 127.0.0.1."""
    return rules_route(
        name,
        port,
        [route_backend(b, group) for b, group in backends],
        weights=weights,
        algorithm=algorithm,
        port_name="tcp",
    )


def keyed(*routes: discovery_pb2.ServiceRoute) -> dict[str, discovery_pb2.ServiceRoute]:
    return {f"{r.namespace}/{r.name}": r for r in routes}


async def ask(port: int, reader_writer: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None) -> str:
    """One line through the proxy address (a new connection unless one is given)."""
    async with asyncio.timeout(WAIT):
        reader, writer = reader_writer or await asyncio.open_connection(PROXY, port)
        writer.write(b"who\n")
        answer = (await reader.readline()).decode().strip()
        if reader_writer is None:
            writer.close()
        return answer


async def nft_list() -> str:
    process = await asyncio.create_subprocess_exec(
        "nft", "list", "ruleset", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await process.communicate()
    return out.decode()


@dataclass
class Running:
    kernel: KernelProxy
    proxy: ProxyServer

    async def applied(self, routes: dict[str, discovery_pb2.ServiceRoute], *, listening: int = 0) -> None:
        """Apply `routes` and wait until nft has the new table (and the userspace proxy the port `listening`)."""
        self.kernel.update(routes)
        async with asyncio.timeout(WAIT):
            while self.kernel._applied != self.kernel._wanted or (
                listening and (PROXY, listening) not in self.proxy.listening()
            ):
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(nft: Nft | None = None) -> AsyncIterator[Running]:
    proxy = ProxyServer([PROXY])
    kernel = KernelProxy(proxy, TABLE, [PROXY], nft=nft)
    await kernel.start()
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(proxy.run()), group.create_task(kernel.run())]
        try:
            yield Running(kernel, proxy)
        finally:
            for task in tasks:
                task.cancel()


@contextlib.asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Backend]]:
    started = [await Backend(name).start() for name in names]
    try:
        yield started
    finally:
        for backend in started:
            await backend.stop()


async def test_round_robin_in_the_kernel(netns: None) -> None:
    async with backends("a", "b", "c") as (a, b, c), running() as node:
        await node.applied(keyed(route("web", 8080, [(a, ""), (b, ""), (c, "")])))
        answers = [await ask(8080) for _ in range(30)]
        assert answers == ["a", "b", "c"] * 10
        assert node.proxy.listening() == []  # nothing relayed in userspace
        assert "numgen inc mod 3" in await nft_list()


async def test_a_ten_percent_canary_gets_exactly_every_tenth_connection(netns: None) -> None:
    async with backends("canary", "s1", "s2", "s3") as (canary, s1, s2, s3), running() as node:
        weighted = route("web", 8080, [(canary, "c"), (s1, "s"), (s2, "s"), (s3, "s")], weights={"c": 10, "s": 90})
        await node.applied(keyed(weighted))
        answers = [await ask(8080) for _ in range(200)]
        counts = Counter(answers)
        assert counts == {"canary": 20, "s1": 60, "s2": 60, "s3": 60}
        positions = [i for i, name in enumerate(answers) if name == "canary"]
        assert all(later - earlier == 10 for earlier, later in itertools.pairwise(positions))
        await node.kernel.refresh()
        stats = node.kernel.stats()["default/web"]
        assert (stats.connections_total, stats.backends) == (200, counts)


async def test_the_kernel_counts_new_connections_per_service_and_pod(netns: None) -> None:
    async with backends("a", "b", "c") as (a, b, c), running() as node:
        await node.applied(keyed(route("web", 8080, [(a, ""), (b, ""), (c, "")])))
        assert node.kernel.stats()["default/web"].backends == {"a": 0, "b": 0, "c": 0}
        held = await asyncio.open_connection(PROXY, 8080)  # slot 0: a
        answers = [await ask(8080, held)] + [await ask(8080) for _ in range(29)]
        assert await ask(8080, held) == "a"  # more packets, not a new connection
        await node.kernel.refresh()
        stats = node.kernel.stats()["default/web"]
        assert stats.connections_total == 30
        assert stats.backends == Counter(answers) == {"a": 10, "b": 10, "c": 10}
        assert (stats.connections_active, stats.bytes_in, stats.bytes_out) == (0, 0, 0)  # unseen by nft
        assert await Nft().counters(TABLE) == {"port_8080_b0": 10, "port_8080_b1": 10, "port_8080_b2": 10}
        # A route update replaces the table (its counters start at 0): the totals carry on.
        await node.applied(keyed(route("web", 8080, [(a, ""), (b, "")])))
        assert await Nft().counters(TABLE) == {"port_8080_b0": 0, "port_8080_b1": 0}
        stats = node.kernel.stats()["default/web"]
        assert (stats.connections_total, stats.backends) == (30, {"a": 10, "b": 10})
        assert [await ask(8080) for _ in range(4)] == ["a", "b"] * 2
        await node.kernel.refresh()
        stats = node.kernel.stats()["default/web"]
        assert (stats.connections_total, stats.backends) == (34, {"a": 12, "b": 12})
        held[1].close()


async def test_a_removed_backend_gets_no_new_connections_and_keeps_its_established_one(netns: None) -> None:
    async with backends("a", "b") as (a, b), running() as node:
        await node.applied(keyed(route("web", 8080, [(a, ""), (b, "")])))
        first = await asyncio.open_connection(PROXY, 8080)  # slot 0: a
        second = await asyncio.open_connection(PROXY, 8080)  # slot 1: b
        assert await ask(8080, second) == "b"
        await node.applied(keyed(route("web", 8080, [(a, "")])))
        assert [await ask(8080) for _ in range(10)] == ["a"] * 10
        assert await ask(8080, second) == "b"  # conntrack keeps its NAT
        assert await ask(8080, first) == "a"
        for _, writer in (first, second):
            writer.close()


async def test_a_port_without_backends_is_reset(netns: None) -> None:
    async with backends("a") as (a,), running() as node:
        # Something listening there would answer, were it not for the reset.
        squatter = await asyncio.start_server(lambda r, w: w.close(), PROXY, 8081)
        await node.applied(keyed(route("web", 8080, [(a, "")]), route("empty", 8081, [])))
        assert await ask(8080) == "a"
        with pytest.raises(ConnectionRefusedError):
            await ask(8081)
        assert "tcp . 8081 } reject with tcp reset" in await nft_list()
        squatter.close()


async def test_least_connections_services_stay_on_the_userspace_proxy(netns: None) -> None:
    async with backends("a", "b", "lc") as (a, b, lc), running() as node:
        least = route("lc", 8090, [(lc, "")], algorithm="LeastConnections")
        routes = keyed(route("web", 8080, [(a, ""), (b, "")]), least)
        await node.applied(routes, listening=8090)
        assert node.proxy.listening() == [(PROXY, 8090)]
        assert node.kernel.kernel_ports() == {8080: "default/web"}
        assert await ask(8090) == "lc"
        assert node.proxy.stats()["default/lc"].connections_total == 1
        assert "8090" not in await nft_list()
        assert {await ask(8080) for _ in range(4)} == {"a", "b"}


async def test_the_table_is_removed_on_stop(netns: None) -> None:
    async with backends("a") as (a,):
        async with running() as node:
            await node.applied(keyed(route("web", 8080, [(a, "")])))
            assert f"table ip {TABLE}" in await nft_list()
        assert f"table ip {TABLE}" not in await nft_list()


class _FailingNft(Nft):
    """Applies the first table, then refuses everything."""

    def __init__(self) -> None:
        super().__init__()
        self.replaced = 0

    async def replace(self, table: str, text: str) -> None:
        self.replaced += 1
        if self.replaced > 1:
            raise NftablesRejected("nft refused the rules: test")
        await super().replace(table, text)


async def test_a_failure_falls_back_to_the_userspace_proxy_for_everything(netns: None) -> None:
    async with backends("a") as (a,), running(_FailingNft()) as node:
        await node.applied(keyed(route("web", 8080, [(a, "")])))
        with capture_logs() as logs:
            node.kernel.update(keyed(route("web", 8080, [(a, "")]), route("api", 8081, [(a, "")])))
            async with asyncio.timeout(WAIT):
                while len(node.proxy.listening()) < 2:
                    await asyncio.sleep(0.01)
        failed = [e for e in logs if e["event"] == "proxy_kernel_failed"]
        assert len(failed) == 1
        assert failed[0]["error"] == "NftablesRejected"
        assert node.kernel.fallback
        async with asyncio.timeout(WAIT):
            while f"table ip {TABLE}" in await nft_list():
                await asyncio.sleep(0.01)
        assert await ask(8080) == "a"  # relayed in userspace now
        assert await ask(8081) == "a"


async def test_a_missing_nft_fails_at_start() -> None:
    proxy = ProxyServer([PROXY])
    with pytest.raises(NftablesUnavailable, match="nft-missing-here not found: install the nftables package"):
        await KernelProxy(proxy, TABLE, [PROXY], nft=Nft("nft-missing-here")).start()


async def test_discovery_in_nftables_mode_feeds_the_kernel_path(netns: None, tmp_path: Path) -> None:
    discovery = await build_service_network(
        {}, proxy_addresses=[PROXY], dns_port=0, data_dir=tmp_path, proxy_mode="nftables", node_name="edge-1.lan"
    )
    assert discovery.kernel is not None
    assert discovery.kernel.table == "corral_edge_1_lan"
    assert discovery.table.listeners[0].inner[0].inner is discovery.kernel  # addressing, reserved ports, kernel
    assert discovery.kernel.proxy is discovery.proxy
    assert discovery.stats() == discovery.kernel.stats() == {}


async def test_discovery_in_nftables_mode_without_nft_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NftablesUnavailable, match="nft not found"):
        await build_service_network({}, proxy_addresses=[PROXY], dns_port=0, data_dir=tmp_path, proxy_mode="nftables")
    userspace = await build_service_network({}, proxy_addresses=[PROXY], dns_port=0, data_dir=tmp_path)
    assert userspace.kernel is None
    assert userspace.table.listeners[0].inner[0].inner is userspace.proxy
    assert userspace.stats() == {}
