"""The persistent volumes of the pods sent to a node, and the volume directories it is to delete.
Pure code: no I/O.

Only the copy of a pod in its own node's assignment set gets, in the pod
annotation `corral.io/claim-paths` (`storage.CLAIM_PATHS`; JSON: volume name
→ directory on the node), the directory of each persistentVolumeClaim volume:
that of the PersistentVolume the claim is bound to, if that volume is on this
node. A claim not bound yet (the volume controller is making its volume), or
bound to a volume of another node, leaves the containers that mount it waiting
with CreateContainerConfigError naming it, as a missing Secret does. The
annotation is always rewritten: a value a user put there is never sent.

A node's deletions are the Released volumes with reclaimPolicy Delete that the
local-path provisioner made on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

from protos import storage as st
from protos.corral.v1 import node_service_pb2, pod_pb2, storage_pb2
from protos.wellknown import CONFIG_ERRORS

ClaimLookup = Callable[[str, str], storage_pb2.PersistentVolumeClaim | None]
VolumeLookup = Callable[[str], storage_pb2.PersistentVolume | None]


def _path_or_error(
    namespace: str, claim_name: str, node: str, claims: ClaimLookup, volumes: VolumeLookup
) -> tuple[str, str]:
    """(the directory, "") or ("", why the volume cannot be mounted yet)."""
    shown = f'persistentvolumeclaim "{claim_name}"'
    claim = claims(namespace, claim_name)
    if claim is None:
        return "", f"{shown} not found"
    if not claim.spec.volume_name or claim.status.phase != st.BOUND:
        return "", f"{shown} is not bound yet"
    pv = volumes(claim.spec.volume_name)
    if pv is None:
        return "", f'{shown} is bound to persistentvolume "{claim.spec.volume_name}", which is gone'
    where = st.volume_node(pv)
    if where and where != node:
        return "", f'{shown} is on node "{where}", not on this node'
    return st.volume_path(pv), ""


def resolve_claims(pod: pod_pb2.Pod, node: str, claims: ClaimLookup, volumes: VolumeLookup) -> tuple[pod_pb2.Pod, str]:
    """The pod as its node gets it (directories in CLAIM_PATHS, problems in CONFIG_ERRORS) and a
    digest of what was resolved; the pod itself when it has no persistentVolumeClaim volumes."""
    names = st.claim_names(pod.spec)
    if not names and st.CLAIM_PATHS not in pod.metadata.annotations:
        return pod, ""
    out = pod_pb2.Pod()
    out.CopyFrom(pod)
    out.metadata.annotations.pop(st.CLAIM_PATHS, None)
    paths: dict[str, str] = {}
    problems: dict[str, str] = {}
    for volume, claim in names:
        path, problem = _path_or_error(pod.metadata.namespace, claim, node, claims, volumes)
        if path:
            paths[volume] = path
        else:
            problems[volume] = problem
    if paths:
        out.metadata.annotations[st.CLAIM_PATHS] = json.dumps(paths, sort_keys=True)
    if problems:
        errors = json.loads(out.metadata.annotations.get(CONFIG_ERRORS, "{}") or "{}")
        for container in out.spec.containers:
            mounted = [problems[m.name] for m in container.volume_mounts if m.name in problems]
            if mounted and container.name not in errors:
                errors[container.name] = mounted[0]
        if errors:
            out.metadata.annotations[CONFIG_ERRORS] = json.dumps(errors, sort_keys=True)
    digest = hashlib.sha256(json.dumps([paths, problems], sort_keys=True).encode()).hexdigest()[:16]
    return out, digest


def deletions(node: str, volumes: Iterable[storage_pb2.PersistentVolume]) -> list[node_service_pb2.VolumeDeletion]:
    """The volume directories `node` is to delete, by name."""
    return sorted(
        (
            node_service_pb2.VolumeDeletion(name=pv.metadata.name, uid=pv.metadata.uid, path=st.volume_path(pv))
            for pv in volumes
            if st.pending_deletion(pv) and st.volume_node(pv) == node
        ),
        key=lambda d: d.name,
    )
