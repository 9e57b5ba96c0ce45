"""The kernel data path's traffic counters: KernelProxy.stats() over a fake nft (agent/network/proxy/kernel.py)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping

import pytest
from structlog.testing import capture_logs

from agent.network.proxy.kernel import KernelProxy
from agent.network.proxy.nftables import Nft, NftablesRejected, parse_counters
from agent.network.proxy.server import ProxyServer, ServiceStats
from protos.corral.v1 import discovery_pb2

pytestmark = pytest.mark.timeout(10)


class FakeNft(Nft):
    """Counts what the test says; a replaced table starts again at 0, as nft's does."""

    def __init__(self) -> None:
        super().__init__("fake-nft")
        self.packets: dict[str, int] = {}
        self.replaced = 0
        self.fail_counters = False
        self.fail_replace = False

    async def check(self, table: str) -> None:
        pass

    async def replace(self, table: str, text: str) -> None:
        if self.fail_replace:
            raise NftablesRejected("nft refused the rules: test")
        self.replaced += 1
        self.packets = dict.fromkeys(re.findall(r"chain (port_\d+_b\d+) \{", text), 0)

    async def delete(self, table: str) -> None:
        self.packets = {}

    async def counters(self, table: str) -> dict[str, int]:
        if self.fail_counters:
            raise NftablesRejected("could not list table: test")
        return dict(self.packets)

    def connect(self, chain: str, times: int = 1) -> None:
        self.packets[chain] += times


class FakeProxy(ProxyServer):
    """The userspace proxy's side: the routes it was given, and counters the test sets."""

    def __init__(self) -> None:
        super().__init__([])
        self.routes: Mapping[str, discovery_pb2.ServiceRoute] = {}
        self.counted: dict[str, ServiceStats] = {}

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self.routes = routes

    def stats(self) -> dict[str, ServiceStats]:
        return {k: ServiceStats(**{**vars(v), "backends": dict(v.backends)}) for k, v in self.counted.items()}


def route(name: str, port: int, pods: list[str], *, algorithm: str = "") -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        namespace="default",
        name=name,
        load_balancing=algorithm,
        ports=[
            discovery_pb2.RoutePort(
                name="http",
                protocol="TCP",
                port=port,
                backends=[
                    discovery_pb2.RouteBackend(address="10.0.0.1", port=9000 + i, pod=pod) for i, pod in enumerate(pods)
                ],
            )
        ],
    )


def keyed(*routes: discovery_pb2.ServiceRoute) -> dict[str, discovery_pb2.ServiceRoute]:
    return {f"{r.namespace}/{r.name}": r for r in routes}


def kernel_proxy() -> tuple[KernelProxy, FakeNft, FakeProxy]:
    nft, proxy = FakeNft(), FakeProxy()
    return KernelProxy(proxy, "t", ["127.0.0.7"], nft=nft), nft, proxy


async def applied(kernel: KernelProxy, routes: dict[str, discovery_pb2.ServiceRoute]) -> None:
    kernel.update(routes)
    await kernel._apply()
    assert kernel._applied == kernel._wanted


def summary(kernel: KernelProxy, key: str = "default/web") -> tuple[int, dict[str, int]]:
    stats = kernel.stats()[key]
    return stats.connections_total, stats.backends


async def test_connections_are_counted_per_service_and_pod_after_a_refresh() -> None:
    kernel, nft, _ = kernel_proxy()
    await applied(kernel, keyed(route("web", 80, ["a", "b", "c"])))
    assert summary(kernel) == (0, {"a": 0, "b": 0, "c": 0})
    nft.connect("port_80_b0", 2)
    nft.connect("port_80_b1")
    assert summary(kernel) == (0, {"a": 0, "b": 0, "c": 0})  # the snapshot until the next refresh
    await kernel.refresh()
    stats = kernel.stats()["default/web"]
    assert (stats.connections_total, stats.backends) == (3, {"a": 2, "b": 1, "c": 0})
    assert (stats.connections_active, stats.bytes_in, stats.bytes_out, stats.connect_failures) == (0, 0, 0, 0)


async def test_totals_carry_over_a_replaced_table_and_never_go_back() -> None:
    kernel, nft, _ = kernel_proxy()
    seen: list[int] = []
    await applied(kernel, keyed(route("web", 80, ["a", "b"])))
    nft.connect("port_80_b0", 3)
    await kernel.refresh()
    seen.append(summary(kernel)[0])
    nft.connect("port_80_b1", 2)  # not read yet when the table is replaced: read just before
    await applied(kernel, keyed(route("web", 80, ["a", "b", "c"])))
    assert nft.replaced == 2
    assert nft.packets == {"port_80_b0": 0, "port_80_b1": 0, "port_80_b2": 0}
    seen.append(summary(kernel)[0])
    assert summary(kernel) == (5, {"a": 3, "b": 2, "c": 0})
    nft.connect("port_80_b2")
    nft.connect("port_80_b0")
    await kernel.refresh()
    seen.append(summary(kernel)[0])
    assert summary(kernel) == (7, {"a": 4, "b": 2, "c": 1})
    # A second Service on another port, applied twice over: each Service keeps its own totals.
    await applied(kernel, keyed(route("web", 80, ["a", "b", "c"]), route("api", 81, ["x"])))
    nft.connect("port_81_b0", 4)
    await kernel.refresh()
    await applied(kernel, keyed(route("web", 80, ["a", "b", "c"]), route("api", 81, ["x", "y"])))
    seen.append(summary(kernel)[0])
    assert summary(kernel, "default/api") == (4, {"x": 4, "y": 0})
    assert seen == sorted(seen)


