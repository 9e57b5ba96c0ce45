"""The control plane's own ports, which no Service may take.

Every node's proxy listens on each Service's nodePorts, and a LoadBalancer
Service's ports, on the node's addresses. A Service on a port the control plane
listens on (the API, the join port, /metrics) would take it on a node that
also runs a server: once the server restarts, it could not listen again (or,
on the kernel data path, the node's traffic to it would go to the Service's
pods). So the API refuses a Service whose nodePort (or LoadBalancer port) is one of them
(`reserved_port_causes`, pure), naming the field and the port's use.

Which ports: every replica's. At start each replica records its ports in the
store (`<prefix>/controlplane/ports/<API address>`, JSON: port → use), and
`PortRegistry.reserved()` reads them all, with this replica's own, for each
Service write. The records have no lease: a replica that is down keeps its
ports reserved (its restart must find them free); one retired for good is
forgotten by deleting its key. Agents also keep their proxies off the ports
of their `--server` and `--join` addresses whatever is stored
(`agent/network/proxy/reserved.py`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import structlog

from controlplane.apiserver.errors import Cause
from controlplane.apiserver.service_ranges import node_address_ports
from controlplane.store import errors as store_errors
from controlplane.store.base import Store
from protos.corral.v1 import service_pb2

log = structlog.get_logger(__name__)

PAGE = 100


def reserved_port_causes(service: service_pb2.Service, reserved: Mapping[int, str]) -> list[Cause]:
    """A cause for each port ``service`` takes on the nodes' addresses (its nodePorts, a
    LoadBalancer's ports) that the control plane uses (port → its use). ClusterIP ports live on
    the Service's own address and may be anything."""
    causes: list[Cause] = []
    for number, field in node_address_ports(service):
        use = reserved.get(number)
        if use is not None:
            causes.append(
                Cause(
                    field,
                    f"{number} is {use}: a Service there would take it from the control plane on "
                    "every node that runs both; choose another port",
                )
            )
    return causes


class PortRegistry:
    """This replica's ports, and every replica's as recorded in the store."""

    def __init__(self, store: Store | None = None, prefix: str = "/corral") -> None:
        self.store = store
        self.prefix = f"{prefix.rstrip('/')}/controlplane/ports/"
        self.address = ""
        self.own: dict[int, str] = {}

    def add(self, port: int, use: str) -> None:
        """This replica listens on ``port`` for ``use`` ("API", "join", "metrics")."""
        if port:
            self.own[port] = use

    def _described(self, address: str, ports: Mapping[int, str]) -> dict[int, str]:
        return {port: f"the control plane's {use} port (server {address})" for port, use in ports.items()}

    async def publish(self, address: str) -> None:
        """Record this replica's ports under its API address (replacing what an earlier start recorded)."""
        self.address = address
        if self.store is None:
            return
        key, value = self.prefix + address, json.dumps({str(p): u for p, u in sorted(self.own.items())}).encode()
        for _ in range(5):
            try:
                found = await self.store.get(key)
                if found is None:
                    await self.store.create(key, value)
                elif found.value != value:
                    await self.store.update(key, value, expected_revision=found.mod_revision)
                return
            except (store_errors.AlreadyExistsError, store_errors.ConflictError, store_errors.NotFoundError):
                continue
        log.warning("control_plane_ports_not_recorded", address=address)

    async def reserved(self) -> dict[int, str]:
        """Port → its use, for every replica recorded and this one. Raises the store's errors."""
        reserved: dict[int, str] = {}
        start: str | None = None
        while self.store is not None:
            page = await self.store.list(self.prefix, limit=PAGE, start_after=start)
            for kv in page.items:
                try:
                    ports = {int(p): str(u) for p, u in json.loads(kv.value).items()}
                except (ValueError, TypeError, AttributeError):
                    continue
                reserved.update(self._described(kv.key.removeprefix(self.prefix), ports))
            if not page.more or not page.items:
                break
            start = page.items[-1].key
        reserved.update(self._described(self.address or "this one", self.own))
        return reserved
