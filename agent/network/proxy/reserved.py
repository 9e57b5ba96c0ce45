"""Ports the node proxy never takes: the control plane's (`--server`, `--join`) and the agent's own.

A Service frontend on the node's addresses (a nodePort, a LoadBalancer's
port, or the port of a route without a clusterIP) on one of these would take
it on this node: bound by the userspace proxy (once the server restarts, it
cannot listen again) or NATed by the kernel data path (the node's traffic to
the server goes to the Service's pods). The API refuses such Services, but
objects stored before that rule, or another replica's ports, must not lock
the node out: both proxies are given the reserved ports and leave those
frontends out (`frontends.frontends`); `ReservedPortFilter` stands in front
of them and logs one warning (`proxy_port_reserved`) per Service port left
out. A clusterIP frontend is never reserved: it lives on its own address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

from agent.network.proxy.frontends import reserved_hits as frontend_hits
from agent.network.routes import RouteListener
from corral.common.pki.endpoints import DEFAULT_API_PORT, split_address
from protos.corral.v1 import discovery_pb2

log = structlog.get_logger(__name__)

Routes = Mapping[str, discovery_pb2.ServiceRoute]
# (Service "namespace/name", port) left out.
Skipped = set[tuple[str, int]]


def reserved_ports(servers: Iterable[str], joins: Iterable[str], metrics_listen: str = "") -> dict[int, str]:
    """Port → what uses it, from the agent's `--server` and `--join` addresses and its
    `--metrics-listen` (an address without a port, or port 0, reserves nothing)."""
    reserved: dict[int, str] = {}
    for flag, addresses, default in (
        ("--server", servers, DEFAULT_API_PORT),
        ("--join", joins, 0),
        ("--metrics-listen", [metrics_listen] if metrics_listen else [], 0),
    ):
        for address in addresses:
            try:
                _, port = split_address(address, default)
            except ValueError:
                continue
            if port:
                reserved.setdefault(port, f"{flag} {address}")
    return reserved


def reserved_hits(routes: Routes, reserved: Mapping[int, str]) -> Skipped:
    """(Service, port) of every node-address frontend that ``reserved`` leaves out."""
    skipped: Skipped = set()
    for key, route in routes.items():
        for port in route.ports:
            skipped.update((key, number) for number in frontend_hits(route, port, reserved))
    return skipped


class ReservedPortFilter:
    """A route listener: logs the frontends the reserved ports leave out; `inner` (the proxy,
    given the same reserved ports) gets every route."""

    def __init__(self, inner: RouteListener, reserved: Mapping[int, str]) -> None:
        self.inner = inner
        self.reserved = dict(reserved)
        self._logged: Skipped = set()

    def update(self, routes: Routes) -> None:
        skipped = reserved_hits(routes, self.reserved) if self.reserved else set()
        for service, port in sorted(skipped - self._logged):
            log.warning(
                "proxy_port_reserved",
                service=service,
                port=port,
                used_by=self.reserved[port],
                message=f"port {port} is reserved on this node ({self.reserved[port]} uses it); "
                f"{service} gets no proxy on it",
            )
        self._logged = skipped
        self.inner.update(routes)