async def test_a_pod_that_stops_being_a_backend_is_forgotten_but_the_total_is_kept() -> None:
    kernel, nft, _ = kernel_proxy()
    await applied(kernel, keyed(route("web", 80, ["a", "b"])))
    nft.connect("port_80_b0", 2)
    nft.connect("port_80_b1", 3)
    await applied(kernel, keyed(route("web", 80, ["a"])))
    assert summary(kernel) == (5, {"a": 2})


async def test_a_service_that_leaves_the_routes_is_forgotten() -> None:
    kernel, nft, _ = kernel_proxy()
    await applied(kernel, keyed(route("web", 80, ["a"]), route("api", 81, ["x"])))
    nft.connect("port_80_b0")
    await kernel.refresh()
    await applied(kernel, keyed(route("api", 81, ["x"])))
    assert set(kernel.stats()) == {"default/api"}


async def test_userspace_counters_are_merged_in() -> None:
    kernel, nft, proxy = kernel_proxy()
    least = route("lc", 90, ["l"], algorithm="LeastConnections")
    await applied(kernel, keyed(route("web", 80, ["a", "b"]), least))
    assert list(proxy.routes) == ["default/lc"]
    proxy.counted = {
        "default/lc": ServiceStats(connections_total=4, connections_active=1, bytes_in=10, backends={"l": 4}),
        # The same Service with a port the userspace proxy relays (an IPv6 one, say).
        "default/web": ServiceStats(connections_total=2, connections_active=1, bytes_out=7, backends={"b": 1, "v6": 1}),
    }
    nft.connect("port_80_b0", 5)
    nft.connect("port_80_b1", 1)
    await kernel.refresh()
    stats = kernel.stats()
    assert stats["default/lc"] == proxy.counted["default/lc"]
    assert stats["default/web"] == ServiceStats(
        connections_total=8, connections_active=1, bytes_out=7, backends={"a": 5, "b": 2, "v6": 1}
    )
    stats["default/web"].backends["a"] = 0  # a copy
    assert kernel.stats()["default/web"].backends["a"] == 5


async def test_a_failed_read_keeps_the_last_counts_and_is_logged_once() -> None:
    kernel, nft, _ = kernel_proxy()
    await applied(kernel, keyed(route("web", 80, ["a"])))
    nft.connect("port_80_b0", 2)
    await kernel.refresh()
    nft.fail_counters = True
    with capture_logs() as logs:
        await kernel.refresh()
        await kernel.refresh()
        await applied(kernel, keyed(route("web", 80, ["a", "b"])))  # replaced unread: those are lost
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["proxy_kernel_counters_failed"]
    assert summary(kernel) == (2, {"a": 2, "b": 0})
    nft.fail_counters = False
    nft.connect("port_80_b1")
    await kernel.refresh()
    assert summary(kernel) == (3, {"a": 2, "b": 1})


async def test_counts_survive_the_fall_back_to_userspace() -> None:
    kernel, nft, proxy = kernel_proxy()
    await applied(kernel, keyed(route("web", 80, ["a"])))
    nft.connect("port_80_b0", 6)
    nft.fail_replace = True
    with capture_logs():
        kernel.update(keyed(route("web", 80, ["a", "b"])))
        await kernel._apply()
    assert kernel.fallback
    assert list(proxy.routes) == ["default/web"]
    proxy.counted = {"default/web": ServiceStats(connections_total=1, backends={"a": 0, "b": 1})}
    assert summary(kernel) == (7, {"a": 6, "b": 1})


async def test_run_refreshes_the_snapshot_every_few_seconds() -> None:
    nft, proxy = FakeNft(), FakeProxy()
    kernel = KernelProxy(proxy, "t", ["127.0.0.7"], nft=nft, refresh_seconds=0.02)
    kernel.update(keyed(route("web", 80, ["a"])))
    task = asyncio.create_task(kernel.run())
    try:
        async with asyncio.timeout(5):
            while nft.replaced == 0:
                await asyncio.sleep(0.005)
            nft.connect("port_80_b0", 3)
            while summary(kernel)[0] != 3:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert summary(kernel) == (3, {"a": 3})


# -- nft -j ---------------------------------------------------------------------------


def test_parse_counters_sums_each_chains_rule_counters() -> None:
    def rule(chain: str, *expr: object) -> dict[str, object]:
        return {"rule": {"family": "ip", "table": "t", "chain": chain, "handle": 1, "expr": list(expr)}}

    counter = {"counter": {"packets": 3, "bytes": 180}}
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "ip", "name": "t", "handle": 1}},
            {"chain": {"family": "ip", "table": "t", "name": "port_80_b0", "handle": 1}},
            rule("port_80_b0", {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, counter),
            rule("port_80_b1", counter, {"dnat": {"addr": "10.0.0.1", "port": 9001}}),
            rule("port_80_b1", {"counter": {"packets": 2, "bytes": 120}}),
            rule("port_80", {"jump": {"target": "port_80_b0"}}),
            rule("named", {"counter": "a_named_counter"}),
        ]
    }
    assert parse_counters(json.dumps(listing)) == {"port_80_b0": 3, "port_80_b1": 5}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Error: nope", id="not-json"),
        pytest.param('{"other": []}', id="no-nftables-list"),
        pytest.param('{"nftables": [{"rule": {"chain": "c", "expr": [{"counter": {"bytes": 1}}]}}]}', id="no-packets"),
    ],
)
def test_parse_counters_rejects_what_it_does_not_understand(text: str) -> None:
    with pytest.raises(NftablesRejected, match="nft -j printed"):
        parse_counters(text)
