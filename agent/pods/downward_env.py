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
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protos.corral.v1 import pod_pb2

_KEYED = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


@dataclass(frozen=True)
class PodPlace:
    """What the agent knows of where the pod runs."""

    node_name: str
    host_ip: str


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
        else:
            values[env.name] = env.value
    return values
