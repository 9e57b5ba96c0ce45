"""Filter `NodeSelector`: the pod's `nodeSelector` and required node affinity.

Both must hold. `nodeSelector`: every label must be on the node with exactly
that value. Required node affinity (as Kubernetes): the terms are ORed, the
requirements in a term ANDed, and a term with no requirements matches no
node. Operators:

- `In` / `NotIn`: the label's value is (is not) one of the values; `NotIn`
  also holds when the label is absent.
- `Exists` / `DoesNotExist`: the label is (is not) present.
- `Gt` / `Lt`: the label's value and the single value are integers and the
  label's is greater (less); otherwise the requirement does not hold.

A requirement of a term's `matchFields` is on the node's fields rather than
its labels; the only field is `metadata.name` (a DaemonSet's pod names its
node this way, as in Kubernetes).

A pod without affinity terms is not constrained by them.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.scheduler.framework import SUCCESS, Status
from controlplane.scheduler.snapshot import NodeInfo, PodRequest, Requirement, Term
from protos.wellknown import NODE_NAME_FIELD

MISMATCH = "didn't match node selector"


class NodeSelector:
    name = "NodeSelector"

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        selected = all(node.labels.get(k) == v for k, v in pod.node_selector.items())
        if selected and affinity_matches(pod.affinity_terms, node.labels, node.name):
            return SUCCESS
        return Status.reject(MISMATCH)


def affinity_matches(terms: tuple[Term, ...], labels: Mapping[str, str], name: str) -> bool:
    """Whether the node `name` with `labels` satisfies required node affinity `terms` (none: always)."""
    if not terms:
        return True
    fields = {NODE_NAME_FIELD: name}
    return any(term and all(requirement_matches(r, fields if r.on_field else labels) for r in term) for term in terms)


def requirement_matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    value = labels.get(req.key)
    match req.operator:
        case "In":
            return value is not None and value in req.values
        case "NotIn":
            return value is None or value not in req.values
        case "Exists":
            return value is not None
        case "DoesNotExist":
            return value is None
        case "Gt" | "Lt":
            return _compare(req, value)
        case _:
            return False


def _compare(req: Requirement, value: str | None) -> bool:
    if value is None or len(req.values) != 1:
        return False
    try:
        have, bound = int(value), int(req.values[0])
    except ValueError:
        return False
    return have > bound if req.operator == "Gt" else have < bound
