"""What a Terminating namespace needs, pure: which kinds to empty, the status
conditions that say how far it got, and whether it may go. No I/O.

As Kubernetes' namespace controller: every namespaced kind is emptied (the
kinds table, so a kind added later is covered); a namespace whose contents are
all gone and whose deletes did not fail is finalized and deleted. While
objects remain (pods stopping on their nodes) the status carries
`NamespaceContentRemaining` ("Some resources are remaining: pods. has 2
resource instances") and `NamespaceDeletionContentFailure` for deletes that
failed, in Kubernetes' words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from protos.conditions import set_condition
from protos.corral.v1 import namespace_pb2
from protos.kinds import KINDS, KindInfo

CONTENT_REMAINING = "NamespaceContentRemaining"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"


def content_kinds(kinds: Iterable[KindInfo] = KINDS) -> tuple[KindInfo, ...]:
    """Every namespaced kind, Pods last: the controllers that own pods go first and
    so make no replacements for the pods deleted after them."""
    return tuple(sorted((k for k in kinds if k.namespaced), key=lambda k: k.kind == "Pod"))


def resource_name(info: KindInfo) -> str:
    """`pods.` or `deployments.apps`: a group resource as Kubernetes' namespace conditions print it."""
    return f"{info.plural}.{info.group}"


def remaining_message(left: Mapping[KindInfo, int]) -> str:
    parts = sorted(f"{resource_name(k)} has {n} resource instances" for k, n in left.items() if n > 0)
    return f"Some resources are remaining: {', '.join(parts)}"


@dataclass(frozen=True)
class NamespacePlan:
    # The status to store (compare with the stored one before writing).
    status: namespace_pb2.NamespaceStatus
    # Everything is gone: delete the namespace.
    finalize: bool


def plan_namespace(
    ns: namespace_pb2.Namespace, left: Mapping[KindInfo, int], failures: Sequence[str], now: datetime
) -> NamespacePlan:
    """After one pass over the namespace's contents: `left` objects of each kind are
    still there (being deleted, or changed under the pass), `failures` deletes failed."""
    now = now.replace(microsecond=0)
    status = namespace_pb2.NamespaceStatus()
    status.CopyFrom(ns.status)
    remaining = any(n > 0 for n in left.values())
    if failures:
        message = f"Failed to delete all resource types, {len(failures)} remaining: {'; '.join(sorted(failures))}"
        set_condition(
            status.conditions, CONTENT_FAILURE, "True", reason="ContentDeletionFailed", message=message, now=now
        )
    else:
        message = "All content successfully deleted, may be waiting on finalization"
        set_condition(status.conditions, CONTENT_FAILURE, "False", reason="ContentDeleted", message=message, now=now)
    if remaining:
        message = remaining_message(left)
        set_condition(
            status.conditions, CONTENT_REMAINING, "True", reason="SomeResourcesRemain", message=message, now=now
        )
    else:
        message = "All content successfully removed"
        set_condition(status.conditions, CONTENT_REMAINING, "False", reason="ContentRemoved", message=message, now=now)
    return NamespacePlan(status, finalize=not remaining and not failures)
