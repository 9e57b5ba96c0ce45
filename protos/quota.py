"""Quota facts: what an object uses of a ResourceQuota's resources, which pods a
scoped quota counts, and the arithmetic over usage lists. Pure code: no I/O.

The rules are Kubernetes' quota evaluators (pkg/quota/v1/evaluator/core):

- every object counts 1 towards ``count/<plural>`` (``count/deployments.apps``
  for a kind of a named group), and the core kinds also towards their old
  names: ``pods``, ``services``, ``secrets``, ``configmaps``,
  ``persistentvolumeclaims``, ``resourcequotas``;
- a pod that has not finished (phase Succeeded or Failed) and is not past its
  deletion deadline counts towards ``pods`` and its compute resources: its
  requests (a resource with only a limit requests its limit) as ``cpu`` and
  ``requests.cpu``, its limits as ``limits.cpu`` (the same for memory and
  ephemeral-storage); a pod's amount is the sum of its containers', or the
  largest init container's when that is more;
- a Service counts ``services.nodeports`` (one per port of a NodePort Service)
  and ``services.loadbalancers``;
- a PersistentVolumeClaim counts ``requests.storage`` and, per storage class,
  ``<class>.storageclass.storage.k8s.io/requests.storage`` and
  ``.../persistentvolumeclaims``.

A quota with scopes counts only pods, and only those matching every scope:
Terminating (activeDeadlineSeconds set), NotTerminating, BestEffort (no
container requests or limits cpu or memory), NotBestEffort.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Final

from google.protobuf.message import Message

from protos.corral.v1 import pod_pb2, quota_pb2, service_pb2, storage_pb2
from protos.kinds import KindInfo, UnknownKindError, info_of, resolve
from protos.pods import effective_requests, is_terminal, pod_resources
from protos.quantity import format_quantity, parse_quantity

Usage = dict[str, Fraction]

# The compute resources a pod's usage names, by what they come from.
COMPUTE: Final = ("cpu", "memory", "ephemeral-storage")
# The old names of the core kinds' object counts.
LEGACY_COUNTS: Final = {
    "Pod": "pods",
    "Service": "services",
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "ResourceQuota": "resourcequotas",
}
# Names Kubernetes accepts that corral counts as always 0 (it has no such objects).
UNUSED: Final = ("replicationcontrollers",)
SERVICE_NAMES: Final = ("services.nodeports", "services.loadbalancers")
POD_COMPUTE_NAMES: Final = (
    *COMPUTE,
    *(f"requests.{name}" for name in COMPUTE),
    *(f"limits.{name}" for name in COMPUTE),
)
STORAGE_CLASS_SUFFIX: Final = ".storageclass.storage.k8s.io/"
STORAGE_NAMES: Final = ("requests.storage",)
# Every name a quota's spec.hard may hold, besides count/<resource> and the storage class forms.
STANDARD_NAMES: Final = (*LEGACY_COUNTS.values(), *UNUSED, *SERVICE_NAMES, *POD_COMPUTE_NAMES, *STORAGE_NAMES)
# Resources that count objects, so must be whole numbers.
COUNT_NAMES: Final = (*LEGACY_COUNTS.values(), *UNUSED, *SERVICE_NAMES)
# The quota resources whose presence requires every container of a counted pod to say
# its amount (Kubernetes' backward-compatible rule for cpu and memory).
REQUIRED_OF_CONTAINERS: Final = ("cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")

TERMINATING = "Terminating"
NOT_TERMINATING = "NotTerminating"
BEST_EFFORT = "BestEffort"
NOT_BEST_EFFORT = "NotBestEffort"
SCOPES: Final = (TERMINATING, NOT_TERMINATING, BEST_EFFORT, NOT_BEST_EFFORT)
# Scopes Kubernetes has that corral refuses by name (it has no pod priority classes or pod affinity).
UNSUPPORTED_SCOPES: Final = ("PriorityClass", "CrossNamespacePodAffinity", "VolumeAttributesClass")
# What a scoped quota may limit: a BestEffort pod has no compute resources to count.
SCOPED_NAMES: Final = {
    TERMINATING: ("pods", *REQUIRED_OF_CONTAINERS),
    NOT_TERMINATING: ("pods", *REQUIRED_OF_CONTAINERS),
    NOT_BEST_EFFORT: ("pods", *REQUIRED_OF_CONTAINERS),
    BEST_EFFORT: ("pods",),
}


def count_name(info: KindInfo) -> str:
    """``count/pods``, ``count/deployments.apps``: the object count resource of a kind."""
    return f"count/{info.plural}.{info.group}" if info.group else f"count/{info.plural}"


def known_name(name: str) -> bool:
    """A resource a quota's spec.hard may limit."""
    if name in STANDARD_NAMES:
        return True
    if name.startswith("count/"):
        return len(name) > len("count/")
    cls, sep, rest = name.partition(STORAGE_CLASS_SUFFIX)
    return bool(sep and cls and rest in ("requests.storage", "persistentvolumeclaims"))


