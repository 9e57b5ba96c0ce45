"""Service discovery on the node, assembled: the route table, the proxy and the DNS server.

Where they listen:

- the proxy on every proxy address (default: the node's advertised address)
  and on each runtime's pod gateway (the Docker pod network's), on every
  Service's listen port but the reserved ones (the control plane's ports in
  `--server` and `--join`, the agent's metrics port: `proxy/reserved.py`);
- DNS on every proxy address at `dns_port` (0: none there), and on each pod
  gateway at 53 (Docker's `dns` setting has no port).

How pods reach them: a runtime with a pod gateway gives its containers the
gateway as DNS server and in the Service env vars; other runtimes' pods (host
processes) get the first proxy address in the env vars and keep the host's
resolver.

The ingress proxy (`ingress/`, a managed nginx or Caddy in `<data dir>/ingress`): on the
proxy addresses only, at the ingress
ports (80 and 443 by default; 0 turns one off), fed the same Service routes
(unfiltered: it reaches backends, it does not listen on Service ports) and
the ingress table. An ingress port that is reserved (see above) is refused
at start (`ReservedIngressPort`).

The pod network between nodes (`pod_routing`, when given): routes to the
other nodes' pod subnets, fed the table the Services stream carries.

The proxy mode: `userspace` (default) relays every Service port in the
`ProxyServer`; `nftables` has the kernel NAT the ports it can
(`proxy/kernel.py`) and leaves the rest to the `ProxyServer`. Asking for
`nftables` where nft may not change the ruleset fails at start
(`NftablesUnavailable`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.network.dns.server import DnsServer
from agent.network.ingress.config import Upstreams
from agent.network.ingress.proxy import AUTO, IngressPorts, IngressProxy
from agent.network.pod_routing import PodRouting
from agent.network.proxy.cluster_ips import ClusterIpAddresses, ServiceAddressing
from agent.network.proxy.kernel import KernelProxy
from agent.network.proxy.nft_rules import table_name
from agent.network.proxy.reserved import ReservedPortFilter
from agent.network.proxy.server import ProxyServer, ServiceStats
from agent.network.proxy.udp import UdpProxy
from agent.network.routes import ServiceTable
from agent.pods.service_env import ServiceAccess
from agent.runtime.base import ContainerRuntime

log = structlog.get_logger(__name__)

GATEWAY_DNS_PORT = 53
PROXY_MODES = ("userspace", "nftables")


@dataclass
class ServiceNetwork:
    table: ServiceTable
    proxy: ProxyServer
    dns: DnsServer
    # The kernel data path, in nftables mode.
    kernel: KernelProxy | None = None
    ingress: IngressProxy | None = None
    # The clusterIPs the proxies serve, made local; the reduced mode's switch.
    cluster_ips: ClusterIpAddresses | None = None
    addressing: ServiceAddressing | None = None
    # The userspace proxy's UDP relay.
    udp: UdpProxy | None = None
    # Routes to the other nodes' pod subnets (and Docker's forwarding rules).
    pod_routing: PodRouting | None = None

    def stats(self) -> dict[str, ServiceStats]:
        """The node proxy's per-Service counters: the kernel data path's merged in, in nftables mode."""
        return self.kernel.stats() if self.kernel is not None else self.proxy.stats()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.proxy.run())
            if self.kernel is not None:
                group.create_task(self.kernel.run())
            group.create_task(self.dns.run())
            if self.udp is not None:
                group.create_task(self.udp.run())
            if self.cluster_ips is not None:
                group.create_task(self.cluster_ips.run())
            group.create_task(self.table.run())
            if self.pod_routing is not None:
                group.create_task(self.pod_routing.run())
            if self.ingress is not None:
                group.create_task(self.ingress.run())


async def build_service_network(
    runtimes: Mapping[str, ContainerRuntime],
    *,
    proxy_addresses: list[str],
    dns_port: int,
    data_dir: Path,
    proxy_mode: str = "userspace",
    node_name: str = "node",
    reserved_ports: Mapping[int, str] | None = None,
    ingress_ports: IngressPorts | None = None,
    pod_routing: PodRouting | None = None,
    ingress_proxy: str = AUTO,
) -> ServiceNetwork:
    """Find each runtime's pod gateway (making the Docker network) and wire the pieces up.

    `reserved_ports` (port → what uses it): ports the proxy never takes (`proxy/reserved.py`).

    Raises `NftablesUnavailable` in nftables mode when nft cannot change the ruleset here.
    """
    if proxy_mode not in PROXY_MODES:
        raise ValueError(f"unknown proxy mode {proxy_mode!r} (known: {', '.join(PROXY_MODES)})")
    reserved = dict(reserved_ports or {})
    ingress_ports = ingress_ports or IngressPorts()
    check_ingress_ports(ingress_ports, reserved)
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
    # Node-address frontends also keep off this agent's ingress ports (a LoadBalancer on 80 would take them).
    node_reserved = {**reserved, **{p: "the ingress proxy" for p in (ingress_ports.http, ingress_ports.https) if p}}
    proxy = ProxyServer(addresses, node=node_name, reserved=node_reserved)
    udp = UdpProxy(addresses)
    proxy.udp = udp.update
    kernel: KernelProxy | None = None
    if proxy_mode == "nftables":
        kernel = KernelProxy(proxy, table_name(node_name), addresses, node=node_name, reserved=node_reserved)
        await kernel.start()
    dns = DnsServer(dns_endpoints)
    # With the kernel serving clusterIPs, an endpoint change leaves the ingress' config (and its
    # clients' connections) alone.
    upstreams = Upstreams(via_cluster_ip=kernel is not None)
    ingress = (
        IngressProxy(
            proxy_addresses,
            ingress_ports,
            directory=data_dir / "ingress",
            upstreams=upstreams,
            data_path=ingress_proxy,
        )
        if ingress_ports.enabled
        else None
    )
    addressing = ServiceAddressing([ReservedPortFilter(kernel or proxy, node_reserved), dns])

    def retry_binds() -> None:
        proxy.retry_binds()
        udp.retry_binds()

    cluster_ips = ClusterIpAddresses(on_ready=retry_binds, on_unavailable=addressing.reduce)
    proxy.on_cluster_ips = cluster_ips.want
    if kernel is not None:
        kernel.on_cluster_ips = lambda ips: cluster_ips.want(ips, "kernel")
    table = ServiceTable(
        [addressing, *([ingress] if ingress else [])],
        access=access,
        state_file=data_dir / "services.pb",
        ingress_listeners=[ingress] if ingress else [],
        pod_network_listeners=[pod_routing] if pod_routing else [],
    )
    table.resume()
    log.info(
        "discovery_configured",
        proxy=addresses,
        proxy_mode=proxy_mode,
        dns=[f"{a}:{p}" for a, p in dns_endpoints],
        gateways=gateways,
        reserved_ports=sorted(reserved),
        ingress_ports=[p for p in (ingress_ports.http, ingress_ports.https) if p],
    )
    return ServiceNetwork(table, proxy, dns, kernel, ingress, cluster_ips, addressing, udp, pod_routing)


class ReservedIngressPort(ValueError):
    """An ingress port that the control plane or the agent itself uses on this node."""


def check_ingress_ports(ports: IngressPorts, reserved: Mapping[int, str]) -> None:
    for flag, port in (("--ingress-http-port", ports.http), ("--ingress-https-port", ports.https)):
        if port and port in reserved:
            raise ReservedIngressPort(f"{flag} {port}: the port is reserved on this node ({reserved[port]} uses it)")
    if ports.http and ports.http == ports.https:
        raise ReservedIngressPort(f"--ingress-http-port and --ingress-https-port are both {ports.http}")
