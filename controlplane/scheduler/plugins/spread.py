"""Score `Spread`: prefer nodes running fewer pods of the pod's owner.

Replicas of one controller (the owner with `controller: true`) spread over
nodes, so losing a node loses few of them. The score is `100 // (1 + n)`
where `n` counts the owner's pods already on the node: 100 when there are
none, 50 for one, 33 for two. A pod without a controller scores 100 everywhere.
"""

from __future__ import annotations

from controlplane.scheduler.framework import MAX_SCORE
from controlplane.scheduler.snapshot import NodeInfo, PodRequest


class Spread:
    name = "Spread"

    def score(self, pod: PodRequest, node: NodeInfo) -> int:
        if not pod.owner_uid:
            return MAX_SCORE
        return MAX_SCORE // (1 + node.pods_per_owner.get(pod.owner_uid, 0))
