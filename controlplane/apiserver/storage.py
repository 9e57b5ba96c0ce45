"""Defaults and validation of PersistentVolumeClaims, PersistentVolumes and
StorageClasses, as Kubernetes defines them. Pure code: no I/O.

What corral cannot do is refused by name rather than accepted and ignored:
`volumeMode: Block` (volumes are directories), `dataSource`/`dataSourceRef`
(no cloning or snapshots), `reclaimPolicy: Recycle` (deprecated in
Kubernetes), volume sources other than hostPath and local.

A claim's storageClassName, when unset, becomes the default class at create
(`ObjectApi`: it reads the classes; here only the pure choice, `default_class_name`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from controlplane.apiserver.problems import Problems
from protos import quantity
from protos import storage as st
from protos.corral.v1 import meta_pb2, pod_pb2, storage_pb2

NameCheck = Callable[[Problems, str, str], None]
SelectorCheck = Callable[[Problems, str, meta_pb2.LabelSelector], None]
AffinityCheck = Callable[[Problems, str, pod_pb2.NodeSelector], None]
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory")
LOCAL_PATH_PARAMETERS: tuple[str, ...] = ()


# -- defaults -------------------------------------------------------------------


def default_claim(claim: storage_pb2.PersistentVolumeClaim) -> None:
    if not claim.spec.HasField("volume_mode"):
        claim.spec.volume_mode = st.FILESYSTEM


def default_volume(pv: storage_pb2.PersistentVolume) -> None:
    """Kubernetes' defaults: Retain (for a volume made by hand) and Filesystem."""
    if not pv.spec.persistent_volume_reclaim_policy:
        pv.spec.persistent_volume_reclaim_policy = st.RETAIN
    if not pv.spec.HasField("volume_mode"):
        pv.spec.volume_mode = st.FILESYSTEM


def default_storage_class(sc: storage_pb2.StorageClass) -> None:
    if not sc.HasField("reclaim_policy"):
        sc.reclaim_policy = st.DELETE
    if not sc.HasField("volume_binding_mode"):
        sc.volume_binding_mode = st.IMMEDIATE


def default_class_name(classes: Iterable[storage_pb2.StorageClass]) -> str | None:
    """The class a claim without storageClassName gets: the newest class marked
    default (Kubernetes picks the newest when several are), None when none is."""
    marked = [sc for sc in classes if st.is_default_class(sc)]
    if not marked:
        return None
    newest = max(marked, key=lambda sc: (sc.metadata.creation_timestamp.ToNanoseconds(), sc.metadata.name))
    return newest.metadata.name


# -- validation -------------------------------------------------------------------


def _access_modes(p: Problems, path: str, modes: Sequence[str]) -> None:
    if not modes:
        p.add(path, f"required: at least one of {', '.join(st.ACCESS_MODES)}")
        return
    for i, mode in enumerate(modes):
        p.one_of(f"{path}[{i}]", mode, st.ACCESS_MODES)
    if st.RWOP in modes and len(modes) > 1:
        p.add(path, "may not use ReadWriteOncePod with other access modes")


def _volume_mode(p: Problems, path: str, mode: str) -> None:
    if mode == st.BLOCK:
        p.add(path, '"Block" is not supported: corral volumes are directories on a node (use "Filesystem")')
    else:
        p.one_of(path, mode, (st.FILESYSTEM,))


def _size(p: Problems, path: str, values: Iterable[tuple[str, str]], *, required: bool) -> None:
    seen = False
    for name, text in values:
        at = f"{path}.{name}"
        if name != "storage":
            p.add(at, f'unknown resource "{name}" (known: storage)')
            continue
        seen = True
        try:
            amount = quantity.memory_bytes(text)
        except ValueError as e:
            p.add(at, str(e))
            continue
        if amount <= 0:
            p.add(at, f'must be greater than zero, got "{text}"')
    if required and not seen:
        p.add(f"{path}.storage", 'required: the size to claim, such as "1Gi"')


def _reclaim_policy(p: Problems, path: str, policy: str) -> None:
    if policy == st.RECYCLE:
        p.add(path, '"Recycle" is deprecated and not supported: use "Delete" or "Retain"')
    else:
        p.one_of(path, policy, (st.RETAIN, st.DELETE))


def validate_claim_spec(
    p: Problems, path: str, spec: storage_pb2.PersistentVolumeClaimSpec, *, name: NameCheck, selector: SelectorCheck
) -> None:
    """Also for a StatefulSet's volumeClaimTemplates (`path` is their spec)."""
    _access_modes(p, f"{path}.accessModes", spec.access_modes)
    _size(p, f"{path}.resources.requests", spec.resources.requests.items(), required=True)
    _size(p, f"{path}.resources.limits", spec.resources.limits.items(), required=False)
    if spec.HasField("volume_mode"):
        _volume_mode(p, f"{path}.volumeMode", spec.volume_mode)
    if spec.HasField("selector"):
        selector(p, f"{path}.selector", spec.selector)
    for field, json_name in (("data_source", "dataSource"), ("data_source_ref", "dataSourceRef")):
        if spec.HasField(field):  # type: ignore[arg-type]
            p.add(
                f"{path}.{json_name}",
                "not supported: corral cannot fill a volume from another claim or a snapshot",
            )
    if spec.HasField("volume_attributes_class_name"):
        p.add(f"{path}.volumeAttributesClassName", "not supported: corral has no VolumeAttributesClasses")
    if spec.storage_class_name:
        name(p, f"{path}.storageClassName", spec.storage_class_name)
    if spec.volume_name:
        name(p, f"{path}.volumeName", spec.volume_name)