def is_count(name: str) -> bool:
    """Resources counted in whole objects."""
    return name in COUNT_NAMES or name.startswith("count/") or name.endswith("/persistentvolumeclaims")


# -- usage ---------------------------------------------------------------------------


def object_usage(obj: Message, now: datetime) -> Usage:
    """What `obj` uses of every quota resource it counts towards (zeros left out)."""
    info = info_of(obj)
    usage: Usage = {count_name(info): Fraction(1)}
    if isinstance(obj, pod_pb2.Pod):
        usage.update(pod_usage(obj, now))
        return usage
    legacy = LEGACY_COUNTS.get(info.kind)
    if legacy is not None:
        usage[legacy] = Fraction(1)
    if isinstance(obj, service_pb2.Service):
        usage.update(service_usage(obj.spec))
    elif isinstance(obj, storage_pb2.PersistentVolumeClaim):
        usage.update(claim_usage(obj.spec.storage_class_name, obj.spec.resources.requests.get("storage")))
    return {name: amount for name, amount in usage.items() if amount}


def pod_counts(pod: pod_pb2.Pod, now: datetime) -> bool:
    """The pod counts towards `pods` and compute: not finished, not past its deletion deadline."""
    if is_terminal(pod):
        return False
    m = pod.metadata
    if m.HasField("deletion_timestamp") and m.HasField("deletion_grace_period_seconds"):
        deadline = m.deletion_timestamp.ToDatetime(tzinfo=UTC) + timedelta(seconds=m.deletion_grace_period_seconds)
        return now <= deadline
    return True


def pod_usage(pod: pod_pb2.Pod, now: datetime) -> Usage:
    """`pods` and the compute resources of a pod that counts (see `pod_counts`)."""
    if not pod_counts(pod, now):
        return {}
    return {"pods": Fraction(1), **compute_usage(pod_amounts(pod.spec, requests=True), pod_amounts(pod.spec))}


def compute_usage(requests: Mapping[str, Fraction], limits: Mapping[str, Fraction]) -> Usage:
    """Requests as `cpu` and `requests.cpu`, limits as `limits.cpu` (memory, ephemeral-storage alike)."""
    usage: Usage = {}
    for name in COMPUTE:
        if name in requests:
            usage[name] = usage[f"requests.{name}"] = requests[name]
        if name in limits:
            usage[f"limits.{name}"] = limits[name]
    return usage


def container_amounts(container: pod_pb2.Container, *, requests: bool = False) -> dict[str, Fraction]:
    """A container's requests (a limit stands in for a missing request) or limits, parsed."""
    values = effective_requests(container.resources) if requests else container.resources.limits
    return {name: parse_quantity(text) for name, text in values.items() if name in COMPUTE}


def pod_amounts(spec: pod_pb2.PodSpec, *, requests: bool = False) -> dict[str, Fraction]:
    """The pod's requests or limits, by Kubernetes' formula (`protos.pods.pod_resources`)."""
    return pod_resources(spec, lambda c: container_amounts(c, requests=requests), Fraction(0))


def service_usage(spec: service_pb2.ServiceSpec) -> Usage:
    """A NodePort Service takes one node port per port; a LoadBalancer one load balancer too, and its
    node ports unless allocateLoadBalancerNodePorts is false."""
    usage: Usage = {}
    lb_node_ports = not spec.HasField("allocate_load_balancer_node_ports") or spec.allocate_load_balancer_node_ports
    if spec.type == "NodePort" or (spec.type == "LoadBalancer" and lb_node_ports):
        usage["services.nodeports"] = Fraction(len(spec.ports))
    if spec.type == "LoadBalancer":
        usage["services.loadbalancers"] = Fraction(1)
    return usage


def claim_usage(storage_class: str, storage: str | None) -> Usage:
    """A claim's requested storage, in total and for its storage class."""
    usage: Usage = {}
    amount = parse_quantity(storage) if storage else Fraction(0)
    usage["requests.storage"] = amount
    if storage_class:
        usage[f"{storage_class}{STORAGE_CLASS_SUFFIX}requests.storage"] = amount
        usage[f"{storage_class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"] = Fraction(1)
    return usage


# -- scopes ----------------------------------------------------------------------------


def quota_scopes(spec: quota_pb2.ResourceQuotaSpec) -> list[str]:
    """The scopes of `spec.scopes` and `spec.scopeSelector` (whose operators are all Exists)."""
    return [*spec.scopes, *(e.scope_name for e in spec.scope_selector.match_expressions)]


