"""Filter `VolumeBinding`: the pod's persistent volumes are on (or fit on) the node.

The pod's `VolumeNeeds` (`scheduler.volumes`) say it all: a problem rejects
every node with that reason; each volume's node affinity must hold on the
node ("had volume node affinity conflict: persistentvolumeclaim "data" is on
node "n1""); the claims the local-path provisioner will make must fit in the
node's free disk, when the node reports it.
"""

from __future__ import annotations

from controlplane.scheduler.framework import SUCCESS, Status
from controlplane.scheduler.plugins.node_selector import affinity_matches
from controlplane.scheduler.snapshot import NO_VOLUMES, NodeInfo, PodRequest
from protos.wellknown import HOSTNAME

CONFLICT = "had volume node affinity conflict"
NO_ROOM = "did not have enough free storage"


class VolumeBinding:
    name = "VolumeBinding"

    def filter(self, pod: PodRequest, node: NodeInfo) -> Status:
        needs = pod.volumes
        if needs is NO_VOLUMES:  # most pods
            return SUCCESS
        if needs.problem:
            return Status.reject(needs.problem)
        if needs.node_terms:
            labels = {HOSTNAME: node.name, **node.labels}  # a node without the label is named by its name
            for what, terms in needs.node_terms:
                if not affinity_matches(terms, labels, node.name):
                    return Status.reject(f"{CONFLICT}: {what}")
        if needs.storage_bytes and node.storage_free is not None and needs.storage_bytes > node.storage_free:
            return Status.reject(NO_ROOM)
        return SUCCESS
