"""The scheduler's cache: an incremental `Snapshot`, kept up to date by node and pod events.

`build_snapshot` counts every bound pod of the cluster on its node — 10,000 pods
and 1,000 nodes on every pass. A `SchedulerCache` is told of each change instead
(`set_node` / `remove_node`, `set_pod` / `remove_pod`, as the informers deliver
them) and keeps, per node, the sums the plugins read: requested and non-zero
requested resources, host ports in use, the pod count and the pods per owner.
`snapshot()` then costs a `NodeInfo` rebuild for the nodes that changed since
the last one, and nothing for the others.

Assumed pods, as Kubernetes' scheduler cache: a pod the scheduler has bound but
no watch event has shown bound yet is `assume`d — counted on its node at once,
so the next pass does not give its room away. When the event arrives (`set_pod`
with `spec.nodeName`), the pod is confirmed: counted once, on the node the
event names. An event showing the pod still unbound (older than the binding)
leaves it assumed. An assumption no event confirms by its deadline is dropped by
`expire(now)` (the binding may have failed after all).

Counted: pods with a `spec.nodeName` that have not finished (Succeeded or
Failed pods take no room), whether or not their node exists — a node that
appears later starts with its pods' load, and a deleted node's pods are dropped
only when their own deletions arrive. A snapshot holds only the nodes that exist.

A bound pod's requests are read once, when it is first counted on a node: the
API refuses changes to a pod's containers' resources.

Pure: no I/O, time passed in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from controlplane.scheduler.snapshot import (
    HostPort,
    NodeInfo,
    PodRequest,
    RequestOf,
    Resources,
    Snapshot,
    node_facts,
    plain_request,
)
from protos.corral.v1 import node_pb2, pod_pb2
from protos.pods import is_terminal

__all__ = ["SchedulerCache"]


@dataclass
class _Usage:
    """The sums over the pods counted on one node."""

    cpu: int = 0
    memory: int = 0
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    count: int = 0
    ports: Counter[HostPort] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)

    def add(self, pod: PodRequest, sign: int) -> None:
        self.cpu += sign * pod.requests.cpu_millis
        self.memory += sign * pod.requests.memory_bytes
        self.nonzero_cpu += sign * pod.nonzero_requests.cpu_millis
        self.nonzero_memory += sign * pod.nonzero_requests.memory_bytes
        self.count += sign
        for port in pod.host_ports:
            self.ports[port] += sign
            if self.ports[port] <= 0:
                del self.ports[port]
        if pod.owner_uid:
            self.owners[pod.owner_uid] += sign
            if self.owners[pod.owner_uid] <= 0:
                del self.owners[pod.owner_uid]

    def on(self, facts: NodeInfo) -> NodeInfo:
        return replace(
            facts,
            requested=Resources(self.cpu, self.memory),
            nonzero_requested=Resources(self.nonzero_cpu, self.nonzero_memory),
            host_ports=frozenset(self.ports),
            pod_count=self.count,
            pods_per_owner=dict(self.owners),
        )


@dataclass
class _Counted:
    """A pod counted on `node`; `assumed_until` set while only the scheduler's binding says so."""

    node: str
    request: PodRequest
    assumed_until: float | None = None


class SchedulerCache:
    """Nodes and the load bound to each, updated by events; `snapshot()` reads them."""

    def __init__(self, request_of: RequestOf = plain_request) -> None:
        self._request_of = request_of
        self._facts: dict[str, NodeInfo] = {}
        self._usage: dict[str, _Usage] = {}
        self._pods: dict[str, _Counted] = {}
        # Each node's NodeInfo as of the last snapshot; a change drops its entry.
        self._infos: dict[str, NodeInfo] = {}
        self._names: list[str] | None = None
        self._snapshot: Snapshot | None = None

    # -- nodes -------------------------------------------------------------------------

    def set_node(self, node: node_pb2.Node) -> None:
        """A node was added or changed (labels, taints, allocatable, conditions …)."""
        name = node.metadata.name
        facts = node_facts(node)
        known = self._facts.get(name)
        if known == facts:
            return  # a heartbeat: nothing the plugins read changed
        if known is None:
            self._names = None
        self._facts[name] = facts
        self._changed(name)

    def remove_node(self, name: str) -> None:
        if self._facts.pop(name, None) is not None:
            self._names = None
            self._changed(name)

    # -- pods --------------------------------------------------------------------------

    def set_pod(self, pod: pod_pb2.Pod) -> None:
        """A pod was added or changed: count it on its node if it is bound and unfinished."""
        uid = pod.metadata.uid
        counted = self._pods.get(uid)
        node = pod.spec.node_name
        if is_terminal(pod):
            self._uncount(uid)
            return
        if counted is not None and counted.assumed_until is not None and not node:
            return  # an event from before our binding: the pod stays assumed
        if not node:
            self._uncount(uid)
            return
        if counted is not None and counted.node == node:
            counted.assumed_until = None  # confirmed (or just updated): still counted once
            return
        self._uncount(uid)
        self._count(uid, _Counted(node, self._request_of(pod)))

    def remove_pod(self, pod: pod_pb2.Pod) -> None:
        self._uncount(pod.metadata.uid)

    def assume(self, pod: pod_pb2.Pod, node: str, *, until: float) -> None:
        """The scheduler bound `pod` to `node`: count it there until an event confirms it
        (a pod an event already showed bound is left as it is)."""
        uid = pod.metadata.uid
        counted = self._pods.get(uid)
        if counted is not None and counted.assumed_until is None:
            return
        self._uncount(uid)
        self._count(uid, _Counted(node, self._request_of(pod), assumed_until=until))

    def assumed_node(self, uid: str) -> str | None:
        """The node a pod is assumed on, or None if it is not assumed."""
        counted = self._pods.get(uid)
        return counted.node if counted is not None and counted.assumed_until is not None else None

    def expire(self, now: float) -> list[str]:
        """Drop the assumptions no event confirmed by their deadline; their pod uids."""
        expired = [uid for uid, c in self._pods.items() if c.assumed_until is not None and c.assumed_until < now]
        for uid in expired:
            self._uncount(uid)
        return expired

    # -- reading -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every node with the pods counted on it: rebuilt only for the nodes that changed."""
        if self._snapshot is not None:
            return self._snapshot
        if self._names is None:
            self._names = sorted(self._facts)
        nodes = []
        for name in self._names:
            info = self._infos.get(name)
            if info is None:
                usage = self._usage.get(name)
                facts = self._facts[name]
                info = self._infos[name] = facts if usage is None else usage.on(facts)
            nodes.append(info)
        self._snapshot = Snapshot.presorted(nodes)
        return self._snapshot

    def __len__(self) -> int:
        return len(self._facts)

    # -- internals -----------------------------------------------------------------------

    def _count(self, uid: str, counted: _Counted) -> None:
        self._pods[uid] = counted
        self._usage.setdefault(counted.node, _Usage()).add(counted.request, 1)
        self._changed(counted.node)

    def _uncount(self, uid: str) -> None:
        counted = self._pods.pop(uid, None)
        if counted is None:
            return
        usage = self._usage[counted.node]
        usage.add(counted.request, -1)
        if usage.count == 0:
            del self._usage[counted.node]
        self._changed(counted.node)

    def _changed(self, node: str) -> None:
        self._infos.pop(node, None)
        self._snapshot = None
