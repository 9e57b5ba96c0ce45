"""The pod network's routing table for the nodes: every node's pod subnet and address.

`pod_network(cluster_cidr, nodes)` is the pure part: one `NodeSubnet` per Node
with a `spec.podCIDR`, at its first InternalIP address (the address its
agent registered with), sorted by node name. `PodNetworkFeed` keeps it
current from the Node informer (once per burst of changes) and hands it to
the route hub, which sends it to every agent on the Services stream only when
it changed: heartbeats rewrite Nodes every few seconds, but not their subnets
or addresses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from controlplane.informer import CacheEvent, Change, Informer
from controlplane.registry.hub import RouteHub
from protos.corral.v1 import node_pb2, node_service_pb2

# The table goes whole to every node's Services stream: while a fleet joins, each change costs
# nodes x nodes entries sent. Changes within a second are merged (a node's own pods do not wait
# for it: its pod subnet reaches it at registration; others learn its route within about 1 s).
COALESCE_SECONDS = 1.0


def internal_address(node: node_pb2.Node) -> str:
    return next((a.address for a in node.status.addresses if a.type == "InternalIP"), "")


def pod_network(cluster_cidr: str, nodes: Iterable[node_pb2.Node]) -> node_service_pb2.PodNetwork:
    table = node_service_pb2.PodNetwork(cluster_cidr=cluster_cidr)
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        if node.spec.pod_cidr:
            table.nodes.add(node=node.metadata.name, pod_cidr=node.spec.pod_cidr, address=internal_address(node))
    return table


class PodNetworkFeed:
    def __init__(
        self, hub: RouteHub, nodes: Informer, *, cluster_cidr: str, coalesce: float = COALESCE_SECONDS
    ) -> None:
        self.hub = hub
        self.nodes = nodes
        self.cluster_cidr = cluster_cidr
        self.coalesce = coalesce
        self._wake = asyncio.Event()
        nodes.add_listener(self._on_change)

    def _on_change(self, event: CacheEvent) -> None:
        # Only a node that comes, goes, or changes its subnet or addresses changes the table.
        previous = event.prev
        if (
            event.change is not Change.DELETED
            and isinstance(previous, node_pb2.Node)
            and isinstance(event.obj, node_pb2.Node)
        ):
            before, after = previous, event.obj
            if (
                before.spec.pod_cidrs == after.spec.pod_cidrs
                and before.spec.pod_cidr == after.spec.pod_cidr
                and before.status.addresses == after.status.addresses
            ):
                return
        self._wake.set()

    def compute(self) -> node_service_pb2.PodNetwork:
        return pod_network(self.cluster_cidr, (n for n in self.nodes.items.values() if isinstance(n, node_pb2.Node)))

    async def run(self) -> None:
        await self.nodes.synced.wait()
        while True:
            self._wake.clear()
            self.hub.set_pod_network(self.compute())
            await self._wake.wait()
            await asyncio.sleep(self.coalesce)
