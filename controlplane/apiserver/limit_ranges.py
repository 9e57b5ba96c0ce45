"""LimitRanges applied to new pods and claims, as Kubernetes' LimitRanger
admission plugin applies them. Pure code: no I/O.

At a pod's creation (never at an update: a pod's resources do not change):

1. `fill_defaults`: every container (and init container) gets the Container
   items' `default` as limits and `defaultRequest` as requests for each
   resource it does not set itself; the pod is annotated with what was filled
   (`kubernetes.io/limit-ranger`). A resource with only a limit already
   requests its limit, as in Kubernetes, so no default request is added to it.
2. `pod_violations`: per container, `min` (the request, and the limit if set,
   must reach it), `max` (a limit is required and must not exceed it, nor may
   the request) and `maxLimitRequestRatio`; per pod (type Pod), the same over
   the pod's summed requests and limits.

`claim_violations` checks a PersistentVolumeClaim's requested storage against
the PersistentVolumeClaim items' `min` and `max`.

The messages are Kubernetes' own (`maximum cpu usage per Container is 500m,
but limit is 1`), each with the field path it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction

from controlplane.apiserver.errors import Cause
from protos.corral.v1 import pod_pb2, quota_pb2
from protos.pods import effective_requests
from protos.quantity import format_quantity, parse_quantity
from protos.quota import pod_amounts
from protos.wellknown import LIMIT_RANGER

CONTAINER = "Container"
POD = "Pod"
CLAIM = "PersistentVolumeClaim"


def _containers(spec: pod_pb2.PodSpec) -> Iterator[tuple[str, str, pod_pb2.Container]]:
    """Each container with its path and the word kubectl uses for it in the annotation."""
    for i, c in enumerate(spec.containers):
        yield f"spec.containers[{i}]", "container", c
    for i, c in enumerate(spec.init_containers):
        yield f"spec.initContainers[{i}]", "init container", c


def _items(ranges: Iterable[quota_pb2.LimitRange], kind: str) -> Iterator[quota_pb2.LimitRangeItem]:
    for lr in sorted(ranges, key=lambda r: r.metadata.name):
        yield from (item for item in lr.spec.limits if item.type == kind)


# -- defaults -------------------------------------------------------------------------


def fill_defaults(pod: pod_pb2.Pod, ranges: Iterable[quota_pb2.LimitRange]) -> bool:
    """Fill missing requests and limits from the Container items' defaults; True if any was."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    for item in _items(ranges, CONTAINER):
        limits.update(item.default)
        requests.update(item.default_request)
    if not limits and not requests:
        return False
    notes: list[str] = []
    for _, word, container in _containers(pod.spec):
        res = container.resources
        had = effective_requests(res)
        set_limits = sorted(name for name in limits if name not in res.limits)
        for name in set_limits:
            res.limits[name] = limits[name]
        set_requests = sorted(name for name in requests if name not in had)
        for name in set_requests:
            res.requests[name] = requests[name]
        if set_requests:
            notes.append(f"{', '.join(set_requests)} request for {word} {container.name}")
        if set_limits:
            notes.append(f"{', '.join(set_limits)} limit for {word} {container.name}")
    if not notes:
        return False
    pod.metadata.annotations[LIMIT_RANGER] = "LimitRanger plugin set: " + "; ".join(notes)
    return True


# -- checks -----------------------------------------------------------------------------


def pod_violations(pod: pod_pb2.Pod, ranges: Iterable[quota_pb2.LimitRange]) -> list[Cause]:
    """What the pod's containers, and the pod as a whole, ask for outside the ranges."""
    ranges = list(ranges)
    causes: list[Cause] = []
    for item in _items(ranges, CONTAINER):
        for path, _, container in _containers(pod.spec):
            res = container.resources
            causes += _bounds(item, CONTAINER, f"{path}.resources", effective_requests(res), res.limits)
    pod_items = list(_items(ranges, POD))
    if pod_items:
        requests = {n: format_quantity(v, binary=n != "cpu") for n, v in pod_amounts(pod.spec, requests=True).items()}
        limits = {n: format_quantity(v, binary=n != "cpu") for n, v in pod_amounts(pod.spec).items()}
        for item in pod_items:
            causes += _bounds(item, POD, "spec", requests, limits, per_pod=True)
    return causes


