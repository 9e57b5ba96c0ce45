"""Node leases (coordination.k8s.io/v1 Lease), as Kubernetes' node heartbeats.

Each node has a Lease in the namespace `kube-node-lease`, named after the node,
held by the node (`holderIdentity` is its name) and owned by its Node object (so
the garbage collector removes it with the node). Every heartbeat renews it: a
small write that wakes only the Lease watchers, where rewriting the Node would
wake every Node watcher. The node lifecycle controller reads `renewTime`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from protos.corral.v1 import coordination_pb2, node_pb2
from protos.times import as_datetime, stamp

NODE_LEASE_NAMESPACE: Final = "kube-node-lease"


def node_lease_key(node_name: str) -> str:
    """The informer key of a node's Lease."""
    return f"{NODE_LEASE_NAMESPACE}/{node_name}"


def renewed(
    lease: coordination_pb2.Lease | None, node: node_pb2.Node, now: datetime, duration_seconds: int
) -> coordination_pb2.Lease:
    """`node`'s Lease renewed at `now`: a copy of `lease`, or a new one when there is none. A lease
    found held by another identity changes hands (acquireTime now, one more transition)."""
    fresh = coordination_pb2.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
    if lease is not None:
        fresh.CopyFrom(lease)
    name = node.metadata.name
    fresh.metadata.namespace, fresh.metadata.name = NODE_LEASE_NAMESPACE, name
    if node.metadata.uid and not any(o.uid == node.metadata.uid for o in fresh.metadata.owner_references):
        del fresh.metadata.owner_references[:]
        fresh.metadata.owner_references.add(api_version="v1", kind="Node", name=name, uid=node.metadata.uid)
    spec = fresh.spec
    if spec.holder_identity != name:
        if lease is not None:
            spec.lease_transitions = spec.lease_transitions + 1
        spec.holder_identity = name
        stamp(spec.acquire_time, now)
    spec.lease_duration_seconds = duration_seconds
    stamp(spec.renew_time, now)
    return fresh


def renew_time(lease: object) -> datetime | None:
    """When a node's Lease was last renewed (None: no lease, never renewed)."""
    if not isinstance(lease, coordination_pb2.Lease):
        return None
    return as_datetime(lease.spec.renew_time)


def duration(lease: object) -> timedelta | None:
    """A node's Lease's leaseDurationSeconds (None: no lease, or no duration set)."""
    if not isinstance(lease, coordination_pb2.Lease) or lease.spec.lease_duration_seconds <= 0:
        return None
    return timedelta(seconds=lease.spec.lease_duration_seconds)
