"""Keeps the route hub's ingress table current: a thin shell around `ingress.ingress_plan`.

Any change to an Ingress, IngressClass, Service or Secret wakes it; it
recomputes the whole table once per burst (`coalesce` seconds) and hands it
to the hub, which sends it to the nodes only when it changed. The plan's
conflicts and TLS problems are kept for the ingress controller (`plan`), which
records them as events on the Ingresses.
"""

from __future__ import annotations

import asyncio

import structlog

from controlplane.informer import CacheEvent, Informer
from controlplane.registry.hub import RouteHub
from controlplane.registry.ingress import IngressPlan, ingress_plan
from protos.corral.v1 import ingress_pb2, secret_pb2, service_pb2

log = structlog.get_logger(__name__)

COALESCE_SECONDS = 0.05


class IngressFeed:
    def __init__(
        self,
        hub: RouteHub,
        *,
        ingresses: Informer,
        classes: Informer,
        services: Informer,
        secrets: Informer,
        coalesce: float = COALESCE_SECONDS,
    ) -> None:
        self.hub = hub
        self._informers = (ingresses, classes, services, secrets)
        self.coalesce = coalesce
        self._wake = asyncio.Event()
        self.plan: IngressPlan | None = None
        for informer in self._informers:
            informer.add_listener(self._on_change)

    def _on_change(self, event: CacheEvent) -> None:
        del event
        self._wake.set()

    def compute(self) -> IngressPlan:
        ingresses, classes, services, secrets = (i.items for i in self._informers)
        return ingress_plan(
            [o for o in ingresses.values() if isinstance(o, ingress_pb2.Ingress)],
            [o for o in classes.values() if isinstance(o, ingress_pb2.IngressClass)],
            {k: o for k, o in services.items() if isinstance(o, service_pb2.Service)},
            {k: o for k, o in secrets.items() if isinstance(o, secret_pb2.Secret)},
        )

    async def run(self) -> None:
        for informer in self._informers:
            await informer.synced.wait()
        while True:
            self._wake.clear()
            self.plan = self.compute()
            self.hub.set_ingress(self.plan.routes)
            await self._wake.wait()
            await asyncio.sleep(self.coalesce)
