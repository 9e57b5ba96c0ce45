"""Graceful deletion, pure: does a delete remove the object now, or mark it
terminating (a pod for its node to stop, a namespace for the namespace
controller to empty)? No I/O.

Kubernetes' deletionTimestamp flow. Deleting a Pod that is bound to a node and
not finished, with a grace period above 0, does not remove the object: it
sets `metadata.deletionTimestamp` (now + grace) and
`metadata.deletionGracePeriodSeconds` (grace). The node's agent sees the pod
change in its assignment set, drains it, stops its containers (SIGTERM, then
SIGKILL at the deadline) and reports it terminated; only then does the
control plane delete the object. Until it is gone the pod still takes room on
its node and still counts against a Deployment's maxSurge.

- grace: the one asked for, else the pod's terminationGracePeriodSeconds
  (defaulted to 30);
- deleted at once: anything that is not a Pod, unbound pods (no node runs
  them), finished pods (phase Succeeded or Failed: nothing runs), and grace 0
  (kubectl's `--force --grace-period=0`);
- a second delete of a terminating pod may only bring its deadline forward
  (a shorter grace), never push it back; grace 0 deletes it at once.

Namespaces, as Kubernetes' namespace storage: the first delete marks one
(deletionTimestamp now, status.phase Terminating) whatever its finalizers; a
later delete is refused while spec.finalizers is not empty (the namespace
controller is removing its contents, then deletes it) and deletes it once it
is. `default`, `kube-system` and `kube-public` may not be deleted at all.
Storage protection (Kubernetes' kubernetes.io/pvc-protection and
pv-protection finalizers, without a finalizers field): a
PersistentVolumeClaim that a pod still uses, and a PersistentVolume still
Bound, are marked terminating (deletionTimestamp: now) instead; the volume
controller deletes them once no pod uses the claim (the volume: once it is
no longer Bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from protos.corral.v1 import namespace_pb2, pod_pb2, storage_pb2
from protos.kinds import meta
from protos.pods import DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, is_terminal, is_terminating
from protos.storage import BOUND


@dataclass(frozen=True)
class DeletePlan:
    """What one delete does."""

    # Remove the object from the store now.
    now: bool
    # The pod, namespace, claim or volume to write, marked terminating (or a pod with an
    # earlier deadline); None when nothing is to be written (deleting now, or
    # already terminating at least as soon).
    update: Message | None = None
    # Why the delete is refused (a namespace still being emptied): a conflict.
    refused: str = ""


# Namespaces Kubernetes never lets anyone delete (its NamespaceLifecycle admission).
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
NAMESPACE_TERMINATING = "Terminating"
STILL_FINALIZING = (
    "The system is ensuring all content is removed from this namespace.  "
    "Upon completion, this namespace will automatically be purged by the system."
)


def pod_grace(pod: pod_pb2.Pod, requested: int | None) -> int:
    """The grace period of this delete: the one asked for, else the pod's own."""
    if requested is not None:
        return requested
    if pod.spec.HasField("termination_grace_period_seconds"):
        return pod.spec.termination_grace_period_seconds
    return DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS


def needs_graceful(pod: pod_pb2.Pod) -> bool:
    """Whether a node may be running the pod's containers: bound and not finished."""
    return bool(pod.spec.node_name) and not is_terminal(pod)


def deletion_deadline(pod: pod_pb2.Pod) -> datetime | None:
    if not is_terminating(pod):
        return None
    return pod.metadata.deletion_timestamp.ToDatetime(tzinfo=UTC)


def plan_deletion(obj: Message, requested: int | None, now: datetime, *, in_use: bool = False) -> DeletePlan:
    """What deleting `obj` (as stored) with grace `requested` (None: default) does at `now`;
    `in_use`: a PersistentVolumeClaim that a pod still uses."""
    if isinstance(obj, namespace_pb2.Namespace):
        return plan_namespace_deletion(obj, now)
    if isinstance(obj, storage_pb2.PersistentVolumeClaim | storage_pb2.PersistentVolume):
        bound = isinstance(obj, storage_pb2.PersistentVolume) and obj.status.phase == BOUND
        return _protected(obj, in_use or bound, now)
    if not isinstance(obj, pod_pb2.Pod):
        return DeletePlan(now=True)
    grace = pod_grace(obj, requested)
    if grace <= 0 or not needs_graceful(obj):
        return DeletePlan(now=True)
    deadline = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=grace)
    current = deletion_deadline(obj)
    if current is not None and current <= deadline:
        return DeletePlan(now=False)
    marked = pod_pb2.Pod()
    marked.CopyFrom(obj)
    marked.metadata.deletion_timestamp.FromDatetime(deadline)
    marked.metadata.deletion_grace_period_seconds = grace
    return DeletePlan(now=False, update=marked)


def plan_namespace_deletion(ns: namespace_pb2.Namespace, now: datetime) -> DeletePlan:
    """Mark it Terminating; once marked, delete it only when no finalizer is left."""
    if not is_terminating(ns):
        marked = namespace_pb2.Namespace()
        marked.CopyFrom(ns)
        marked.metadata.deletion_timestamp.FromDatetime(now.astimezone(UTC).replace(microsecond=0))
        marked.status.phase = NAMESPACE_TERMINATING
        return DeletePlan(now=False, update=marked)
    if ns.spec.finalizers:
        return DeletePlan(now=False, refused=STILL_FINALIZING)
    return DeletePlan(now=True)


def _protected(obj: Message, held: bool, now: datetime) -> DeletePlan:
    """Delete a claim or volume now, or mark it terminating while it is `held`."""
    if not held:
        return DeletePlan(now=True)
    if meta(obj).HasField("deletion_timestamp"):
        return DeletePlan(now=False)
    marked = type(obj)()
    marked.CopyFrom(obj)
    meta(marked).deletion_timestamp.FromDatetime(now.astimezone(UTC).replace(microsecond=0))
    return DeletePlan(now=False, update=marked)