def is_best_effort(spec: pod_pb2.PodSpec) -> bool:
    """No container requests or limits cpu or memory (Kubernetes' BestEffort QoS class)."""
    containers = [*spec.containers, *spec.init_containers]
    return not any(
        name in ("cpu", "memory") for c in containers for name in (*c.resources.requests, *c.resources.limits)
    )


def has_deadline(spec: pod_pb2.PodSpec) -> bool:
    """activeDeadlineSeconds is set (the Terminating scope), where the pod model has it."""
    present: Any = spec
    return "active_deadline_seconds" in spec.DESCRIPTOR.fields_by_name and bool(
        present.HasField("active_deadline_seconds")
    )


def matches_scope(scope: str, pod: pod_pb2.Pod) -> bool:
    if scope == TERMINATING:
        return has_deadline(pod.spec)
    if scope == NOT_TERMINATING:
        return not has_deadline(pod.spec)
    if scope == BEST_EFFORT:
        return is_best_effort(pod.spec)
    if scope == NOT_BEST_EFFORT:
        return not is_best_effort(pod.spec)
    return False


def quota_matches(spec: quota_pb2.ResourceQuotaSpec, obj: Message) -> bool:
    """The quota counts `obj`: it has no scopes, or `obj` is a pod in every scope."""
    scopes = quota_scopes(spec)
    if not scopes:
        return True
    return isinstance(obj, pod_pb2.Pod) and all(matches_scope(s, obj) for s in scopes)


def missing_amounts(spec: quota_pb2.ResourceQuotaSpec, pod: pod_pb2.Pod) -> dict[str, list[str]]:
    """Quota resource → the containers that do not say their amount of it, for a quota that
    limits cpu or memory (Kubernetes refuses such pods: `must specify limits.cpu for: web`)."""
    required = [name for name in REQUIRED_OF_CONTAINERS if name in spec.hard]
    missing: dict[str, list[str]] = {}
    for container in [*pod.spec.containers, *pod.spec.init_containers]:
        has = compute_usage(container_amounts(container, requests=True), container_amounts(container))
        for name in required:
            if name not in has:
                missing.setdefault(name, []).append(container.name)
    return missing


# -- arithmetic ------------------------------------------------------------------------


def parse_list(values: Mapping[str, str]) -> Usage:
    """A stored resource list (status.used, spec.hard) as amounts; what is not a quantity is left out."""
    parsed: Usage = {}
    for name, text in values.items():
        try:
            parsed[name] = parse_quantity(text)
        except ValueError:
            continue
    return parsed


def total(usages: Iterable[Mapping[str, Fraction]], names: Iterable[str]) -> Usage:
    """The sum of `usages` over `names` (each present, 0 when nothing uses it)."""
    wanted = list(names)
    summed: Usage = dict.fromkeys(wanted, Fraction(0))
    for usage in usages:
        for name in wanted:
            summed[name] += usage.get(name, Fraction(0))
    return summed


def increase(new: Mapping[str, Fraction], old: Mapping[str, Fraction]) -> Usage:
    """What `new` uses beyond `old`, resource by resource (never negative; zeros left out)."""
    return {name: amount - old.get(name, Fraction(0)) for name, amount in new.items() if amount > old.get(name, 0)}


def formatted(usage: Mapping[str, Fraction], like: Mapping[str, str]) -> dict[str, str]:
    """Amounts as quantity text, binary (Mi, Gi) where the hard limit was written so."""
    return {name: format_quantity(amount, binary=like.get(name, "").endswith("i")) for name, amount in usage.items()}


def pretty(values: Mapping[str, str]) -> str:
    """Kubernetes' resource list in messages: `pods=1,requests.cpu=500m`."""
    return ",".join(f"{name}={values[name]}" for name in sorted(values))


def counted_kind(name: str) -> str | None:
    """The kind whose objects make up quota resource `name`; None when corral has no such objects."""
    if name == "pods" or name in POD_COMPUTE_NAMES:
        return "Pod"
    if name in SERVICE_NAMES:
        return "Service"
    for kind, legacy in LEGACY_COUNTS.items():
        if name == legacy:
            return kind
    if name in STORAGE_NAMES or STORAGE_CLASS_SUFFIX in name:
        return "PersistentVolumeClaim"
    if name.startswith("count/"):
        try:
            info = resolve(name.removeprefix("count/"))
        except UnknownKindError:
            return None
        return info.kind if count_name(info) == name else None
    return None


def matched_names(hard: Iterable[str], kind: str) -> list[str]:
    """The resources of a quota's hard limits that objects of `kind` make up."""
    return sorted(name for name in hard if counted_kind(name) == kind)
