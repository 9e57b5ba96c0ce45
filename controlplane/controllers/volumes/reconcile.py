"""The volume controller's decisions, pure: binding claims to volumes, the
local-path provisioner, reclaim, and the end of protected deletions.

A claim (`plan_claim`):

1. terminating (deleted while a pod used it) and no unfinished pod uses it
   any more: delete it;
2. a volume whose claimRef names it (by uid) already exists: bind the claim to
   it (the volume's side first, so a crash between the writes is finished by
   the next sync);
3. bound to a volume that is gone: phase Lost;
4. unbound, without storageClassName, and a class is default now: it gets that
   class (Kubernetes' retroactive default StorageClass assignment);
5. unbound: a matching Available volume — same class, every access mode,
   enough capacity, the claim's selector, and for WaitForFirstConsumer one on
   the node of its first pod — the smallest that fits (Kubernetes' binder);
   else, for a WaitForFirstConsumer class of the local-path provisioner, once
   a pod using it is bound to a node that reported its volume root: a new
   volume there (`pvc-<claim uid>`, a directory `<root>/pvc-<uid>_<ns>_<name>`,
   nodeAffinity to the node, the class's reclaimPolicy), bound to the claim;
   else it stays Pending with the event Kubernetes shows.

A volume (`plan_volume`): new → Available; Bound whose claim is gone (by uid)
→ Released (its claimRef stays, as in Kubernetes); a Released volume with
reclaimPolicy Delete that the local-path provisioner made is deleted by its
node (the node API hands the directory to the agent and removes the object
once the agent reports it gone); one it did not make cannot be deleted by
corral → Failed; a terminating volume no longer Bound is removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from controlplane.apiserver.labels import from_label_selector
from controlplane.apiserver.storage import default_class_name
from controlplane.scheduler.plugins.node_selector import affinity_matches
from controlplane.scheduler.volumes import volume_terms
from protos import storage as st
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2
from protos.wellknown import HOSTNAME

WAITING = "waiting for first consumer to be created before binding"
NO_CLASS = "no persistent volumes available for this claim and no storage class is set"


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class ClaimPlan:
    delete: bool = False
    # Write the volume (its claimRef and phase Bound), then the claim (volumeName, phase Bound).
    bind_volume: storage_pb2.PersistentVolume | None = None
    claim: storage_pb2.PersistentVolumeClaim | None = None
    create: storage_pb2.PersistentVolume | None = None
    events: tuple[Event, ...] = ()
    # Look again after this many seconds (waiting for a node to report its volume root).
    retry: float | None = None


@dataclass(frozen=True)
class VolumePlan:
    remove: bool = False
    status: storage_pb2.PersistentVolume | None = None
    events: tuple[Event, ...] = field(default=())


@dataclass(frozen=True)
class Consumer:
    """The node of the first unfinished pod bound with the claim, and that node's labels and volume root."""

    node: str
    labels: Mapping[str, str]
    volume_root: str


_T = TypeVar("_T", storage_pb2.PersistentVolume, storage_pb2.PersistentVolumeClaim)


def _copy(obj: _T) -> _T:
    out = type(obj)()
    out.CopyFrom(obj)
    return out


def _set_volume_phase(pv: storage_pb2.PersistentVolume, phase: str, now: datetime, message: str = "") -> None:
    pv.status.phase = phase
    pv.status.message = message
    pv.status.last_phase_transition_time.FromDatetime(now.replace(microsecond=0))


def claim_ref(claim: storage_pb2.PersistentVolumeClaim) -> meta_pb2.ObjectReference:
    return meta_pb2.ObjectReference(
        api_version="v1",
        kind="PersistentVolumeClaim",
        namespace=claim.metadata.namespace,
        name=claim.metadata.name,
        uid=claim.metadata.uid,
    )


def refers_to(pv: storage_pb2.PersistentVolume, claim: storage_pb2.PersistentVolumeClaim) -> bool:
    ref = pv.spec.claim_ref
    return (
        pv.spec.HasField("claim_ref")
        and ref.namespace == claim.metadata.namespace
        and ref.name == claim.metadata.name
        and ref.uid in ("", claim.metadata.uid)
    )


def matches(
    pv: storage_pb2.PersistentVolume, claim: storage_pb2.PersistentVolumeClaim, node: Consumer | None = None
) -> bool:
    """Whether `pv` can serve `claim` (on `node`, for WaitForFirstConsumer)."""
    if pv.metadata.HasField("deletion_timestamp") or pv.status.phase not in (st.AVAILABLE, st.PENDING, ""):
        return False
    if pv.spec.HasField("claim_ref") and not refers_to(pv, claim):
        return False
    if pv.spec.storage_class_name != st.class_of(claim):
        return False
    if not set(claim.spec.access_modes) <= set(pv.spec.access_modes):
        return False
    if st.capacity_bytes(pv) < st.requested_bytes(claim):
        return False
    if (pv.spec.volume_mode or st.FILESYSTEM) != (claim.spec.volume_mode or st.FILESYSTEM):
        return False
    if claim.spec.HasField("selector") and not from_label_selector(claim.spec.selector).matches(pv.metadata.labels):
        return False
    if node is not None and pv.spec.HasField("node_affinity"):
        return affinity_matches(volume_terms(pv), {HOSTNAME: node.node, **node.labels}, node.node)
    return True