def claim_violations(requests: Mapping[str, str], ranges: Iterable[quota_pb2.LimitRange]) -> list[Cause]:
    """What a claim's `spec.resources.requests` asks outside the PersistentVolumeClaim items' min and max."""
    causes: list[Cause] = []
    path = "spec.resources.requests"
    for item in _items(ranges, CLAIM):
        for name, enforced in sorted(item.min.items()):
            request = requests.get(name)
            if request is None:
                causes.append(Cause(path, _min_message(name, CLAIM, enforced) + ".  No request is specified"))
            elif _parsed(request) < _parsed(enforced):
                causes.append(
                    Cause(f"{path}.{name}", f"{_min_message(name, CLAIM, enforced)}, but request is {request}")
                )
        for name, enforced in sorted(item.max.items()):
            request = requests.get(name)
            if request is None:
                causes.append(Cause(path, _max_message(name, CLAIM, enforced) + ".  No request is specified"))
            elif _parsed(request) > _parsed(enforced):
                causes.append(
                    Cause(f"{path}.{name}", f"{_max_message(name, CLAIM, enforced)}, but request is {request}")
                )
    return causes


def _parsed(text: str) -> Fraction:
    try:
        return parse_quantity(text)
    except ValueError:
        return Fraction(0)


def _min_message(name: str, kind: str, enforced: str) -> str:
    return f"minimum {name} usage per {kind} is {enforced}"


def _max_message(name: str, kind: str, enforced: str) -> str:
    return f"maximum {name} usage per {kind} is {enforced}"


def _bounds(
    item: quota_pb2.LimitRangeItem,
    kind: str,
    path: str,
    requests: Mapping[str, str],
    limits: Mapping[str, str],
    *,
    per_pod: bool = False,
) -> list[Cause]:
    """min, max and maxLimitRequestRatio of one item against one set of requests and limits."""
    causes: list[Cause] = []

    def at(part: str, name: str) -> str:
        return path if per_pod else f"{path}.{part}.{name}"

    for name, enforced in sorted(item.min.items()):
        request, limit = requests.get(name), limits.get(name)
        if request is None:
            causes.append(
                Cause(at("requests", name), f"{_min_message(name, kind, enforced)}.  No request is specified")
            )
        elif _parsed(request) < _parsed(enforced):
            causes.append(
                Cause(at("requests", name), f"{_min_message(name, kind, enforced)}, but request is {request}")
            )
        elif limit is not None and _parsed(limit) < _parsed(enforced):
            causes.append(Cause(at("limits", name), f"{_min_message(name, kind, enforced)}, but limit is {limit}"))
    for name, enforced in sorted(item.max.items()):
        request, limit = requests.get(name), limits.get(name)
        if limit is None:
            causes.append(Cause(at("limits", name), f"{_max_message(name, kind, enforced)}.  No limit is specified"))
        elif _parsed(limit) > _parsed(enforced):
            causes.append(Cause(at("limits", name), f"{_max_message(name, kind, enforced)}, but limit is {limit}"))
        elif request is not None and _parsed(request) > _parsed(enforced):
            causes.append(
                Cause(at("requests", name), f"{_max_message(name, kind, enforced)}, but request is {request}")
            )
    for name, enforced in sorted(item.max_limit_request_ratio.items()):
        causes += _ratio(at("limits", name), name, kind, enforced, requests.get(name), limits.get(name))
    return causes


def _ratio(path: str, name: str, kind: str, enforced: str, request: str | None, limit: str | None) -> list[Cause]:
    head = f"{name} max limit to request ratio per {kind} is {enforced}"
    if request is None or _parsed(request) == 0:
        return [Cause(path, f"{head}, but no request is specified or request is 0")]
    if limit is None or _parsed(limit) == 0:
        return [Cause(path, f"{head}, but no limit is specified or limit is 0")]
    observed = _parsed(limit) / _parsed(request)
    if observed > _parsed(enforced):
        return [Cause(path, f"{head}, but provided ratio is {float(observed):f}")]
    return []
