"""Garbage collection, pure: which objects lost their owners, which Events expired.

An object with ownerReferences is garbage when none of its owners exists any
more, as in Kubernetes: for every reference, the object of the owner's kind
with that name (in the dependent's namespace, or cluster-wide for a
cluster-scoped kind) is gone or has another uid — a re-created owner is not
the owner. A reference to a kind corral does not know keeps the object: the
collector never deletes on a guess.

Deleting a Deployment so orphans its ReplicaSets, whose deletion orphans their
Pods: background cascading deletion, one level at a time. A StatefulSet's pods
go the same way, and its claims once every owner they name (the set under
whenDeleted: Delete, the pod under whenScaled: Delete) is gone.

Pods are deleted gracefully (see `controlplane.apiserver.deletion`): a
running pod is marked terminating and its node deletes it once stopped. The
safety net for that flow: a terminating pod whose node no longer exists (the
Node object is gone, so no agent will ever confirm) is deleted at once.

An Event expires `ttl` after it was last seen (lastTimestamp, else
firstTimestamp, else its creation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.message import Message

from protos.corral.v1 import event_pb2, pod_pb2
from protos.kinds import UnknownKindError, by_kind, meta
from protos.pods import is_terminating
from protos.times import as_datetime


@dataclass(frozen=True)
class OwnerKey:
    """Where an owner lives: its kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str


def owner_keys(obj: Message) -> list[OwnerKey | None]:
    """Where each ownerReference points, in order; None for a kind corral does not know."""
    m = meta(obj)
    keys: list[OwnerKey | None] = []
    for ref in m.owner_references:
        try:
            info = by_kind(ref.kind)
        except UnknownKindError:
            keys.append(None)
            continue
        keys.append(OwnerKey(info.kind, m.namespace if info.namespaced else "", ref.name))
    return keys


def is_orphan(obj: Message, owner_uids: Mapping[OwnerKey, str]) -> bool:
    """Whether `obj` has owners and none exists; `owner_uids` maps where owners
    live to the uid of the object there now (absent: nothing there)."""
    refs = meta(obj).owner_references
    if not refs:
        return False
    for ref, key in zip(refs, owner_keys(obj), strict=True):
        if key is None:
            return False
        if owner_uids.get(key) == ref.uid:
            return False
    return True


def collector_sees_change(prev: Message, obj: Message) -> bool:
    """Whether an update can change what the collector does with a dependent: its ownerReferences
    or its deletion state changed, or (a terminating pod) its node. A Lease renewal, a pod's
    status report: no."""
    before, after = meta(prev), meta(obj)
    if before.owner_references != after.owner_references or is_terminating(prev) != is_terminating(obj):
        return True
    if isinstance(obj, pod_pb2.Pod) and isinstance(prev, pod_pb2.Pod) and is_terminating(obj):
        return prev.spec.node_name != obj.spec.node_name
    return False


def is_stranded(obj: Message, *, node_exists: bool) -> bool:
    """A pod being deleted gracefully on a node that no longer exists."""
    return isinstance(obj, pod_pb2.Pod) and is_terminating(obj) and bool(obj.spec.node_name) and not node_exists


def event_last_seen(event: event_pb2.Event) -> datetime | None:
    return (
        as_datetime(event.last_timestamp)
        or as_datetime(event.first_timestamp)
        or as_datetime(event.metadata.creation_timestamp)
    )


def event_expires_at(event: event_pb2.Event, ttl: timedelta) -> datetime | None:
    """When the Event is to be deleted; None if it carries no time at all."""
    seen = event_last_seen(event)
    return None if seen is None else seen + ttl
