"""Which pod changes wake a node's assignment stream."""

from controlplane.informer import CacheEvent, Informer
from controlplane.nodeapi.assignments import AssignmentIndex, used_by
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind


def pod(node: str, generation: int = 1, phase: str = "") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    p.metadata.generation = generation
    p.spec.node_name = node
    p.status.phase = phase
    return p


def test_status_writes_do_not_wake_the_stream_but_spec_and_binding_changes_do() -> None:
    index = AssignmentIndex(Informer(ObjectStore(MemoryStore()), by_kind("Pod")))
    event = index.event_for("n1")
    bound = pod("n1")
    index._on_event(CacheEvent(Change.MODIFIED, bound, pod(""), 2))
    assert event.is_set()
    event.clear()
    running = pod("n1", phase="Running")
    index._on_event(CacheEvent(Change.MODIFIED, running, bound, 3))
    assert not event.is_set()
    assert index.current("n1")[0].pods[0].status.phase == "Running"
    index._on_event(CacheEvent(Change.MODIFIED, pod("n1", generation=2), running, 4))
    assert event.is_set()
    event.clear()
    index._on_event(CacheEvent(Change.DELETED, running, running, 5))
    assert event.is_set()
    assert list(index.current("n1")[0].pods) == []


def test_marking_a_pod_for_deletion_wakes_the_stream_and_keeps_it_in_the_set() -> None:
    index = AssignmentIndex(Informer(ObjectStore(MemoryStore()), by_kind("Pod")))
    event = index.event_for("n1")
    running = pod("n1", phase="Running")
    index._on_event(CacheEvent(Change.ADDED, running, None, 2))
    _, before = index.current("n1")
    event.clear()
    marked = pod("n1", phase="Running")
    marked.metadata.deletion_timestamp.seconds = 1_800_000_000
    index._on_event(CacheEvent(Change.MODIFIED, marked, running, 3))
    assert event.is_set()
    current, after = index.current("n1")
    assert after != before
    assert [p.metadata.deletion_timestamp.seconds for p in current.pods] == [1_800_000_000]
    event.clear()
    stopping = pod("n1", phase="Running")
    stopping.CopyFrom(marked)
    stopping.status.conditions.add(type="Ready", status="False")
    index._on_event(CacheEvent(Change.MODIFIED, stopping, marked, 4))
    assert not event.is_set(), "a terminating pod's status writes cause no traffic either"
    sooner = pod("n1")
    sooner.CopyFrom(stopping)
    sooner.metadata.deletion_timestamp.seconds -= 20
    index._on_event(CacheEvent(Change.MODIFIED, sooner, stopping, 5))
    assert event.is_set(), "a deadline brought forward reaches the node"


def test_a_label_change_wakes_the_stream_only_for_a_pod_projecting_its_labels() -> None:
    index = AssignmentIndex(Informer(ObjectStore(MemoryStore()), by_kind("Pod")))
    event = index.event_for("n1")
    plain, downward = pod("n1"), pod("n1")
    source = downward.spec.volumes.add(name="info").projected.sources.add()
    source.downward_api.items.add(path="labels").field_ref.field_path = "metadata.labels"
    for before in (plain, downward):
        after = pod_pb2.Pod()
        after.CopyFrom(before)
        after.metadata.labels["tier"] = "front"
        index._on_event(CacheEvent(Change.ADDED, before, None, 2))
        event.clear()
        index._on_event(CacheEvent(Change.MODIFIED, after, before, 3))
        assert event.is_set() is (before is downward)
        if before is downward:
            [payload] = index.current("n1")[0].volumes
            assert payload.files[0].data == b'tier="front"'


def test_a_node_whose_pods_are_all_gone_keeps_no_entry() -> None:
    """Counted in entries: after pods come and go on many nodes, nothing is kept for a node without pods."""
    index = AssignmentIndex(Informer(ObjectStore(MemoryStore()), by_kind("Pod")))
    for n in range(50):
        bound = pod(f"n{n}")
        index._on_event(CacheEvent(Change.ADDED, bound, None, 2))
        moved = pod(f"n{n + 1}")
        index._on_event(CacheEvent(Change.MODIFIED, moved, bound, 3))
        index._on_event(CacheEvent(Change.DELETED, moved, moved, 4))
    assert index._by_node == {}
    assert list(index.current("n1")[0].pods) == []


def test_pods_that_use_nothing_share_one_empty_set() -> None:
    """Most pods take no Secret, ConfigMap or claim: one frozenset for all of them, not 216 bytes each."""
    first, second = (used_by(pod_pb2.Pod()) for _ in range(2))
    assert first == frozenset()
    assert first is second
