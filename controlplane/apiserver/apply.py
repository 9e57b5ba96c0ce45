"""What `apply` changes on a stored object. Pure code: no I/O.

Apply is declarative: the manifest owns the user's fields, everything else
stays as the cluster made it.

- Owned by the manifest (replaced): `metadata.labels`, `spec` (for kinds
  without a spec, such as Event, every top-level field except metadata and
  status), and the annotations the manifest names.
- Kept from the stored object: uid, creationTimestamp, generation (bumped when
  the spec changes), resourceVersion, status, ownerReferences unless the manifest
  sets some, annotations under system prefixes (`corral.io/`,
  `deployment.kubernetes.io/`) that the manifest does not name, a Pod's
  `spec.nodeName` binding when the manifest leaves it empty, and the requests
  and limits a LimitRange filled into its containers that the manifest leaves out.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from controlplane.apiserver.batch import keep_generated_selector
from protos.corral.v1 import batch_pb2, pod_pb2, storage_pb2
from protos.kinds import meta
from protos.wellknown import SYSTEM_ANNOTATION_PREFIXES

_SERVER_FIELDS = ("api_version", "kind", "metadata", "status")


def user_fields(obj: Message) -> list[str]:
    """The top-level fields a manifest owns for this message type."""
    names = [f.name for f in obj.DESCRIPTOR.fields]
    if "spec" in names:
        return ["spec"]
    return [n for n in names if n not in _SERVER_FIELDS]


def merge_applied(existing: Message, applied: Message) -> Message:
    """The object to store when `applied` is applied over `existing`."""
    merged = type(existing)()
    merged.CopyFrom(existing)
    for name in user_fields(existing):
        field = existing.DESCRIPTOR.fields_by_name[name]
        merged.ClearField(name)
        if field.message_type is not None and not _is_repeated(field):
            if applied.HasField(name):
                getattr(merged, name).CopyFrom(getattr(applied, name))
        elif _is_map(field):
            _copy_map(getattr(merged, name), getattr(applied, name), field)
        elif _is_repeated(field):
            getattr(merged, name).extend(getattr(applied, name))
        elif not getattr(field, "has_presence", False) or applied.HasField(name):
            setattr(merged, name, getattr(applied, name))
    _merge_meta(merged, existing, applied)
    if isinstance(merged, pod_pb2.Pod) and isinstance(existing, pod_pb2.Pod):
        if not merged.spec.node_name:
            merged.spec.node_name = existing.spec.node_name
        keep_filled_resources(merged.spec, existing.spec)
    _keep_volume_binding(merged, existing)
    if isinstance(merged, batch_pb2.Job) and isinstance(existing, batch_pb2.Job):
        keep_generated_selector(existing, merged)
    return merged


def keep_filled_resources(merged: pod_pb2.PodSpec, existing: pod_pb2.PodSpec) -> None:
    """Requests and limits the stored pod's containers have (a LimitRange filled them at creation)
    and the manifest's same-named containers leave out are kept."""
    stored = {c.name: c.resources for c in existing.containers}
    for container in merged.containers:
        had = stored.get(container.name)
        if had is None:
            continue
        for name, value in had.requests.items():
            if name not in container.resources.requests and name not in container.resources.limits:
                container.resources.requests[name] = value
        for name, value in had.limits.items():
            container.resources.limits.setdefault(name, value)


def _keep_volume_binding(merged: Message, existing: Message) -> None:
    """A claim's volumeName and class, and a volume's claimRef, that the manifest leaves unset
    stay as the binder (or admission) set them."""
    claim = storage_pb2.PersistentVolumeClaim
    if isinstance(merged, claim) and isinstance(existing, claim):
        if not merged.spec.volume_name:
            merged.spec.volume_name = existing.spec.volume_name
        if not merged.spec.HasField("storage_class_name") and existing.spec.HasField("storage_class_name"):
            merged.spec.storage_class_name = existing.spec.storage_class_name
    if (
        isinstance(merged, storage_pb2.PersistentVolume)
        and isinstance(existing, storage_pb2.PersistentVolume)
        and not merged.spec.HasField("claim_ref")
        and existing.spec.HasField("claim_ref")
    ):
        merged.spec.claim_ref.CopyFrom(existing.spec.claim_ref)


def _is_map(field: Any) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def _copy_map(target: Any, source: Any, field: Any) -> None:
    """Maps (an EndpointSlice's trafficWeights) are replaced as a whole, like lists."""
    if field.message_type.fields_by_name["value"].message_type is None:
        target.update(source)
        return
    for key, value in source.items():
        target[key].CopyFrom(value)


def _is_repeated(field: object) -> bool:
    return bool(getattr(field, "is_repeated", False)) or getattr(field, "label", 0) == 3


def _merge_meta(merged: Message, existing: Message, applied: Message) -> None:
    m, old, new = meta(merged), meta(existing), meta(applied)
    m.labels.clear()
    m.labels.update(new.labels)
    kept = {
        k: v
        for k, v in old.annotations.items()
        if k.startswith(SYSTEM_ANNOTATION_PREFIXES) and k not in new.annotations
    }
    m.annotations.clear()
    m.annotations.update(kept)
    m.annotations.update(new.annotations)
    if new.owner_references:
        del m.owner_references[:]
        m.owner_references.extend(new.owner_references)


def spec_changed(old: Message, new: Message) -> bool:
    """Whether any manifest-owned field differs (drives metadata.generation)."""
    return any(getattr(old, n) != getattr(new, n) for n in user_fields(old))
