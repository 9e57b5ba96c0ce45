"""ControllerRevisions of DaemonSets and StatefulSets (protos/revisions.py): a new template gets
the highest number + 1, a template that comes back is renumbered, history is pruned to
revisionHistoryLimit keeping the revisions in use, and `find` picks what undo goes back to."""

from __future__ import annotations

import pytest

from protos import owners, revisions
from protos.corral.v1 import workloads_pb2
from protos.deployments import template_hash
from protos.wellknown import CHANGE_CAUSE, CONTROLLER_REVISION_HASH


def daemon_set(image: str = "busybox:1", limit: int | None = None) -> workloads_pb2.DaemonSet:
    ds = workloads_pb2.DaemonSet()
    ds.metadata.name, ds.metadata.namespace, ds.metadata.uid = "exporter", "default", "uid-1"
    ds.spec.template.metadata.labels["app"] = "exporter"
    ds.spec.template.spec.containers.add(name="exporter", image=image)
    if limit is not None:
        ds.spec.revision_history_limit = limit
    return ds


def hash_of(ds: workloads_pb2.DaemonSet) -> str:
    return template_hash(ds.spec.template)


def revision(image: str, number: int, *, uid: str = "uid-1") -> workloads_pb2.ControllerRevision:
    ds = daemon_set(image)
    ds.metadata.uid = uid
    return revisions.new_revision(ds, hash_of(ds), number)


def numbers(revs: tuple[workloads_pb2.ControllerRevision, ...]) -> list[tuple[str, int]]:
    return [(r.data.spec.containers[0].image, r.revision) for r in revs]


@pytest.mark.parametrize(
    ("image", "existing", "created", "renumbered"),
    [
        pytest.param("v1", [], [("v1", 1)], [], id="first-template-is-revision-1"),
        pytest.param("v3", [("v1", 1), ("v2", 2)], [("v3", 3)], [], id="new-template-is-highest-plus-one"),
        pytest.param("v2", [("v1", 1), ("v2", 2)], [], [], id="current-template-already-newest"),
        pytest.param("v1", [("v1", 1), ("v2", 2)], [], [("v1", 3)], id="template-back-is-renumbered-newest"),
        pytest.param("v1", [("v1", 4), ("v2", 4)], [], [("v1", 5)], id="shared-number-is-made-unique"),
    ],
)
def test_numbering(
    image: str, existing: list[tuple[str, int]], created: list[tuple[str, int]], renumbered: list[tuple[str, int]]
) -> None:
    ds = daemon_set(image)
    actions = revisions.plan(ds, hash_of(ds), [revision(i, n) for i, n in existing])
    assert numbers(actions.create) == created
    assert numbers(actions.update) == renumbered
    assert actions.delete == ()


def test_new_revision_is_the_owned_template() -> None:
    ds = daemon_set("v1")
    ds.metadata.annotations[CHANGE_CAUSE] = "upgrade"
    (rev,) = revisions.plan(ds, hash_of(ds), []).create
    assert rev.metadata.name == f"exporter-{hash_of(ds)}"
    assert rev.metadata.namespace == "default"
    assert rev.metadata.labels[CONTROLLER_REVISION_HASH] == hash_of(ds)
    assert rev.metadata.labels["app"] == "exporter"
    assert rev.metadata.annotations[CHANGE_CAUSE] == "upgrade"
    assert owners.is_controlled_by(rev, "uid-1")
    assert rev.data == ds.spec.template


def test_other_owners_revisions_are_ignored() -> None:
    ds = daemon_set("v2")
    actions = revisions.plan(ds, hash_of(ds), [revision("v1", 7, uid="other")])
    assert numbers(actions.create) == [("v2", 1)]


@pytest.mark.parametrize(
    ("limit", "keep", "deleted"),
    [
        pytest.param(None, [], [], id="default-limit-10-keeps-all"),
        pytest.param(2, [], ["v1", "v2"], id="oldest-beyond-limit-deleted"),
        pytest.param(0, [], ["v1", "v2", "v3", "v4"], id="limit-0-keeps-only-current"),
        pytest.param(0, ["v2"], ["v1", "v3", "v4"], id="kept-revision-survives"),
        pytest.param(2, ["v1"], ["v2"], id="kept-does-not-count-against-limit"),
    ],
)
def test_pruning(limit: int | None, keep: list[str], deleted: list[str]) -> None:
    ds = daemon_set("v5", limit)
    existing = [revision(f"v{n}", n) for n in range(1, 6)]
    names = {r.data.spec.containers[0].image: r.metadata.name for r in existing}
    actions = revisions.plan(ds, hash_of(ds), existing, keep=[names[k] for k in keep])
    assert [r.data.spec.containers[0].image for r in actions.delete] == deleted


@pytest.mark.parametrize(
    ("number", "found"),
    [
        pytest.param(0, "v2", id="default-is-the-previous"),
        pytest.param(1, "v1", id="by-number"),
        pytest.param(9, None, id="missing"),
    ],
)
def test_find(number: int, found: str | None) -> None:
    existing = [revision("v3", 3), revision("v1", 1), revision("v2", 2)]
    rev = revisions.find(existing, number)
    assert (rev.data.spec.containers[0].image if rev else None) == found


def test_find_previous_needs_two() -> None:
    assert revisions.find([revision("v1", 1)], 0) is None
