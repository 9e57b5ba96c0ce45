"""The ingress proxy's state, without HTTP: routes, backends and TLS, and when to listen.

`IngressProxy` is a route listener (the Services, from `ServiceTable`) and an
ingress listener (the routing table). A request's backend is found in two
steps: the router (`routing.py`) names a Service and port; the Service's
route — the very one the node proxy gets, with its ready endpoints, traffic
weights and algorithm — gives a `Balancer` (`proxy/endpoints.py`, one per
Service port, kept across updates so round robin, weights and ejections go
on). Changes replace the router and refresh the balancers; nothing listening
or connected is touched.

The HTTP side (`http.py`, aiohttp) and TLS (`certs.py`, which makes the
self-signed default certificate with `cryptography`) are imported and started
only once the node has an ingress route: the agent stays light where no
Ingress is served. The ports then stay open. Port 0 disables HTTP or HTTPS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from agent.network.ingress.routing import IngressRouter
from agent.network.proxy.endpoints import Balancer, backends_of, is_tcp
from protos.corral.v1 import discovery_pb2, ingress_pb2

if TYPE_CHECKING:
    from agent.network.ingress.certs import TlsContexts

log = structlog.get_logger(__name__)

DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443


@dataclass(frozen=True)
class IngressPorts:
    http: int = DEFAULT_HTTP_PORT
    https: int = DEFAULT_HTTPS_PORT

    @property
    def enabled(self) -> bool:
        return bool(self.http or self.https)


class IngressProxy:
    def __init__(
        self,
        addresses: Sequence[str],
        ports: IngressPorts | None = None,
        *,
        retry_seconds: float = 5.0,
        connect_timeout: float = 5.0,
        max_attempts: int = 3,
        now: dt.datetime | None = None,
    ) -> None:
        self.addresses = list(dict.fromkeys(addresses))
        self.ports = ports or IngressPorts()
        self.retry_seconds = retry_seconds
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.now = now
        self.router = IngressRouter()
        # Made when the proxy starts serving.
        self.tls: TlsContexts | None = None
        self._services: Mapping[str, discovery_pb2.ServiceRoute] = {}
        self._balancers: dict[tuple[str, str], Balancer] = {}
        self._wanted = asyncio.Event()
        # (address, port) → bound; filled by the HTTP side.
        self.bound: set[tuple[str, int]] = set()

    # -- listeners -------------------------------------------------------------------------

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self._services = routes
        self._refresh()

    def update_ingress(self, ingress: ingress_pb2.IngressRoutes) -> None:
        self.router = IngressRouter(ingress)
        if self.tls is not None:
            self.tls.update(ingress)
        self._refresh()
        if not self.router.empty:
            self._wanted.set()
        log.info(
            "ingress_routes_applied",
            hosts=[h.host or "*" for h in ingress.hosts][:20],
            certificates=len(ingress.certificates),
            default_backend=ingress.HasField("default_backend"),
        )

    # -- backends ------------------------------------------------------------------------------

    def _port(self, service: str, port_name: str) -> tuple[discovery_pb2.ServiceRoute, discovery_pb2.RoutePort] | None:
        route = self._services.get(service)
        if route is None:
            return None
        port = next((p for p in route.ports if p.name == port_name and is_tcp(p)), None)
        return None if port is None else (route, port)

    def _refresh(self) -> None:
        for key, balancer in list(self._balancers.items()):
            found = self._port(*key)
            if found is None:
                del self._balancers[key]
                continue
            route, port = found
            balancer.update(backends_of(port), weights=dict(route.weights), algorithm=route.load_balancing)

    def balancer(self, service: str, port_name: str) -> Balancer | None:
        """The balancer of a Service port (None: no such Service or port on this node's table)."""
        key = (service, port_name)
        balancer = self._balancers.get(key)
        if balancer is not None:
            return balancer
        found = self._port(service, port_name)
        if found is None:
            return None
        route, port = found
        balancer = Balancer(backends_of(port), weights=dict(route.weights), algorithm=route.load_balancing)
        self._balancers[key] = balancer
        return balancer

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        if not self.ports.enabled or not self.addresses:
            log.info("ingress_disabled")
            return
        await self._wanted.wait()
        # Imported only once the node has an ingress route (aiohttp, cryptography).
        from agent.network.ingress.certs import TlsContexts
        from agent.network.ingress.http import serve

        self.tls = TlsContexts(lambda name: self.router.certificate_for(name), now=self.now)
        self.tls.update(self.router.routes)
        await serve(self)