def best_match(
    claim: storage_pb2.PersistentVolumeClaim,
    volumes: Sequence[storage_pb2.PersistentVolume],
    node: Consumer | None = None,
) -> storage_pb2.PersistentVolume | None:
    """The smallest volume that fits (a pre-bound one — claim.spec.volumeName — or none)."""
    if claim.spec.volume_name:
        named = [v for v in volumes if v.metadata.name == claim.spec.volume_name]
        return named[0] if named and matches(named[0], claim, node) else None
    fitting = [v for v in volumes if matches(v, claim, node)]
    if not fitting:
        return None
    # A volume reserved for this claim (claimRef set by hand) first, then the smallest.
    return min(fitting, key=lambda v: (not v.spec.HasField("claim_ref"), st.capacity_bytes(v), v.metadata.name))


def provisioned_volume(
    claim: storage_pb2.PersistentVolumeClaim, sc: storage_pb2.StorageClass, node: Consumer
) -> storage_pb2.PersistentVolume:
    """The local-path provisioner's volume for `claim` on `node` (phase set by the API: Pending)."""
    m = claim.metadata
    name = f"pvc-{m.uid}"
    pv = storage_pb2.PersistentVolume(
        metadata=meta_pb2.ObjectMeta(name=name, annotations={st.PROVISIONED_BY: sc.provisioner}),
    )
    spec = pv.spec
    spec.capacity["storage"] = claim.spec.resources.requests.get("storage", "0")
    spec.access_modes.extend(claim.spec.access_modes)
    spec.persistent_volume_reclaim_policy = sc.reclaim_policy or st.DELETE
    spec.storage_class_name = sc.metadata.name
    spec.volume_mode = st.FILESYSTEM
    spec.claim_ref.CopyFrom(claim_ref(claim))
    spec.host_path.path = f"{node.volume_root.rstrip('/')}/{name}_{m.namespace}_{m.name}"
    spec.host_path.type = "DirectoryOrCreate"
    term = spec.node_affinity.required.node_selector_terms.add()
    term.match_expressions.add(key=HOSTNAME, operator="In", values=[node.labels.get(HOSTNAME, node.node)])
    return pv


def _bind(
    claim: storage_pb2.PersistentVolumeClaim, pv: storage_pb2.PersistentVolume, now: datetime, node: Consumer | None
) -> ClaimPlan:
    bind_volume = None
    if not refers_to(pv, claim) or pv.spec.claim_ref.uid != claim.metadata.uid or pv.status.phase != st.BOUND:
        bind_volume = _copy(pv)
        bind_volume.spec.claim_ref.CopyFrom(claim_ref(claim))
        _set_volume_phase(bind_volume, st.BOUND, now)
    bound = _copy(claim)
    bound.spec.volume_name = pv.metadata.name
    bound.status.phase = st.BOUND
    del bound.status.access_modes[:]
    bound.status.access_modes.extend(pv.spec.access_modes)
    bound.status.capacity.clear()
    bound.status.capacity.update(pv.spec.capacity)
    bound.metadata.annotations[st.BOUND_BY_CONTROLLER] = "yes"
    where = node.node if node is not None else st.volume_node(pv)
    if where:
        bound.metadata.annotations[st.SELECTED_NODE] = where
    return ClaimPlan(bind_volume=bind_volume, claim=bound if bound != claim else None)


