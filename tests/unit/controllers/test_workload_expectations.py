"""Expectations of the ReplicaSet controller and write expectations of the
Deployment controller, on a fake clock."""

from __future__ import annotations

from controlplane.controllers.deployment.expectations import WriteExpectations
from controlplane.controllers.replicaset.expectations import Expectations
from controlplane.informer import Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import workloads_pb2
from protos.kinds import by_kind


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_creations_must_be_observed() -> None:
    clock = Clock()
    e = Expectations(timeout=30, clock=clock)
    assert e.satisfied("ns/rs")
    e.expect("ns/rs", creates=2)
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert not e.satisfied("ns/rs")
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")


def test_deletions_are_tracked_by_pod() -> None:
    e = Expectations(clock=Clock())
    e.expect("ns/rs", deletes=["ns/a", "ns/b"])
    e.deletion_observed("ns/rs", "ns/other")
    e.deletion_observed("ns/rs", "ns/a")
    assert not e.satisfied("ns/rs")
    assert e.pending("ns/rs") == (0, frozenset({"ns/b"}))
    e.deletion_failed("ns/rs", "ns/b")
    assert e.satisfied("ns/rs")


def test_failed_creations_are_expected_no_more() -> None:
    e = Expectations(clock=Clock())
    e.expect("ns/rs", creates=3)
    e.creations_failed("ns/rs", 2)
    e.creation_observed("ns/rs")
    assert e.satisfied("ns/rs")


def test_expectations_time_out() -> None:
    clock = Clock()
    e = Expectations(timeout=30, clock=clock)
    e.expect("ns/rs", creates=1)
    clock.now = 20
    assert not e.satisfied("ns/rs")
    assert e.remaining("ns/rs") == 10
    clock.now = 30
    assert e.satisfied("ns/rs")
    assert e.remaining("ns/rs") is None


def _informers() -> dict[str, Informer]:
    objects = ObjectStore(MemoryStore())
    return {kind: Informer(objects, by_kind(kind)) for kind in ("Deployment", "ReplicaSet")}


def test_writes_wait_for_the_informer_revision() -> None:
    clock = Clock()
    informers = _informers()
    w = WriteExpectations(timeout=30, clock=clock)
    w.wrote("ns/web", "ReplicaSet", "17")
    w.wrote("ns/web", "Deployment", "18")
    informers["ReplicaSet"].revision = 17
    informers["Deployment"].revision = 12
    assert not w.satisfied("ns/web", informers)
    informers["Deployment"].revision = 18
    assert w.satisfied("ns/web", informers)
    assert w.satisfied("ns/web", informers)


def test_deletes_wait_until_the_object_is_gone() -> None:
    informers = _informers()
    w = WriteExpectations(clock=Clock())
    rs = workloads_pb2.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace, rs.metadata.uid = "web-1", "ns", "u1"
    informers["ReplicaSet"].items["ns/web-1"] = rs
    w.deleted("ns/web", "ReplicaSet", "ns/web-1", "u1")
    assert not w.satisfied("ns/web", informers)
    del informers["ReplicaSet"].items["ns/web-1"]
    assert w.satisfied("ns/web", informers)


def test_write_expectations_time_out() -> None:
    clock = Clock()
    informers = _informers()
    w = WriteExpectations(timeout=30, clock=clock)
    w.wrote("ns/web", "ReplicaSet", "99")
    clock.now = 29.5
    assert not w.satisfied("ns/web", informers)
    assert w.remaining("ns/web") == 0.5
    clock.now = 30
    assert w.satisfied("ns/web", informers)


def test_the_observation_that_meets_the_expectations_says_so() -> None:
    e = Expectations(clock=Clock())
    e.expect("ns/rs", creates=1, deletes=["ns/a"])
    assert not e.deletion_observed("ns/rs", "ns/other")
    assert not e.deletion_observed("ns/rs", "ns/a")  # a creation is still pending
    assert e.creation_observed("ns/rs")
    assert not e.creation_observed("ns/rs")  # nothing was pending any more
    assert not e.deletion_observed("ns/none", "ns/a")
