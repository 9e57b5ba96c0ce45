"""The node's table of Service routes, fed by the control plane's WatchServices stream.

A full message replaces the table; later ones upsert and remove Services
("namespace/name"). After every change the listeners (the proxy, the DNS
server) get the whole table. While the control plane is away the table
stays as it was (static stability), and it is saved in the data dir (at most
every `save_interval` seconds), so an agent restarted without a control plane
serves the Services it last knew.

The node's ingress routing table rides on the same stream (a message with
`ingress` set replaces it) and is kept and saved alike; the ingress listeners
get it after each change, after the route listeners got the Services.

The pod network's table (every node's pod subnet and address) rides on it too,
kept and saved alike; its listeners (the route programmer) get it when a
message carries it.

It also answers what a new container should get to find Services
(`pod_network`): env vars and DNS settings, per runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import structlog

from agent.pods.service_env import PodNetwork, ServiceAccess, pod_network
from protos.corral.v1 import discovery_pb2, ingress_pb2, node_service_pb2

log = structlog.get_logger(__name__)


class RouteListener(Protocol):
    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None: ...


class IngressListener(Protocol):
    def update_ingress(self, ingress: ingress_pb2.IngressRoutes) -> None: ...


class PodNetworkListener(Protocol):
    def update_pod_network(self, table: node_service_pb2.PodNetwork) -> None: ...


def route_key(route: discovery_pb2.ServiceRoute) -> str:
    return f"{route.namespace}/{route.name}"


class ServiceTable:
    def __init__(
        self,
        listeners: Sequence[RouteListener] = (),
        *,
        access: Mapping[str, ServiceAccess] | None = None,
        state_file: Path | None = None,
        save_interval: float = 2.0,
        ingress_listeners: Sequence[IngressListener] = (),
        pod_network_listeners: Sequence[PodNetworkListener] = (),
    ) -> None:
        """`access`: by runtime name, how its pods reach the proxy; `state_file`: where the table is kept."""
        self.listeners = list(listeners)
        self.access = dict(access or {})
        self.state_file = state_file
        self.save_interval = save_interval
        self.ingress_listeners = list(ingress_listeners)
        self.pod_network_listeners = list(pod_network_listeners)
        self._pod_network = node_service_pb2.PodNetwork()
        self._routes: dict[str, discovery_pb2.ServiceRoute] = {}
        self._ingress = ingress_pb2.IngressRoutes()
        self._dirty = asyncio.Event()

    @property
    def routes(self) -> Mapping[str, discovery_pb2.ServiceRoute]:
        return MappingProxyType(self._routes)

    def apply(self, message: node_service_pb2.ServiceRoutes) -> None:
        """Apply a snapshot (`full`) or a delta from the stream."""
        if message.full:
            self._routes.clear()
        for key in message.removed:
            self._routes.pop(key, None)
        for route in message.upserts:
            self._routes[route_key(route)] = route
        ingress = message.HasField("ingress")
        if ingress:
            self._ingress = ingress_pb2.IngressRoutes()
            self._ingress.CopyFrom(message.ingress)
        if message.HasField("pod_network"):
            self._pod_network = node_service_pb2.PodNetwork()
            self._pod_network.CopyFrom(message.pod_network)
            for pod_network_listener in self.pod_network_listeners:
                pod_network_listener.update_pod_network(self._pod_network)
        log.debug(
            "services_applied",
            full=message.full,
            upserts=len(message.upserts),
            removed=len(message.removed),
            services=len(self._routes),
            ingress=ingress,
        )
        self._changed(ingress)

    @property
    def ingress(self) -> ingress_pb2.IngressRoutes:
        return self._ingress

    def _changed(self, ingress: bool) -> None:
        for listener in self.listeners:
            listener.update(self.routes)
        if ingress:
            for ingress_listener in self.ingress_listeners:
                ingress_listener.update_ingress(self._ingress)
        self._dirty.set()

    # -- pods ---------------------------------------------------------------------------

    def pod_network(self, namespace: str, runtime: str) -> PodNetwork:
        """Env vars and DNS settings for a new container of a pod in `namespace` on `runtime`."""
        access = self.access.get(runtime)
        if access is None:
            return PodNetwork({})
        return pod_network(self._routes.values(), namespace, access)

    # -- persistence ----------------------------------------------------------------------

    def resume(self) -> None:
        """Load the saved table, if any (before the control plane sends a fresh one)."""
        if self.state_file is None:
            return
        try:
            data = self.state_file.read_bytes()
        except FileNotFoundError:
            return
        saved = node_service_pb2.ServiceRoutes()
        try:
            saved.ParseFromString(data)
        except Exception:  # a torn or foreign file: start empty rather than crash
            log.warning("services_file_unreadable", path=str(self.state_file))
            return
        saved.full = True
        self.apply(saved)
        self._dirty.clear()
        log.info("services_resumed", services=len(self._routes))

    def _save(self) -> None:
        if self.state_file is None:
            return
        snapshot = node_service_pb2.ServiceRoutes(
            full=True, upserts=list(self._routes.values()), ingress=self._ingress, pod_network=self._pod_network
        )
        tmp = self.state_file.with_suffix(".tmp")
        # It may hold TLS private keys (the ingress certificates): owner only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(snapshot.SerializeToString())
        os.replace(tmp, self.state_file)

    async def run(self) -> None:
        """Save the table after changes, at most every `save_interval` seconds."""
        try:
            while True:
                await self._dirty.wait()
                self._dirty.clear()
                self._save_logged()
                await asyncio.sleep(self.save_interval)
        finally:
            if self._dirty.is_set():
                with contextlib.suppress(OSError):
                    self._save()

    def _save_logged(self) -> None:
        try:
            self._save()
        except OSError as e:
            log.warning("services_save_failed", path=str(self.state_file), reason=e.strerror or str(e))
