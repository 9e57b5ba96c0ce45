"""DaemonSet field values and defaults, and what a DaemonSet puts into each of its pods. Pure.

A DaemonSet's pod for node N (as Kubernetes makes it) carries the template,
the label `controller-revision-hash: <template hash>`, the tolerations every
daemon pod gets (`with_default_tolerations`), and required node affinity to N
alone: each term of the template's required node affinity with its
matchFields replaced by `metadata.name In [N]`, or one such term when the
template has none (`with_node_affinity`). The scheduler then binds it to N,
checking resources and ports as for any pod.
"""

from __future__ import annotations

from typing import Final

from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.deployments import template_hash
from protos.wellknown import (
    NODE_NAME_FIELD,
    TAINT_DISK_PRESSURE,
    TAINT_MEMORY_PRESSURE,
    TAINT_NETWORK_UNAVAILABLE,
    TAINT_NOT_READY,
    TAINT_PID_PRESSURE,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
)

# spec.updateStrategy.type
ROLLING_UPDATE: Final = "RollingUpdate"
ON_DELETE: Final = "OnDelete"
STRATEGIES: Final = (ROLLING_UPDATE, ON_DELETE)

DEFAULT_MAX_UNAVAILABLE: Final = 1
DEFAULT_MAX_SURGE: Final = 0
DEFAULT_REVISION_HISTORY_LIMIT: Final = 10

NO_EXECUTE: Final = "NoExecute"
NO_SCHEDULE: Final = "NoSchedule"

# Kubernetes' DaemonSet tolerations: a daemon pod stays on a node that is not
# ready or unreachable (no tolerationSeconds), and is placed on nodes under
# resource pressure and on cordoned nodes.
_DEFAULT_TOLERATIONS: Final = (
    (TAINT_NOT_READY, NO_EXECUTE),
    (TAINT_UNREACHABLE, NO_EXECUTE),
    (TAINT_DISK_PRESSURE, NO_SCHEDULE),
    (TAINT_MEMORY_PRESSURE, NO_SCHEDULE),
    (TAINT_PID_PRESSURE, NO_SCHEDULE),
    (TAINT_UNSCHEDULABLE, NO_SCHEDULE),
)
# Added for pods on the host's network only.
_HOST_NETWORK_TOLERATIONS: Final = ((TAINT_NETWORK_UNAVAILABLE, NO_SCHEDULE),)


def revision(ds: workloads_pb2.DaemonSet) -> str:
    """The hash of the set's current template (its pods' controller-revision-hash)."""
    return template_hash(ds.spec.template, ds.status.collision_count)


def with_default_tolerations(spec: pod_pb2.PodSpec) -> pod_pb2.PodSpec:
    """A copy of `spec` with the DaemonSet tolerations: each replaces one of the same key and
    effect (Kubernetes' AddOrUpdateTolerationInPodSpec)."""
    copy = pod_pb2.PodSpec()
    copy.CopyFrom(spec)
    extra = _DEFAULT_TOLERATIONS + (_HOST_NETWORK_TOLERATIONS if spec.host_network else ())
    for key, effect in extra:
        wanted = pod_pb2.Toleration(key=key, operator="Exists", effect=effect)
        kept = [t for t in copy.tolerations if (t.key, t.effect) != (key, effect)]
        del copy.tolerations[:]
        copy.tolerations.extend([*kept, wanted])
    return copy


def with_node_affinity(spec: pod_pb2.PodSpec, node: str) -> pod_pb2.PodSpec:
    """A copy of `spec` whose required node affinity also asks for the node `node` by name
    (Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity)."""
    copy = pod_pb2.PodSpec()
    copy.CopyFrom(spec)
    required = copy.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    if not required.node_selector_terms:
        required.node_selector_terms.add()
    for term in required.node_selector_terms:
        del term.match_fields[:]
        term.match_fields.add(key=NODE_NAME_FIELD, operator="In", values=[node])
    return copy


def node_of(pod: pod_pb2.Pod) -> str:
    """The node a daemon pod is for: its binding, or the node its affinity names ("" if none)."""
    if pod.spec.node_name:
        return pod.spec.node_name
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    for term in required.node_selector_terms:
        for req in term.match_fields:
            if req.key == NODE_NAME_FIELD and req.operator == "In" and len(req.values) == 1:
                return req.values[0]
    return ""
