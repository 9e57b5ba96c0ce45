"""Ownership: the controller ownerReference of an object, and making one. Pure."""

from __future__ import annotations

from google.protobuf.message import Message

from protos.corral.v1 import meta_pb2
from protos.kinds import info_of, meta


def controller_ref(obj: Message) -> meta_pb2.OwnerReference | None:
    for ref in meta(obj).owner_references:
        if ref.controller:
            return ref
    return None


def is_controlled_by(obj: Message, owner_uid: str) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.uid == owner_uid


def owner_reference(owner: Message) -> meta_pb2.OwnerReference:
    """A controller ownerReference to `owner` (blocking its foreground deletion)."""
    info, m = info_of(owner), meta(owner)
    return meta_pb2.OwnerReference(
        api_version=info.api_version, kind=info.kind, name=m.name, uid=m.uid, controller=True, block_owner_deletion=True
    )
