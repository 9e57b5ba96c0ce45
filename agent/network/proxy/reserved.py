"""Ports the node proxy never takes: the control plane's (`--server`, `--join`) and the agent's own.

A Service whose listen port is one of these would take it on this node:
bound by the userspace proxy (once the server restarts, it cannot listen
again) or NATed by the kernel data path (the node's traffic to the server
goes to the Service's pods). The API refuses such Services, but objects
stored before that rule, or another replica's ports, must not lock the node
out: `ReservedPortFilter` stands in front of the proxy (userspace or
nftables) and hands it the routes without those ports, with one warning
(`proxy_port_reserved`) per Service port left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

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


def without_reserved(
    routes: Routes, reserved: Mapping[int, str]
) -> tuple[dict[str, discovery_pb2.ServiceRoute], Skipped]:
    """The routes without their ports in ``reserved``, and which (Service, port) were left out."""
    kept: dict[str, discovery_pb2.ServiceRoute] = {}
    skipped: Skipped = set()
    for key, route in routes.items():
        hit = [p for p in route.ports if p.port in reserved]
        if not hit:
            kept[key] = route
            continue
        trimmed = discovery_pb2.ServiceRoute()
        trimmed.CopyFrom(route)
        del trimmed.ports[:]
        trimmed.ports.extend(p for p in route.ports if p.port not in reserved)
        kept[key] = trimmed
        skipped.update((key, p.port) for p in hit)
    return kept, skipped


class ReservedPortFilter:
    """A route listener: `inner` (the proxy) gets every route but the reserved ports."""

    def __init__(self, inner: RouteListener, reserved: Mapping[int, str]) -> None:
        self.inner = inner
        self.reserved = dict(reserved)
        self._logged: Skipped = set()

    def update(self, routes: Routes) -> None:
        kept, skipped = without_reserved(routes, self.reserved) if self.reserved else (dict(routes), set())
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
        self.inner.update(kept)
