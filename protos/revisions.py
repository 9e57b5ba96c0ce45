"""ControllerRevisions of DaemonSets and StatefulSets: making, numbering, pruning. Pure.

As Kubernetes' controller history: each distinct pod template of a set is kept
as a ControllerRevision named `<set>-<hash>` (the hash is `template_hash`, the
pods' controller-revision-hash; the set's name cut to 223 characters), owned by
the set, with a `revision` number. A new template gets the highest number + 1; going back to a template that has
a revision already renumbers that revision to the highest + 1 (so `rollout
history` lists it last). Revisions beyond `spec.revisionHistoryLimit`
(default 10), oldest first, are deleted — never one named in `keep` (the
current and update revisions, and those live pods still run).

Unlike Kubernetes, whose `data` is a patch of the set's spec, corral's `data`
is the whole pod template (a PodTemplateSpec).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from protos import owners
from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.wellknown import CHANGE_CAUSE, CONTROLLER_REVISION_HASH

DEFAULT_HISTORY_LIMIT: Final = 10

SetObject = workloads_pb2.DaemonSet | workloads_pb2.StatefulSet


@dataclass(frozen=True)
class RevisionActions:
    create: tuple[workloads_pb2.ControllerRevision, ...] = ()
    # Existing revisions given a new (highest) number.
    update: tuple[workloads_pb2.ControllerRevision, ...] = ()
    delete: tuple[workloads_pb2.ControllerRevision, ...] = ()


# The longest prefix of a revision name (Kubernetes' ControllerRevisionName): with "-" and a
# hash it stays within a name's 253 characters.
MAX_PREFIX: Final = 223


def revision_name(owner: str, hash_: str) -> str:
    """`<owner>-<hash>`, the owner's name cut to `MAX_PREFIX` characters."""
    return f"{owner[:MAX_PREFIX]}-{hash_}"


def owned(
    owner: SetObject, revisions: Iterable[workloads_pb2.ControllerRevision]
) -> list[workloads_pb2.ControllerRevision]:
    """The revisions `owner` controls, oldest (lowest number) first."""
    mine = [r for r in revisions if owners.is_controlled_by(r, owner.metadata.uid)]
    return sorted(mine, key=lambda r: (r.revision, r.metadata.name))


def history_limit(owner: SetObject) -> int:
    spec = owner.spec
    return spec.revision_history_limit if spec.HasField("revision_history_limit") else DEFAULT_HISTORY_LIMIT


def new_revision(owner: SetObject, hash_: str, number: int) -> workloads_pb2.ControllerRevision:
    """The revision of `owner`'s current template, numbered `number`."""
    template = owner.spec.template
    rev = workloads_pb2.ControllerRevision(api_version="apps/v1", kind="ControllerRevision", revision=number)
    m = rev.metadata
    m.name = revision_name(owner.metadata.name, hash_)
    m.namespace = owner.metadata.namespace
    m.labels.update(template.metadata.labels)
    m.labels[CONTROLLER_REVISION_HASH] = hash_
    cause = owner.metadata.annotations.get(CHANGE_CAUSE)
    if cause is not None:
        m.annotations[CHANGE_CAUSE] = cause
    m.owner_references.append(owners.owner_reference(owner))
    rev.data.CopyFrom(template)
    return rev


def plan(
    owner: SetObject,
    hash_: str,
    revisions: Iterable[workloads_pb2.ControllerRevision],
    *,
    keep: Iterable[str] = (),
) -> RevisionActions:
    """What to write so `owner`'s current template (hash `hash_`) is its newest revision,
    and the history is within the limit."""
    mine = owned(owner, revisions)
    name = revision_name(owner.metadata.name, hash_)
    newest = max((r.revision for r in mine), default=0)
    create: list[workloads_pb2.ControllerRevision] = []
    update: list[workloads_pb2.ControllerRevision] = []
    existing = next((r for r in mine if r.metadata.name == name), None)
    if existing is None:
        create.append(new_revision(owner, hash_, newest + 1))
    elif existing.revision < newest or (existing.revision == newest and _shared_number(mine, existing)):
        bumped = workloads_pb2.ControllerRevision()
        bumped.CopyFrom(existing)
        bumped.revision = newest + 1
        update.append(bumped)
    kept = {name, *keep}
    old = [r for r in mine if r.metadata.name not in kept]
    excess = len(old) - history_limit(owner)
    return RevisionActions(create=tuple(create), update=tuple(update), delete=tuple(old[: max(0, excess)]))


def _shared_number(mine: list[workloads_pb2.ControllerRevision], rev: workloads_pb2.ControllerRevision) -> bool:
    return any(r.revision == rev.revision and r.metadata.name != rev.metadata.name for r in mine)


def find(revisions: Iterable[workloads_pb2.ControllerRevision], number: int) -> workloads_pb2.ControllerRevision | None:
    """The revision numbered `number`; 0 means the one before the newest (kubectl's undo default)."""
    ordered = sorted(revisions, key=lambda r: r.revision)
    if number == 0:
        return ordered[-2] if len(ordered) > 1 else None
    return next((r for r in ordered if r.revision == number), None)


def template_of(rev: workloads_pb2.ControllerRevision) -> pod_pb2.PodTemplateSpec:
    template = pod_pb2.PodTemplateSpec()
    template.CopyFrom(rev.data)
    return template
