"""The `metadata` of any API object, without the table of kinds (which loads every kind's
module: the agent needs none of that to read a pod's metadata)."""

from __future__ import annotations

from google.protobuf.message import Message

from protos.corral.v1 import meta_pb2


def meta(obj: Message) -> meta_pb2.ObjectMeta:
    """The `metadata` of any API object (every kind has one)."""
    value: meta_pb2.ObjectMeta = getattr(obj, "metadata")  # noqa: B009 - typed accessor
    return value
