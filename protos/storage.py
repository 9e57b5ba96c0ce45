"""Facts about PersistentVolumeClaims, PersistentVolumes and StorageClasses that
several rooms read: well-known names, phases, the default class, and small pure
helpers (a claim's requested size, the node a volume lives on).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from protos import quantity
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2
from protos.pods import is_terminal
from protos.wellknown import HOSTNAME

# The built-in provisioner (k3s ships rancher.io/local-path; corral's own name
# says which program makes the directories).
LOCAL_PATH_PROVISIONER: Final = "corral.io/local-path"
# The provisioners it answers for (k3s' name too, so k3s manifests work as written).
LOCAL_PROVISIONERS: Final = (LOCAL_PATH_PROVISIONER, "rancher.io/local-path")
DEFAULT_CLASS_NAME: Final = "local-path"
# Kubernetes' names.
IS_DEFAULT_CLASS: Final = "storageclass.kubernetes.io/is-default-class"
BETA_IS_DEFAULT_CLASS: Final = "storageclass.beta.kubernetes.io/is-default-class"
SELECTED_NODE: Final = "volume.kubernetes.io/selected-node"
# Deprecated, still in charts: a claim's class before storageClassName existed.
BETA_CLASS_ANNOTATION: Final = "volume.beta.kubernetes.io/storage-class"
PROVISIONED_BY: Final = "pv.kubernetes.io/provisioned-by"
BOUND_BY_CONTROLLER: Final = "pv.kubernetes.io/bind-completed"
STORAGE_PROVISIONER: Final = "volume.kubernetes.io/storage-provisioner"
# On a Node: the directory its agent keeps persistent volumes under (written by the node API).
VOLUME_ROOT: Final = "corral.io/volume-root"
# On a node's copy of a pod only: each persistentVolumeClaim volume's directory on the node (JSON: volume → path).
CLAIM_PATHS: Final = "corral.io/claim-paths"

# Access modes.
RWO: Final = "ReadWriteOnce"
ROX: Final = "ReadOnlyMany"
RWX: Final = "ReadWriteMany"
RWOP: Final = "ReadWriteOncePod"
ACCESS_MODES: Final = (RWO, ROX, RWX, RWOP)
ACCESS_MODE_SHORT: Final = {RWO: "RWO", ROX: "ROX", RWX: "RWX", RWOP: "RWOP"}

# Binding modes and reclaim policies.
IMMEDIATE: Final = "Immediate"
WAIT_FOR_FIRST_CONSUMER: Final = "WaitForFirstConsumer"
BINDING_MODES: Final = (IMMEDIATE, WAIT_FOR_FIRST_CONSUMER)
RETAIN: Final = "Retain"
DELETE: Final = "Delete"
RECYCLE: Final = "Recycle"
FILESYSTEM: Final = "Filesystem"
BLOCK: Final = "Block"

# Phases.
PENDING: Final = "Pending"
AVAILABLE: Final = "Available"
BOUND: Final = "Bound"
RELEASED: Final = "Released"
FAILED: Final = "Failed"
LOST: Final = "Lost"


def default_class() -> storage_pb2.StorageClass:
    """The StorageClass the control plane creates when there is none of that name."""
    return storage_pb2.StorageClass(
        metadata=meta_pb2.ObjectMeta(name=DEFAULT_CLASS_NAME, annotations={IS_DEFAULT_CLASS: "true"}),
        provisioner=LOCAL_PATH_PROVISIONER,
        reclaim_policy=DELETE,
        volume_binding_mode=WAIT_FOR_FIRST_CONSUMER,
    )


def is_default_class(sc: storage_pb2.StorageClass) -> bool:
    annotations = sc.metadata.annotations
    return annotations.get(IS_DEFAULT_CLASS) == "true" or annotations.get(BETA_IS_DEFAULT_CLASS) == "true"


def requested_bytes(claim: storage_pb2.PersistentVolumeClaim) -> int:
    """The claim's resources.requests.storage in bytes (0: none or malformed)."""
    text = claim.spec.resources.requests.get("storage", "")
    try:
        return quantity.memory_bytes(text) if text else 0
    except ValueError:
        return 0


def capacity_bytes(pv: storage_pb2.PersistentVolume) -> int:
    text = pv.spec.capacity.get("storage", "")
    try:
        return quantity.memory_bytes(text) if text else 0
    except ValueError:
        return 0


def volume_path(pv: storage_pb2.PersistentVolume) -> str:
    """The directory on the node: hostPath or local."""
    if pv.spec.HasField("host_path"):
        return pv.spec.host_path.path
    return pv.spec.local.path


def volume_node(pv: storage_pb2.PersistentVolume) -> str:
    """The one node a volume's nodeAffinity names by kubernetes.io/hostname ("" if not exactly one)."""
    names: set[str] = set()
    for term in pv.spec.node_affinity.required.node_selector_terms:
        for expr in term.match_expressions:
            if expr.key == HOSTNAME and expr.operator == "In":
                names.update(expr.values)
    return next(iter(names)) if len(names) == 1 else ""


def claim_names(spec: pod_pb2.PodSpec) -> list[tuple[str, str]]:
    """(volume name, claim name) for each persistentVolumeClaim volume of a pod spec."""
    return [
        (v.name, v.persistent_volume_claim.claim_name) for v in spec.volumes if v.HasField("persistent_volume_claim")
    ]


def has_class(claim: storage_pb2.PersistentVolumeClaim) -> bool:
    """Whether the claim names a class ("" too): the field, or the deprecated beta annotation charts still write."""
    return claim.spec.HasField("storage_class_name") or BETA_CLASS_ANNOTATION in claim.metadata.annotations


def class_of(claim: storage_pb2.PersistentVolumeClaim) -> str:
    """The claim's class: storageClassName, else the beta annotation (as Kubernetes reads it)."""
    if claim.spec.HasField("storage_class_name"):
        return claim.spec.storage_class_name
    return claim.metadata.annotations.get(BETA_CLASS_ANNOTATION, "")


def uses_claim(pod: pod_pb2.Pod, namespace: str, claim: str) -> bool:
    return pod.metadata.namespace == namespace and any(c == claim for _, c in claim_names(pod.spec))


def claim_users(claim: storage_pb2.PersistentVolumeClaim, pods: Iterable[pod_pb2.Pod]) -> list[pod_pb2.Pod]:
    """The pods that have not finished and use the claim (a terminating pod still does)."""
    ns, name = claim.metadata.namespace, claim.metadata.name
    return [p for p in pods if not is_terminal(p) and uses_claim(p, ns, name)]


def pending_deletion(pv: storage_pb2.PersistentVolume) -> bool:
    """A Released volume whose directory its node is to delete (reclaimPolicy Delete, made by local-path)."""
    return (
        pv.status.phase == RELEASED
        and pv.spec.persistent_volume_reclaim_policy == DELETE
        and pv.metadata.annotations.get(PROVISIONED_BY) in LOCAL_PROVISIONERS
    )
