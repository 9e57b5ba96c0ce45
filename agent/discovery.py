"""Service discovery on the node, assembled: the route table, the proxy and the DNS server.

Where they listen:

- the proxy on every proxy address (default: the node's advertised address)
  and on each runtime's pod gateway (the Docker pod network's), on every
  Service's listen port;
- DNS on every proxy address at `dns_port` (0: none there), and on each pod
  gateway at 53 (Docker's `dns` setting has no port).

How pods reach them: a runtime with a pod gateway gives its containers the
gateway as DNS server and in the Service env vars; other runtimes' pods (host
processes) get the first proxy address in the env vars and keep the host's
resolver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.dns.server import DnsServer
from agent.proxy.server import ProxyServer
from agent.runtime.base import ContainerRuntime
from agent.service_env import ServiceAccess
from agent.services import ServiceTable

log = structlog.get_logger(__name__)

GATEWAY_DNS_PORT = 53


@dataclass
class Discovery:
    table: ServiceTable
    proxy: ProxyServer
    dns: DnsServer

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.proxy.run())
            group.create_task(self.dns.run())
            group.create_task(self.table.run())


async def build_discovery(
    runtimes: Mapping[str, ContainerRuntime], *, proxy_addresses: list[str], dns_port: int, data_dir: Path
) -> Discovery:
    """Find each runtime's pod gateway (making the Docker network) and wire the pieces up."""
    gateways: dict[str, str] = {}
    for name, runtime in runtimes.items():
        gateway = await runtime.pod_gateway()
        if gateway:
            gateways[name] = gateway
    addresses = list(dict.fromkeys([*proxy_addresses, *gateways.values()]))
    dns_endpoints = [(a, dns_port) for a in proxy_addresses if dns_port] + [
        (g, GATEWAY_DNS_PORT) for g in dict.fromkeys(gateways.values())
    ]
    access = {
        name: ServiceAccess(host=gateways[name], dns_server=gateways[name])
        if name in gateways
        else ServiceAccess(host=proxy_addresses[0])
        for name in runtimes
    }
    proxy = ProxyServer(addresses)
    dns = DnsServer(dns_endpoints)
    table = ServiceTable([proxy, dns], access=access, state_file=data_dir / "services.pb")
    table.resume()
    log.info("discovery_configured", proxy=addresses, dns=[f"{a}:{p}" for a, p in dns_endpoints], gateways=gateways)
    return Discovery(table, proxy, dns)
