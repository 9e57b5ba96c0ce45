"""Pod facts every room shares. Pure code: no I/O.

- phases: the five pod phases; Succeeded and Failed are terminal (finished);
- terminating: an object whose metadata.deletionTimestamp is set (any kind);
- activity: a pod counts towards its ReplicaSet while it is neither terminal
  nor terminating;
- readiness and availability: Ready means the Ready condition is True;
  available means Ready for at least minReadySeconds, judged from the
  condition's lastTransitionTime and `now`;
- every container of a spec (`every_container`): init containers first, then
  the app containers, each with its field path, for every rule that applies to
  both (security, ports, config references, defaults);
- sidecars (`is_sidecar`): init containers with restartPolicy Always, started
  in order with the init containers and kept running for the pod's life;
- effective requests (`pod_resources`): Kubernetes' formula, sidecars included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple, Protocol, Self, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from protos.corral.v1 import meta_pb2, pod_pb2
from protos.objectmeta import meta
from protos.times import as_datetime


class _Amount(Protocol):
    """A number that adds and compares (an int, a Fraction)."""

    def __add__(self, other: Self, /) -> Self: ...
    def __lt__(self, other: Self, /) -> bool: ...
    def __gt__(self, other: Self, /) -> bool: ...


N = TypeVar("N", bound=_Amount)

PHASES: Final = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed"})

# Pod condition types.
POD_READY: Final = "Ready"
CONTAINERS_READY: Final = "ContainersReady"
POD_SCHEDULED: Final = "PodScheduled"
POD_INITIALIZED: Final = "Initialized"

DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: Final = 30


def every_container(spec: pod_pb2.PodSpec) -> Iterator[tuple[str, pod_pb2.Container]]:
    """Each init container, then each app container, with its path under the spec
    (`initContainers[0]`, `containers[1]`), in Kubernetes' order (VisitContainers)."""
    for i, c in enumerate(spec.init_containers):
        yield f"initContainers[{i}]", c
    for i, c in enumerate(spec.containers):
        yield f"containers[{i}]", c


SIDECAR_RESTART_POLICY: Final = "Always"


def is_sidecar(container: pod_pb2.Container) -> bool:
    """An init container with restartPolicy Always (Kubernetes' restartable init container)."""
    return container.HasField("restart_policy") and container.restart_policy == SIDECAR_RESTART_POLICY


def long_running(spec: pod_pb2.PodSpec) -> list[pod_pb2.Container]:
    """The containers that run for the pod's life: the app containers, then the sidecars (whose
    ports a Service and the scheduler see as the app containers'; a plain init container's not)."""
    return [*spec.containers, *filter(is_sidecar, spec.init_containers)]


def long_running_statuses(pod: pod_pb2.Pod) -> list[pod_pb2.ContainerStatus]:
    """The statuses of `long_running(pod.spec)`: the app containers', then the sidecars'."""
    sidecars = {c.name for c in pod.spec.init_containers if is_sidecar(c)}
    return [*pod.status.container_statuses, *(s for s in pod.status.init_container_statuses if s.name in sidecars)]


def is_terminal(pod: pod_pb2.Pod) -> bool:
    return pod.status.phase in TERMINAL_PHASES


def is_terminating(obj: Message) -> bool:
    """The object is being deleted: its metadata.deletionTimestamp is set."""
    return meta(obj).HasField("deletion_timestamp")


def is_active(pod: pod_pb2.Pod) -> bool:
    """Counts towards its ReplicaSet: not terminal and not being deleted."""
    return not is_terminal(pod) and not is_terminating(pod)


def _ready_in(conditions: Iterable[meta_pb2.Condition]) -> meta_pb2.Condition | None:
    for condition in conditions:
        if condition.type == POD_READY:
            return condition
    return None


def ready_condition(pod: pod_pb2.Pod) -> meta_pb2.Condition | None:
    return _ready_in(pod.status.conditions)


def status_is_ready(status: pod_pb2.PodStatus) -> bool:
    """A pod status whose Ready condition is True."""
    condition = _ready_in(status.conditions)
    return condition is not None and condition.status == "True"


def is_ready(pod: pod_pb2.Pod) -> bool:
    return status_is_ready(pod.status)


def ready_since(pod: pod_pb2.Pod) -> datetime | None:
    """When a ready pod became ready (None if not ready or unknown)."""
    condition = ready_condition(pod)
    if condition is None or condition.status != "True":
        return None
    return as_datetime(condition.last_transition_time)


def available_at(pod: pod_pb2.Pod, min_ready_seconds: int) -> datetime | None:
    """When a ready pod is (or was) available; None if it is not ready.

    With minReadySeconds 0 a ready pod is available at once (the minimum
    datetime); otherwise a Ready condition without a transition time never is.
    """
    if not is_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return datetime.min.replace(tzinfo=UTC)
    since = ready_since(pod)
    if since is None:
        return datetime.max.replace(tzinfo=UTC)
    return since + timedelta(seconds=min_ready_seconds)