def validate_claim_update(
    p: Problems, old: storage_pb2.PersistentVolumeClaim, new: storage_pb2.PersistentVolumeClaim
) -> None:
    """The spec is immutable but for a larger storage request; the binder (or a user) may set
    volumeName once, and a claim without a class may get one (Kubernetes' retroactive default)."""
    before, after = storage_pb2.PersistentVolumeClaimSpec(), storage_pb2.PersistentVolumeClaimSpec()
    before.CopyFrom(old.spec)
    after.CopyFrom(new.spec)
    old_size, new_size = st.requested_bytes(old), st.requested_bytes(new)
    if new_size < old_size:
        p.add(
            "spec.resources.requests.storage",
            f'may not be less than the previous value "{old.spec.resources.requests.get("storage", "")}"',
        )
    for spec in (before, after):
        spec.resources.ClearField("requests")
    if not before.volume_name:
        before.volume_name = after.volume_name
    if not before.HasField("storage_class_name") and after.HasField("storage_class_name"):
        before.storage_class_name = after.storage_class_name
    if before != after:
        p.add("spec", "is immutable after creation except resources.requests (to a larger size)")


def validate_volume(p: Problems, pv: storage_pb2.PersistentVolume, *, name: NameCheck, affinity: AffinityCheck) -> None:
    spec = pv.spec
    _size(p, "spec.capacity", spec.capacity.items(), required=True)
    _access_modes(p, "spec.accessModes", spec.access_modes)
    _reclaim_policy(p, "spec.persistentVolumeReclaimPolicy", spec.persistent_volume_reclaim_policy)
    if spec.HasField("volume_mode"):
        _volume_mode(p, "spec.volumeMode", spec.volume_mode)
    if spec.storage_class_name:
        name(p, "spec.storageClassName", spec.storage_class_name)
    sources = [s for s in ("host_path", "local") if spec.HasField(s)]
    if not sources:
        p.add("spec", "must set one volume source: hostPath or local (a directory on a node)")
    elif len(sources) > 1:
        p.add("spec", "must set exactly one of hostPath, local")
    if spec.HasField("host_path"):
        _absolute(p, "spec.hostPath.path", spec.host_path.path)
        p.one_of("spec.hostPath.type", spec.host_path.type, HOST_PATH_TYPES)
        if spec.mount_options:
            p.add("spec.mountOptions", "may not be specified for a hostPath volume")
    if spec.HasField("local"):
        _absolute(p, "spec.local.path", spec.local.path)
        if spec.local.HasField("fs_type"):
            p.add("spec.local.fsType", "not supported: corral volumes are directories, not block devices")
        if not spec.node_affinity.required.node_selector_terms:
            p.add("spec.nodeAffinity", "required: a local volume must say which node it is on")
    if spec.HasField("node_affinity"):
        if not spec.node_affinity.required.node_selector_terms:
            p.add("spec.nodeAffinity.required.nodeSelectorTerms", "required: at least one term")
        affinity(p, "spec.nodeAffinity.required", spec.node_affinity.required)
    if spec.HasField("claim_ref"):
        ref = spec.claim_ref
        name(p, "spec.claimRef.name", ref.name)
        name(p, "spec.claimRef.namespace", ref.namespace)


def _absolute(p: Problems, path: str, value: str) -> None:
    if not value:
        p.add(path, "required")
    elif not value.startswith("/"):
        p.add(path, f'must be an absolute path, got "{value}"')
    elif "/../" in f"{value}/":
        p.add(path, f'must not contain "..", got "{value}"')


def validate_volume_update(p: Problems, old: storage_pb2.PersistentVolume, new: storage_pb2.PersistentVolume) -> None:
    """The volume source, its nodeAffinity and volumeMode are fixed once set (Kubernetes)."""
    if old.spec.host_path != new.spec.host_path or old.spec.local != new.spec.local:
        p.add("spec", "the volume source (hostPath, local) is immutable after creation")
    if old.spec.HasField("node_affinity") and old.spec.node_affinity != new.spec.node_affinity:
        p.add("spec.nodeAffinity", "field is immutable once set")
    if old.spec.volume_mode != new.spec.volume_mode:
        p.add("spec.volumeMode", "field is immutable")


def validate_storage_class(p: Problems, sc: storage_pb2.StorageClass, *, name: NameCheck) -> None:
    if not sc.provisioner:
        p.add("provisioner", f'required (corral\'s own: "{st.LOCAL_PATH_PROVISIONER}")')
    else:
        name(p, "provisioner", sc.provisioner.replace("/", "."))
    _reclaim_policy(p, "reclaimPolicy", sc.reclaim_policy)
    p.one_of("volumeBindingMode", sc.volume_binding_mode, st.BINDING_MODES)
    if sc.provisioner in st.LOCAL_PROVISIONERS:
        for key in sorted(sc.parameters):
            if key not in LOCAL_PATH_PARAMETERS:
                p.add(f"parameters.{key}", f"unknown parameter: {sc.provisioner} takes none")
        if sc.mount_options:
            p.add("mountOptions", f"may not be specified: {sc.provisioner} makes plain directories")
    if sc.allowed_topologies:
        p.add("allowedTopologies", "not supported: corral's local-path volumes go to the node of their first pod")


def validate_storage_class_update(p: Problems, old: storage_pb2.StorageClass, new: storage_pb2.StorageClass) -> None:
    for json_name, field in (
        ("provisioner", "provisioner"),
        ("parameters", "parameters"),
        ("reclaimPolicy", "reclaim_policy"),
        ("volumeBindingMode", "volume_binding_mode"),
    ):
        if getattr(old, field) != getattr(new, field):
            p.add(json_name, "field is immutable")
