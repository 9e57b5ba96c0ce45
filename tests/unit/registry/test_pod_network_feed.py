"""Which Node changes make the pod network table go out again to every node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controlplane.informer import CacheEvent, Change
from controlplane.registry.pod_network import PodNetworkFeed
from protos.corral.v1 import node_pb2


class _Nodes:
    def __init__(self) -> None:
        self.listeners: list[Callable[[CacheEvent], None]] = []

    def add_listener(self, listener: Callable[[CacheEvent], None]) -> None:
        self.listeners.append(listener)


def _node(cidr: str = "10.42.1.0/24", address: str = "10.0.0.1", ready: str = "True") -> node_pb2.Node:
    node = node_pb2.Node()
    node.metadata.name = "n1"
    node.spec.pod_cidr = cidr
    node.spec.pod_cidrs.append(cidr)
    node.status.addresses.add(type="InternalIP", address=address)
    node.status.conditions.add(type="Ready", status=ready)
    return node


@pytest.mark.parametrize(
    ("change", "prev", "obj", "wakes"),
    [
        pytest.param(Change.ADDED, None, _node(), True, id="a-node-joins"),
        pytest.param(Change.MODIFIED, _node(), _node(ready="Unknown"), False, id="its-status-only"),
        pytest.param(Change.MODIFIED, _node(), _node(cidr="10.42.2.0/24"), True, id="another-subnet"),
        pytest.param(Change.MODIFIED, _node(), _node(address="10.0.0.9"), True, id="another-address"),
        pytest.param(Change.DELETED, _node(), _node(), True, id="a-node-goes"),
    ],
)
def test_only_a_change_to_the_table_wakes_the_feed(
    change: Change, prev: node_pb2.Node | None, obj: node_pb2.Node, wakes: bool
) -> None:
    nodes = _Nodes()
    feed = PodNetworkFeed(object(), nodes, cluster_cidr="10.42.0.0/16")  # type: ignore[arg-type]
    event: Any = CacheEvent(change=change, obj=obj, prev=prev, revision=2)
    nodes.listeners[0](event)
    assert feed._wake.is_set() is wakes
