"""Downward API variables: `env[].valueFrom.fieldRef`, read when a container starts. Pure code.

As the kubelet does, a variable takes the pod's field at the container's
start; a later change (a label edited) reaches the next start only.

- metadata.name, metadata.namespace, metadata.uid
- metadata.labels['key'], metadata.annotations['key'] (empty when absent)
- spec.nodeName: the node the agent runs as
- spec.serviceAccountName
- status.hostIP: the node's address
- status.podIP: the pod's address as the agent last reported it, or the node's
  address before the pod has one (a pod's published ports are reached there)

The API server admits no other path (`apiserver.pod_fields`).

`resourceFieldRef` gives a container's (by default the variable's own
container's) request or limit of cpu, memory or ephemeral-storage, divided by
the divisor (default 1) and rounded up, as the kubelet does: cpu in whole
divisors of cores ("1" or "1m"), memory in bytes. An unset limit is the
node's allocatable amount; an unset request is the limit when one is set
(Kubernetes' defaulting), else 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from protos import quantity
from protos.corral.v1 import pod_pb2
from protos.pods import every_container

_KEYED = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


@dataclass(frozen=True)
class PodPlace:
    """What the agent knows of where the pod runs."""

    node_name: str
    host_ip: str
    # The node's allocatable resources ("cpu": "2000m", ...): an unset limit's value.
    allocatable: Mapping[str, str] = field(default_factory=dict)


def field_value(pod: pod_pb2.Pod, field_path: str, place: PodPlace) -> str:
    """The value of one downward API field of the pod ("" for a path the API would not admit)."""
    meta = pod.metadata
    keyed = _KEYED.match(field_path)
    if keyed:
        values = meta.labels if keyed[1] == "labels" else meta.annotations
        return values.get(keyed[2], "")
    simple = {
        "metadata.name": meta.name,
        "metadata.namespace": meta.namespace,
        "metadata.uid": meta.uid,
        "spec.nodeName": pod.spec.node_name or place.node_name,
        "spec.serviceAccountName": pod.spec.service_account_name or pod.spec.service_account,
        "status.hostIP": place.host_ip,
        "status.podIP": pod.status.pod_ip or place.host_ip,
    }
    return simple.get(field_path, "")


def env_values(pod: pod_pb2.Pod, container: pod_pb2.Container, place: PodPlace) -> dict[str, str]:
    """The container's `env` as variables: values as written (or as the control plane resolved
    them from Secrets and ConfigMaps), fieldRef entries read from the pod."""
    values: dict[str, str] = {}
    for env in container.env:
        if env.value_from.HasField("field_ref"):
            values[env.name] = field_value(pod, env.value_from.field_ref.field_path, place)
        elif env.value_from.HasField("resource_field_ref"):
            values[env.name] = resource_value(pod, container, env.value_from.resource_field_ref, place)
        else:
            values[env.name] = env.value
    return values


def resource_value(
    pod: pod_pb2.Pod, container: pod_pb2.Container, ref: pod_pb2.ResourceFieldSelector, place: PodPlace
) -> str:
    """A container's request or limit as the kubelet writes it into a variable."""
    named = next((c for _, c in every_container(pod.spec) if c.name == ref.container_name), None)
    target = named if ref.container_name and named is not None else container
    kind, _, resource = ref.resource.partition(".")
    requests, limits = target.resources.requests, target.resources.limits
    if kind == "limits":
        text = limits.get(resource) or place.allocatable.get(resource, "0")
    else:
        text = requests.get(resource) or limits.get(resource) or "0"
    divisor = ref.divisor or "1"
    try:
        if resource == "cpu":
            return str(math.ceil(Fraction(quantity.cpu_millis(text), quantity.cpu_millis(divisor))))
        return str(math.ceil(Fraction(quantity.memory_bytes(text), quantity.memory_bytes(divisor))))
    except (ValueError, ZeroDivisionError):  # the API admits neither; a node's own figures are quantities
        return ""
