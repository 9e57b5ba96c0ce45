"""What the scheduler knows: plain, frozen values built from Node and Pod protos.

`node_info` condenses a node and the pods bound to it into a `NodeInfo`;
`pod_request` condenses a pending pod into a `PodRequest`; `build_snapshot`
does both for a whole cluster. A `Snapshot` is immutable: `with_binding`
returns a new one in which a pod is counted on a node, so a pass that places
many pods accounts for the ones it already placed.

How a pod's demand is counted (as Kubernetes does):

- A container's request for cpu or memory is its `requests` entry; when only a
  `limits` entry is set, the limit is the request. A pod requests the sum over
  its containers, or, per resource, its largest init container's request when
  that is larger (`pod_requests`).
- For scoring only, a container that sets no cpu (memory) request counts as
  100m cpu (200Mi memory), so best-effort pods still spread out
  (`nonzero_requests`). Filters use the real requests.
- Host ports are `(port, protocol)` pairs; protocol defaults to TCP and
  `hostPort: 0` publishes no fixed port, so it is not counted.
- Pods that have finished (phase Succeeded or Failed) take no room on a node.

The scoring strategy of a pod is read from the annotation
``corral.io/scheduling-strategy: LeastAllocated | MostAllocated`` (set on a
Deployment's pod template and thereby copied to its pods). `LeastAllocated`
spreads load over nodes; `MostAllocated` bin-packs, filling the fullest node
that fits. A pod without the annotation, or with a value that is neither, gets
the cluster's `default_strategy`.

Malformed quantities raise `ValueError` (from `protos.quantity`); the API server
refuses them, so they only come from corrupt data.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from protos import nodes as nodeutil
from protos.corral.v1 import node_pb2, pod_pb2
from protos.pods import effective_requests, is_terminal, long_running, pod_resources
from protos.quantity import cpu_millis, memory_bytes, parse_quantity
from protos.wellknown import DEFAULT_RUNTIME, SCHEDULING_STRATEGY

__all__ = [
    "LEAST_ALLOCATED",
    "MOST_ALLOCATED",
    "STRATEGIES",
    "HostPort",
    "NodeInfo",
    "PodRequest",
    "Requirement",
    "Resources",
    "Snapshot",
    "Taint",
    "Term",
    "Toleration",
    "VolumeNeeds",
    "build_snapshot",
    "node_facts",
    "node_info",
    "node_selector_terms",
    "plain_request",
    "pod_request",
]

LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"
STRATEGIES = (LEAST_ALLOCATED, MOST_ALLOCATED)

DEFAULT_PROTOCOL = "TCP"
EPHEMERAL_STORAGE = "ephemeral-storage"
# Kubernetes' stand-ins for unset requests when scoring (not when filtering).
DEFAULT_CPU_MILLIS = 100
DEFAULT_MEMORY_BYTES = 200 * 1024 * 1024

HostPort = tuple[int, str]
"""A fixed host port a pod publishes: (port, protocol)."""


@dataclass(frozen=True)
class Resources:
    """An amount of cpu (thousandths of a core) and memory (bytes)."""

    cpu_millis: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes)

    def most(self, other: Resources) -> Resources:
        """The larger of the two, resource by resource."""
        return Resources(max(self.cpu_millis, other.cpu_millis), max(self.memory_bytes, other.memory_bytes))


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        shown = f"{self.key}={self.value}" if self.value else self.key
        return f"{{{shown}:{self.effect}}}"


@dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass(frozen=True)
class Requirement:
    """One node selector requirement: `key operator values`, on a label or (`on_field`) on a node
    field (matchFields: only `metadata.name`)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()
    on_field: bool = False


Term = tuple[Requirement, ...]
"""A node selector term: its requirements are ANDed."""


@dataclass(frozen=True)
class VolumeNeeds:
    """What a pod's persistentVolumeClaim volumes ask of a node (`scheduler.volumes` works it out)."""

    # Why the pod can go nowhere now ("": it can): a missing claim or class, an unbound Immediate claim.
    problem: str = ""
    # Each (what, terms): a volume the pod uses lives where its node affinity `terms` hold; `what`
    # names it for the user (`persistentvolumeclaim "data" is on node "n1"`).
    node_terms: tuple[tuple[str, tuple[Term, ...]], ...] = ()
    # Bytes the local-path provisioner will take on the chosen node for the pod's unbound claims.
    storage_bytes: int = 0


NO_VOLUMES = VolumeNeeds()


# Shared by the pods without host ports (most of them): an empty frozenset is 216 bytes.
NO_HOST_PORTS: frozenset[HostPort] = frozenset()


