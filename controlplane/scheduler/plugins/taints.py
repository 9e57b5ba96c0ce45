"""Filter `Taints`: every NoSchedule and NoExecute taint must be tolerated.

PreferNoSchedule taints never filter. Toleration matching is Kubernetes':

- an empty toleration effect matches every effect, otherwise the effects must
  be equal;
- an empty key matches every key (only valid with operator `Exists`),
  otherwise the keys must be equal;
- operator `Exists` matches any value; `Equal` (the default) needs equal values.

The reason names the first untolerated taint: `untolerated taint {key=value:NoSchedule}`.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.scheduler.framework import SUCCESS, Status
from controlplane.scheduler.snapshot import NodeInfo, PodRequest, Taint, Toleration

FILTERING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


class Taints:
    name = "Taints"

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        for taint in node.taints:
            if taint.effect in FILTERING_EFFECTS and not tolerated(taint, pod.tolerations):
                return Status.reject(f"untolerated taint {taint}")
        return SUCCESS


def tolerated(taint: Taint, tolerations: Iterable[Toleration]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Whether one toleration tolerates one taint."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    match toleration.operator:
        case "Exists":
            return True
        case "Equal" | "":
            return toleration.value == taint.value
        case _:
            return False