def is_available(pod: pod_pb2.Pod, min_ready_seconds: int, now: datetime) -> bool:
    at = available_at(pod, min_ready_seconds)
    return at is not None and at <= now


def next_available(pods: Iterable[pod_pb2.Pod], min_ready_seconds: int, now: datetime) -> float | None:
    """Seconds until the next ready-but-not-yet-available pod becomes available."""
    if min_ready_seconds <= 0:
        return None
    waits = [
        (at - now).total_seconds()
        for p in pods
        if (at := available_at(p, min_ready_seconds)) is not None and now < at < datetime.max.replace(tzinfo=UTC)
    ]
    return min(waits) if waits else None


def effective_requests(resources: pod_pb2.ResourceRequirements) -> dict[str, str]:
    """A container's requests as Kubernetes stores them: a resource with only a limit requests its limit."""
    return {**resources.limits, **resources.requests}


def pod_resources(
    spec: pod_pb2.PodSpec, amounts: Callable[[pod_pb2.Container], Mapping[str, N]], zero: N
) -> dict[str, N]:
    """A pod's effective requests (or limits), per resource, from each container's `amounts`, as
    Kubernetes computes them: the larger of the app containers' sum plus every sidecar's, and, for
    each plain init container, its own plus the sidecars declared before it (they run beside it)."""
    total: dict[str, N] = {}
    for container in spec.containers:
        _add(total, amounts(container), zero)
    sidecars: dict[str, N] = {}
    peak: dict[str, N] = {}
    for container in spec.init_containers:
        own = amounts(container)
        if is_sidecar(container):
            _add(total, own, zero)
            _add(sidecars, own, zero)
            during = dict(sidecars)
        else:
            during = dict(sidecars)
            _add(during, own, zero)
        for name, amount in during.items():
            peak[name] = max(peak.get(name, zero), amount)
    for name, amount in peak.items():
        total[name] = max(total.get(name, zero), amount)
    return total


def _add(into: dict[str, N], amounts: Mapping[str, N], zero: N) -> None:
    for name, amount in amounts.items():
        into[name] = into.get(name, zero) + amount


# The cluster's DNS domain (Service and pod names end in it).
CLUSTER_DOMAIN: Final = "cluster.local"
MAX_HOSTNAME: Final = 63


def hostname(pod: pod_pb2.Pod) -> str:
    """The pod's host name, as the kubelet gives it: spec.hostname, else the pod's name, cut to
    63 characters without a trailing "-" or "."."""
    name = pod.spec.hostname or pod.metadata.name
    return name[:MAX_HOSTNAME].rstrip("-.") if len(name) > MAX_HOSTNAME else name


def host_domain(pod: pod_pb2.Pod) -> str:
    """`<subdomain>.<namespace>.svc.cluster.local` for a pod with a spec.subdomain, else ""."""
    if not pod.spec.subdomain:
        return ""
    return f"{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{CLUSTER_DOMAIN}"


class PodFacts(NamedTuple):
    """What the workload controllers read of one pod version, read from the message once
    (`facts_of`): counting a set of 10,000 pods then costs no protobuf access per pod."""

    pod: pod_pb2.Pod
    namespace: str
    # The uid of the controller ownerReference ("" without one).
    owner: str
    labels: Mapping[str, str]
    terminal: bool
    terminating: bool
    ready: bool
    # The Ready condition's lastTransitionTime while ready (None: not ready).
    ready_time: Timestamp | None

    @property
    def active(self) -> bool:
        return not self.terminal and not self.terminating

    def available_at(self, min_ready_seconds: int) -> datetime | None:
        """As `available_at` of the pod."""
        if not self.ready:
            return None
        if min_ready_seconds <= 0:
            return _EARLIEST
        since = None if self.ready_time is None else as_datetime(self.ready_time)
        if since is None:
            return _LATEST
        return since + timedelta(seconds=min_ready_seconds)

    def is_available(self, min_ready_seconds: int, now: datetime) -> bool:
        at = self.available_at(min_ready_seconds)
        return at is not None and at <= now


_EARLIEST: Final = datetime.min.replace(tzinfo=UTC)
_LATEST: Final = datetime.max.replace(tzinfo=UTC)


def facts_of(pod: pod_pb2.Pod) -> PodFacts:
    m = pod.metadata
    ready = _ready_in(pod.status.conditions)
    is_ready = ready is not None and ready.status == "True"
    return PodFacts(
        pod,
        m.namespace,
        next((r.uid for r in m.owner_references if r.controller), ""),
        dict(m.labels),
        pod.status.phase in TERMINAL_PHASES,
        m.HasField("deletion_timestamp"),
        is_ready,
        ready.last_transition_time if is_ready and ready is not None else None,
    )


def next_available_of(facts: Iterable[PodFacts], min_ready_seconds: int, now: datetime) -> float | None:
    """As `next_available`, over pods' facts."""
    if min_ready_seconds <= 0:
        return None
    waits = [
        (at - now).total_seconds()
        for f in facts
        if (at := f.available_at(min_ready_seconds)) is not None and now < at < _LATEST
    ]
    return min(waits) if waits else None