def plan_claim(
    claim: storage_pb2.PersistentVolumeClaim,
    *,
    volumes: Sequence[storage_pb2.PersistentVolume],
    classes: Mapping[str, storage_pb2.StorageClass],
    users: Sequence[pod_pb2.Pod],
    consumer: Consumer | None,
    now: datetime,
) -> ClaimPlan:
    """What to do for one claim; `users` are the unfinished pods that use it, `consumer`
    the node the first of them is bound to (None: none is bound yet)."""
    if claim.metadata.HasField("deletion_timestamp"):
        return ClaimPlan(delete=not users)
    mine = [v for v in volumes if v.spec.HasField("claim_ref") and v.spec.claim_ref.uid == claim.metadata.uid]
    if claim.spec.volume_name:
        named = [v for v in volumes if v.metadata.name == claim.spec.volume_name]
        if named and refers_to(named[0], claim):
            return _bind(claim, named[0], now, None)
        if not named and claim.status.phase == st.BOUND:
            lost = _copy(claim)
            lost.status.phase = st.LOST
            message = "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
            return ClaimPlan(claim=lost, events=(Event("Warning", "ClaimLost", message),))
    if mine:
        return _bind(claim, min(mine, key=lambda v: v.metadata.name), now, None)
    default = default_class_name(classes.values())
    if not st.has_class(claim) and not claim.spec.volume_name and default is not None:
        # Kubernetes' retroactive default class: a claim made before any class was default gets it now.
        classed = _copy(claim)
        classed.spec.storage_class_name = default
        return ClaimPlan(claim=classed)
    class_name = st.class_of(claim)
    sc = classes.get(class_name) if class_name else None
    if class_name and sc is None:
        message = f'storageclass.storage.k8s.io "{class_name}" not found'
        return ClaimPlan(events=(Event("Warning", "ProvisioningFailed", message),))
    wait = sc is not None and sc.volume_binding_mode == st.WAIT_FOR_FIRST_CONSUMER
    if wait and consumer is None:
        return ClaimPlan(events=(Event("Normal", "WaitForFirstConsumer", WAITING),))
    found = best_match(claim, volumes, consumer if wait else None)
    if found is not None:
        return _bind(claim, found, now, consumer if wait else None)
    return _provision(claim, sc, consumer if wait else None)


def _provision(
    claim: storage_pb2.PersistentVolumeClaim, sc: storage_pb2.StorageClass | None, node: Consumer | None
) -> ClaimPlan:
    if claim.spec.volume_name:
        message = f'volume "{claim.spec.volume_name}" does not exist or cannot serve this claim'
        return ClaimPlan(events=(Event("Normal", "FailedBinding", message),))
    if sc is None:
        return ClaimPlan(events=(Event("Normal", "FailedBinding", NO_CLASS),))
    if sc.provisioner not in st.LOCAL_PROVISIONERS:
        message = (
            f"Waiting for a volume to be created either by the external provisioner '{sc.provisioner}' "
            "or manually by the system administrator (corral runs only the local-path provisioner)."
        )
        return ClaimPlan(events=(Event("Normal", "ExternalProvisioning", message),))
    if node is None:
        message = (
            f"{sc.provisioner} provisions only for volumeBindingMode {st.WAIT_FOR_FIRST_CONSUMER} "
            f'(storageclass "{sc.metadata.name}" is {sc.volume_binding_mode})'
        )
        return ClaimPlan(events=(Event("Warning", "ProvisioningFailed", message),))
    if not node.volume_root:
        message = f'waiting for node "{node.node}" to report where it keeps volumes (is its agent connected?)'
        return ClaimPlan(events=(Event("Normal", "Provisioning", message),), retry=1.0)
    pv = provisioned_volume(claim, sc, node)
    message = f'Successfully provisioned volume {pv.metadata.name} on node "{node.node}"'
    return ClaimPlan(create=pv, events=(Event("Normal", "ProvisioningSucceeded", message),))


def plan_volume(
    pv: storage_pb2.PersistentVolume, claim: storage_pb2.PersistentVolumeClaim | None, *, now: datetime
) -> VolumePlan:
    """What to do for one volume; `claim` is the one its claimRef names (by namespace and name), if any."""
    phase = pv.status.phase
    if pv.metadata.HasField("deletion_timestamp") and phase != st.BOUND:
        return VolumePlan(remove=True)
    has_ref = pv.spec.HasField("claim_ref") and bool(pv.spec.claim_ref.uid)
    claim_gone = has_ref and (claim is None or claim.metadata.uid != pv.spec.claim_ref.uid)
    if phase in ("", st.PENDING) and not has_ref:
        return _phase(pv, st.AVAILABLE, now)
    if phase == st.BOUND and claim_gone:
        return _phase(pv, st.RELEASED, now)
    if phase == st.PENDING and claim_gone:
        return _phase(pv, st.RELEASED, now)
    if (
        phase == st.RELEASED
        and pv.spec.persistent_volume_reclaim_policy == st.DELETE
        and pv.metadata.annotations.get(st.PROVISIONED_BY) not in st.LOCAL_PROVISIONERS
    ):
        message = (
            "corral deletes only the directories its local-path provisioner made: "
            "delete the data and this PersistentVolume yourself"
        )
        failed = _phase(pv, st.FAILED, now, message).status
        return VolumePlan(status=failed, events=(Event("Warning", "VolumeFailedDelete", message),))
    return VolumePlan()


def _phase(pv: storage_pb2.PersistentVolume, phase: str, now: datetime, message: str = "") -> VolumePlan:
    updated = _copy(pv)
    _set_volume_phase(updated, phase, now, message)
    return VolumePlan(status=updated)