@dataclass(frozen=True)
class PodRequest:
    """What a pod asks of the node it will run on."""

    key: str
    owner_uid: str = ""
    requests: Resources = Resources()
    nonzero_requests: Resources = Resources(DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_BYTES)
    host_ports: frozenset[HostPort] = frozenset()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity_terms: tuple[Term, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    runtime: str = DEFAULT_RUNTIME
    strategy: str = LEAST_ALLOCATED
    volumes: VolumeNeeds = NO_VOLUMES


@dataclass(frozen=True)
class NodeInfo:
    """A node as the scheduler sees it, with the pods already bound to it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    ready: bool = True
    runtimes: frozenset[str] = frozenset({DEFAULT_RUNTIME})
    allocatable: Resources = Resources()
    max_pods: int | None = None
    requested: Resources = Resources()
    nonzero_requested: Resources = Resources()
    host_ports: frozenset[HostPort] = frozenset()
    pod_count: int = 0
    pods_per_owner: Mapping[str, int] = field(default_factory=dict)
    # Free bytes for volumes (allocatable ephemeral-storage, as the agent reported it); None: not reported.
    storage_free: int | None = None

    def with_pod(self, pod: PodRequest) -> NodeInfo:
        """This node with `pod` bound to it as well."""
        owners = dict(self.pods_per_owner)
        if pod.owner_uid:
            owners[pod.owner_uid] = owners.get(pod.owner_uid, 0) + 1
        return dataclasses.replace(
            self,
            requested=self.requested + pod.requests,
            nonzero_requested=self.nonzero_requested + pod.nonzero_requests,
            host_ports=self.host_ports | pod.host_ports,
            pod_count=self.pod_count + 1,
            pods_per_owner=owners,
            storage_free=None if self.storage_free is None else self.storage_free - pod.volumes.storage_bytes,
        )


class Snapshot:
    """Every schedulable node, in name order, at one moment. Immutable."""

    __slots__ = ("_index", "_nodes")

    def __init__(self, nodes: Iterable[NodeInfo] = ()) -> None:
        self._nodes = tuple(sorted(nodes, key=lambda n: n.name))
        self._index = {n.name: i for i, n in enumerate(self._nodes)}
        if len(self._index) != len(self._nodes):
            raise ValueError("duplicate node names in snapshot")

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        """The nodes, sorted by name: the order sampling rotates through."""
        return self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[NodeInfo]:
        return iter(self._nodes)

    def __getitem__(self, name: str) -> NodeInfo:
        return self._nodes[self._index[name]]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def with_binding(self, pod: PodRequest, node_name: str) -> Snapshot:
        """A snapshot in which `pod` also runs on `node_name` (KeyError if unknown)."""
        i = self._index[node_name]
        nodes = list(self._nodes)
        nodes[i] = nodes[i].with_pod(pod)
        return Snapshot._presorted(tuple(nodes), self._index)

    @classmethod
    def presorted(cls, nodes: Iterable[NodeInfo]) -> Snapshot:
        """A snapshot of `nodes`, which come sorted by name with no name twice (unchecked)."""
        ordered = tuple(nodes)
        return cls._presorted(ordered, {n.name: i for i, n in enumerate(ordered)})

    @classmethod
    def _presorted(cls, nodes: tuple[NodeInfo, ...], index: dict[str, int]) -> Snapshot:
        snapshot = cls.__new__(cls)
        snapshot._nodes = nodes
        snapshot._index = index
        return snapshot


# -- building from protos -------------------------------------------------------


RequestOf = Callable[[pod_pb2.Pod], "PodRequest"]


def plain_request(pod: pod_pb2.Pod) -> PodRequest:
    """A bound pod's request (its scoring strategy does not matter any more)."""
    return pod_request(pod, default_strategy=LEAST_ALLOCATED)


def build_snapshot(
    nodes: Iterable[node_pb2.Node], pods: Iterable[pod_pb2.Pod], request_of: RequestOf | None = None
) -> Snapshot:
    """A snapshot of `nodes`, counting every pod bound (`spec.nodeName`) to one.

    `request_of` may serve bound pods' requests from a cache (a pod's requests
    never change once it exists)."""
    bound: dict[str, list[pod_pb2.Pod]] = {}
    for pod in pods:
        if pod.spec.node_name:
            bound.setdefault(pod.spec.node_name, []).append(pod)
    return Snapshot(node_info(n, bound.get(n.metadata.name, ()), request_of) for n in nodes)


def node_info(node: node_pb2.Node, bound_pods: Iterable[pod_pb2.Pod], request_of: RequestOf | None = None) -> NodeInfo:
    """The scheduler's view of `node`, given the pods bound to it."""
    of = request_of or plain_request
    pods = [of(p) for p in bound_pods if not is_terminal(p)]
    return dataclasses.replace(
        node_facts(node),
        requested=sum((p.requests for p in pods), Resources()),
        nonzero_requested=sum((p.nonzero_requests for p in pods), Resources()),
        host_ports=frozenset(port for p in pods for port in p.host_ports),
        pod_count=len(pods),
        pods_per_owner=dict(Counter(p.owner_uid for p in pods if p.owner_uid)),
    )


def node_facts(node: node_pb2.Node) -> NodeInfo:
    """The scheduler's view of `node` alone, with no pods counted on it."""
    return NodeInfo(
        name=node.metadata.name,
        labels=dict(node.metadata.labels),
        taints=tuple(Taint(t.key, t.value, t.effect) for t in node.spec.taints),
        unschedulable=node.spec.unschedulable,
        ready=nodeutil.is_ready(node),
        runtimes=frozenset(node.status.runtimes) or frozenset({DEFAULT_RUNTIME}),
        allocatable=_allocatable(node.status),
        max_pods=_max_pods(node.status),
        storage_free=_storage_free(node.status),
    )


def pod_request(pod: pod_pb2.Pod, *, default_strategy: str) -> PodRequest:
    """What `pod` asks of a node; `default_strategy` is the cluster's setting."""
    if default_strategy not in STRATEGIES:
        raise ValueError(f"unknown scheduling strategy {default_strategy!r}")
    spec = pod.spec
    strategy = pod.metadata.annotations.get(SCHEDULING_STRATEGY, default_strategy)
    return PodRequest(
        key=f"{pod.metadata.namespace}/{pod.metadata.name}",
        owner_uid=_controller_uid(pod),
        requests=pod_requests(spec, nonzero=False),
        nonzero_requests=pod_requests(spec, nonzero=True),
        host_ports=frozenset(_host_ports(spec)) or NO_HOST_PORTS,
        node_selector=dict(spec.node_selector),
        affinity_terms=_affinity_terms(spec.affinity),
        tolerations=tuple(_toleration(t) for t in spec.tolerations),
        runtime=spec.runtime_class_name or DEFAULT_RUNTIME,
        strategy=strategy if strategy in STRATEGIES else default_strategy,
    )


def _allocatable(status: node_pb2.NodeStatus) -> Resources:
    """Allocatable cpu and memory; capacity stands in for what is not reported."""
    amounts = {**status.capacity, **status.allocatable}
    return Resources(
        cpu_millis=cpu_millis(amounts["cpu"]) if "cpu" in amounts else 0,
        memory_bytes=memory_bytes(amounts["memory"]) if "memory" in amounts else 0,
    )


def _storage_free(status: node_pb2.NodeStatus) -> int | None:
    text = status.allocatable.get(EPHEMERAL_STORAGE)
    try:
        return None if text is None else memory_bytes(text)
    except ValueError:
        return None


def _max_pods(status: node_pb2.NodeStatus) -> int | None:
    text = status.allocatable.get("pods") or status.capacity.get("pods")
    return None if text is None else int(parse_quantity(text))


def _controller_uid(pod: pod_pb2.Pod) -> str:
    return next((o.uid for o in pod.metadata.owner_references if o.controller), "")


def pod_requests(spec: pod_pb2.PodSpec, *, nonzero: bool) -> Resources:
    """The pod's effective request, as Kubernetes computes it (`protos.pods.pod_resources`): the
    app containers and sidecars together, or an init container with the sidecars before it, if more."""

    def amounts(container: pod_pb2.Container) -> dict[str, int]:
        r = _requests(container, nonzero=nonzero)
        return {"cpu": r.cpu_millis, "memory": r.memory_bytes}

    total = pod_resources(spec, amounts, 0)
    return Resources(total.get("cpu", 0), total.get("memory", 0))


def _requests(container: pod_pb2.Container, *, nonzero: bool) -> Resources:
    cpu = _amount(container.resources, "cpu", cpu_millis)
    memory = _amount(container.resources, "memory", memory_bytes)
    if nonzero:
        return Resources(
            DEFAULT_CPU_MILLIS if cpu is None else cpu,
            DEFAULT_MEMORY_BYTES if memory is None else memory,
        )
    return Resources(cpu or 0, memory or 0)


def _amount(resources: pod_pb2.ResourceRequirements, name: str, parse: Callable[[str], int]) -> int | None:
    """The request for `name`, the limit when only that is set, None when neither."""
    text = effective_requests(resources).get(name)
    return None if text is None else parse(text)


def _host_ports(spec: pod_pb2.PodSpec) -> Iterator[HostPort]:
    """The host ports of the containers that run for the pod's life: the app containers and the
    sidecars (a plain init container's ends before them)."""
    for container in long_running(spec):
        for port in container.ports:
            if port.host_port:
                yield (port.host_port, port.protocol or DEFAULT_PROTOCOL)


def _affinity_terms(affinity: pod_pb2.Affinity) -> tuple[Term, ...]:
    return node_selector_terms(affinity.node_affinity.required_during_scheduling_ignored_during_execution)


def node_selector_terms(required: pod_pb2.NodeSelector) -> tuple[Term, ...]:
    """A node selector (a pod's required node affinity, a volume's) as terms."""
    return tuple(
        (
            *(Requirement(r.key, r.operator, tuple(r.values)) for r in term.match_expressions),
            *(Requirement(r.key, r.operator, tuple(r.values), on_field=True) for r in term.match_fields),
        )
        for term in required.node_selector_terms
    )


def _toleration(t: pod_pb2.Toleration) -> Toleration:
    return Toleration(key=t.key, operator=t.operator or "Equal", value=t.value, effect=t.effect)
