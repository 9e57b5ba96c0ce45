"""What a pod's persistentVolumeClaim volumes ask of a node: pure, from plain lookups.

As Kubernetes' VolumeBinding plugin, for each claim the pod uses:

- missing, or being deleted: the pod can go nowhere now (`persistentvolumeclaim "x" not found`);
- bound: the pod goes where the volume's nodeAffinity allows (a local-path
  volume names one node by kubernetes.io/hostname; if that node is cordoned,
  not ready or gone, the pod stays Pending and the reason names it);
- unbound, WaitForFirstConsumer: anywhere that fits, and where a pod that
  already uses it was bound (its volume is being made there); a node that
  reports its free disk must have room for the claim; for a class corral does
  not provision (`kubernetes.io/no-provisioner`), only the nodes of the
  Available volumes that could serve it ("didn't find available persistent
  volumes to bind");
- unbound, Immediate (or no class): the pod waits for the binder ("pod has unbound
  immediate PersistentVolumeClaims"); a class that does not exist is named.

ReadWriteOncePod: a claim another unfinished pod uses keeps the pod Pending.
ReadWriteOnce on a volume without node affinity (a hand-made hostPath): the
pod goes to the node where another pod uses it, if one does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from controlplane.scheduler.snapshot import NO_VOLUMES, Requirement, Term, VolumeNeeds, node_selector_terms
from protos import storage as st
from protos.corral.v1 import pod_pb2, storage_pb2
from protos.wellknown import HOSTNAME

ClaimLookup = Callable[[str, str], storage_pb2.PersistentVolumeClaim | None]
VolumeLookup = Callable[[str], storage_pb2.PersistentVolume | None]
ClassLookup = Callable[[str], storage_pb2.StorageClass | None]
# The Available volumes that could serve a claim (class, access modes, size, selector), on any node.
Candidates = Callable[[storage_pb2.PersistentVolumeClaim], Sequence[storage_pb2.PersistentVolume]]
# The claim (namespace, name) → the nodes and pod uids of the unfinished pods bound with it.
Users = Mapping[tuple[str, str], list[tuple[str, str]]]

UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NO_VOLUME = "didn't find available persistent volumes to bind"


def _no_candidates(claim: storage_pb2.PersistentVolumeClaim) -> Sequence[storage_pb2.PersistentVolume]:
    return ()


def volume_terms(pv: storage_pb2.PersistentVolume) -> tuple[Term, ...]:
    return node_selector_terms(pv.spec.node_affinity.required)


def on_node(node: str) -> tuple[Term, ...]:
    return ((Requirement(HOSTNAME, "In", (node,)),),)


def volume_needs(
    pod: pod_pb2.Pod,
    claims: ClaimLookup,
    volumes: VolumeLookup,
    classes: ClassLookup,
    users: Users,
    candidates: Candidates = _no_candidates,
) -> VolumeNeeds:
    """The pod's needs; the first problem found wins (one sentence for the user)."""
    names = st.claim_names(pod.spec)
    if not names:
        return NO_VOLUMES
    ns = pod.metadata.namespace
    terms: list[tuple[str, tuple[Term, ...]]] = []
    storage = 0
    for _, name in names:
        claim = claims(ns, name)
        shown = f'persistentvolumeclaim "{name}"'
        if claim is None:
            return VolumeNeeds(problem=f"{shown} not found")
        if claim.metadata.HasField("deletion_timestamp"):
            return VolumeNeeds(problem=f"{shown} is being deleted")
        others = [uid for _, uid in users.get((ns, name), []) if uid != pod.metadata.uid]
        if st.RWOP in claim.spec.access_modes and others:
            return VolumeNeeds(problem=f"{shown} is ReadWriteOncePod and another pod uses it")
        placed = sorted({node for node, uid in users.get((ns, name), []) if uid != pod.metadata.uid})
        if claim.spec.volume_name:
            pv = volumes(claim.spec.volume_name)
            if pv is None:
                return VolumeNeeds(
                    problem=f'{shown} is bound to persistentvolume "{claim.spec.volume_name}", which is gone'
                )
            node = st.volume_node(pv)
            what = f'{shown} is on node "{node}"' if node else f'{shown} is on persistentvolume "{pv.metadata.name}"'
            if pv.spec.HasField("node_affinity"):
                terms.append((what, volume_terms(pv)))
            elif placed and st.RWO in claim.spec.access_modes:  # a hostPath without affinity: one node at a time
                terms.append((f'{shown} is ReadWriteOnce and in use on node "{placed[0]}"', on_node(placed[0])))
            continue
        class_name = st.class_of(claim)
        sc = classes(class_name) if class_name else None
        if class_name and sc is None:
            return VolumeNeeds(problem=f'storageclass.storage.k8s.io "{class_name}" not found')
        if sc is None or sc.volume_binding_mode != st.WAIT_FOR_FIRST_CONSUMER:
            return VolumeNeeds(problem=UNBOUND_IMMEDIATE)
        selected = placed[0] if placed else claim.metadata.annotations.get(st.SELECTED_NODE, "")
        if selected:
            terms.append((f'{shown} is being provisioned on node "{selected}"', on_node(selected)))
        elif sc.provisioner in st.LOCAL_PROVISIONERS:
            storage += st.requested_bytes(claim)
        else:  # no provisioner here: only where an admin made a volume that fits
            found = candidates(claim)
            if not found:
                return VolumeNeeds(problem=f"{NO_VOLUME} ({shown})")
            if all(v.spec.HasField("node_affinity") for v in found):
                anywhere = tuple(t for v in found for t in volume_terms(v))
                terms.append((f"{NO_VOLUME} ({shown})", anywhere))
    return VolumeNeeds(node_terms=tuple(terms), storage_bytes=storage)
