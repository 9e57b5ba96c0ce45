"""Warnings for pod spec fields corral stores but does not act on (said at apply, never silent).

Each note is (path relative to the pod spec, message); `corral.manifest` adds
the document's path and prints them as `Warning:` lines.
"""

from __future__ import annotations

from typing import Final

from protos.corral.v1 import pod_pb2
from protos.pods import every_container

PRIORITY_NOTE: Final = "stored only: corral has no PriorityClasses; pods are scheduled and evicted without priority"
POD_AFFINITY_NOTE: Final = (
    "stored only: corral's scheduler does not act on pod affinity or anti-affinity; it spreads a "
    "controller's replicas over nodes by preference, not as a rule (they may share a node)"
)
SPREAD_NOTE: Final = (
    "stored only: corral's scheduler does not act on topologySpreadConstraints; it spreads a "
    "controller's replicas over nodes by preference, not as a rule (they may share a node)"
)
SHARED_PROCESSES_NOTE: Final = "stored only: each container keeps its own process namespace"
PREFERRED_NODE_NOTE: Final = "stored only: corral's scheduler does not score nodes by preferred node affinity"
PULL_SECRETS_NOTE: Final = (
    "stored only: the agent pulls with its node's own Docker credentials (docker login on the node); "
    "registry Secrets are not used"
)
TERMINATION_MESSAGE_NOTE: Final = (
    "stored only: corral writes no termination message file; a stopped container's message is its exit reason"
)


def pod_spec_notes(spec: pod_pb2.PodSpec) -> list[tuple[str, str]]:
    """(path, message) for each field of the pod spec that corral stores without acting on it."""
    notes: list[tuple[str, str]] = []
    if spec.image_pull_secrets:
        notes.append(("imagePullSecrets", PULL_SECRETS_NOTE))
    if spec.priority_class_name:
        notes.append(("priorityClassName", PRIORITY_NOTE))
    affinity = spec.affinity
    for json_name, field in (("podAffinity", "pod_affinity"), ("podAntiAffinity", "pod_anti_affinity")):
        if affinity.HasField(field):  # type: ignore[arg-type]
            notes.append((f"affinity.{json_name}", POD_AFFINITY_NOTE))
    if affinity.node_affinity.preferred_during_scheduling_ignored_during_execution:
        notes.append(("affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution", PREFERRED_NODE_NOTE))
    if spec.topology_spread_constraints:
        notes.append(("topologySpreadConstraints", SPREAD_NOTE))
    if spec.share_process_namespace:
        notes.append(("shareProcessNamespace", SHARED_PROCESSES_NOTE))
    for where, c in every_container(spec):
        if c.termination_message_policy or c.termination_message_path:
            name = "terminationMessagePolicy" if c.termination_message_policy else "terminationMessagePath"
            notes.append((f"{where}.{name}", TERMINATION_MESSAGE_NOTE))
            break  # once per pod spec
    return notes
