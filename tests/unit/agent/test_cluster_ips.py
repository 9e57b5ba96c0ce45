"""The reduced mode: where clusterIPs cannot be made local, every Service is served on the node's
addresses as before virtual IPs (agent/network/proxy/cluster_ips.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from structlog.testing import capture_logs

from agent.network.proxy.cluster_ips import ClusterIpAddresses, ServiceAddressing
from protos.corral.v1 import discovery_pb2


class Recorder:
    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self.seen.append({key: route.cluster_ip for key, route in routes.items()})


ROUTES = {"default/web": discovery_pb2.ServiceRoute(namespace="default", name="web", cluster_ip="10.43.0.10")}


def test_routes_pass_as_they_are_until_reduced_then_without_cluster_ips() -> None:
    proxy, dns = Recorder(), Recorder()
    addressing = ServiceAddressing([proxy, dns])
    addressing.update(ROUTES)
    addressing.reduce("ip: not found")
    addressing.reduce("again")  # for good, once
    assert proxy.seen == dns.seen == [{"default/web": "10.43.0.10"}, {"default/web": ""}]
    addressing.update(ROUTES)
    assert proxy.seen[-1] == {"default/web": ""}
    assert ROUTES["default/web"].cluster_ip == "10.43.0.10"  # the table's routes are left alone


async def test_a_missing_ip_command_switches_to_the_reduced_mode() -> None:
    reasons: list[str] = []
    keeper = ClusterIpAddresses(binary="corral-test-no-such-ip", on_unavailable=reasons.append)
    keeper.want({"10.43.0.10"}, "proxy")
    keeper.want(set(), "kernel")
    with capture_logs() as logs:
        task = asyncio.create_task(keeper.run())
        async with asyncio.timeout(5):
            while not reasons:
                await asyncio.sleep(0.01)
        task.cancel()
    assert "not found" in reasons[0] and keeper.applied == set()
    assert [e["event"] for e in logs] == ["cluster_ips_unavailable"]
