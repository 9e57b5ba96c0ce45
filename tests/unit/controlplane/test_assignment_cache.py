"""What a node gets of its standalone pods (no Secret, ConfigMap or claim) is kept per pod
version: checked against rebuilding every node's set from scratch after random pod and
Secret changes, and shown to resolve an unchanged pod only once."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from controlplane.informer import CacheEvent, Informer
from controlplane.nodeapi import assignments, configenv
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import pod_pb2, secret_pb2, storage_pb2
from protos.kinds import by_kind

NODES = ("n1", "n2")


def pod(name: str, node: str, *, generation: int = 1, secret_env: bool = False, label: str = "a") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.metadata.generation = generation
    p.metadata.labels["v"] = label
    p.spec.node_name = node
    container = p.spec.containers.add(name="main", image="app:1")
    if secret_env:
        ref = container.env.add(name="TOKEN").value_from.secret_key_ref
        ref.name, ref.key = "creds", "token"
    return p


def secret(value: bytes) -> secret_pb2.Secret:
    s = secret_pb2.Secret()
    s.metadata.name, s.metadata.namespace = "creds", "default"
    s.data["token"] = value
    return s


def informers() -> tuple[Informer, Informer]:
    objects = ObjectStore(MemoryStore())
    return Informer(objects, by_kind("Pod")), Informer(objects, by_kind("Secret"))


def apply(informer: Informer, index: AssignmentIndex | None, change: Change, obj: pod_pb2.Pod) -> None:
    """What the informer does with a watch event: its cache, then its listeners."""
    key = f"{obj.metadata.namespace}/{obj.metadata.name}"
    before = informer.items.get(key)
    if change is Change.DELETED:
        informer.items.pop(key, None)
    else:
        informer.items[key] = obj
    if index is not None:
        index._on_event(CacheEvent(change, obj, before, informer.revision))


# (pod name, node or "" to delete, generation, takes a Secret, label) or a new Secret value.
ops_ = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([*NODES, ""]),
            st.integers(1, 3),
            st.booleans(),
            st.sampled_from(["x", "y"]),
        ),
        st.binary(min_size=1, max_size=3),
    ),
    max_size=20,
)


@settings(max_examples=80, deadline=None)
@given(ops=ops_)
def test_kept_sets_equal_sets_rebuilt_from_scratch(ops: list[tuple[str, str, int, bool, str] | bytes]) -> None:
    pods, secrets = informers()
    secrets.items["default/creds"] = secret(b"first")
    index = AssignmentIndex(pods, secrets=secrets)
    for op in ops:
        if isinstance(op, bytes):
            secrets.items["default/creds"] = secret(op)
            continue
        name, node, generation, secret_env, label = op
        if not node:
            if f"default/{name}" in pods.items:
                apply(pods, index, Change.DELETED, pods.items[f"default/{name}"])  # type: ignore[arg-type]
            continue
        change = Change.MODIFIED if f"default/{name}" in pods.items else Change.ADDED
        apply(pods, index, change, pod(name, node, generation=generation, secret_env=secret_env, label=label))
        for n in NODES:
            index.current(n)  # what the streams send after each change: fills the kept results
    fresh = AssignmentIndex(pods, secrets=secrets)
    for n in NODES:
        assert index.current(n) == fresh.current(n)


def test_an_unchanged_standalone_pod_is_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pods, secrets = informers()
    secrets.items["default/creds"] = secret(b"s")
    index = AssignmentIndex(pods, secrets=secrets)
    apply(pods, index, Change.ADDED, pod("plain", "n1"))
    apply(pods, index, Change.ADDED, pod("with-secret", "n1", secret_env=True))
    resolved: list[str] = []
    real = configenv.resolve_pod

    def counting(p: pod_pb2.Pod, *args: object) -> tuple[pod_pb2.Pod, str, list[str]]:
        resolved.append(p.metadata.name)
        return real(p, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(configenv, "resolve_pod", counting)
    first = index.current("n1")
    assert index.current("n1") == first
    # The pod that takes a Secret's value is resolved at each build (the Secret may have changed).
    assert sorted(resolved) == ["plain", "with-secret", "with-secret"]
    assert assignments.standalone(pods.items["default/plain"])  # type: ignore[arg-type]


def claim_pod(name: str, node: str, *, generation: int, secret_env: bool, claim: str) -> pod_pb2.Pod:
    p = pod(name, node, generation=generation, secret_env=secret_env)
    if claim:
        p.spec.volumes.add(name="data").persistent_volume_claim.claim_name = claim
    return p


def woken_by_scan(index: AssignmentIndex, kind: str, namespace: str, name: str) -> set[str]:
    """The nodes a change to the object wakes, by scanning every node's pods (as before the index)."""
    return {
        node
        for node, pods in index._by_node.items()
        for p in pods.values()
        if (
            (kind, namespace, name) == ("PersistentVolumeClaim", p.metadata.namespace, name)
            and any(c == name for _, c in st_claims(p))
        )
        or (p.metadata.namespace == namespace and (kind, name) in assignments._refs(p))
    }


def st_claims(p: pod_pb2.Pod) -> list[tuple[str, str]]:
    return [
        (v.name, v.persistent_volume_claim.claim_name) for v in p.spec.volumes if v.HasField("persistent_volume_claim")
    ]


# (pod, node or "" to unbind or None to delete, generation, takes the Secret, claim mounted)
uses_ops_ = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([*NODES, "", None]),
        st.integers(1, 3),
        st.booleans(),
        st.sampled_from(["", "data-1", "data-2"]),
    ),
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@given(ops=uses_ops_)
@example(ops=[("a", "n1", 1, True, "data-1"), ("a", "n2", 1, True, "data-1")])  # the same spec on another node
def test_a_referenced_object_wakes_the_nodes_a_scan_of_every_pod_finds(
    ops: list[tuple[str, str | None, int, bool, str]],
) -> None:
    pods, secrets = informers()
    index = AssignmentIndex(pods, secrets=secrets)
    events = {n: index.event_for(n) for n in NODES}
    for name, node, generation, secret_env, claim in ops:
        key = f"default/{name}"
        if node is None:
            if key in pods.items:
                apply(pods, index, Change.DELETED, pods.items[key])  # type: ignore[arg-type]
            continue
        change = Change.MODIFIED if key in pods.items else Change.ADDED
        before = pods.items.get(key)
        if isinstance(before, pod_pb2.Pod):
            # As the API does: a changed spec bumps the generation (a binding does not).
            spec = claim_pod(name, before.spec.node_name, generation=0, secret_env=secret_env, claim=claim).spec
            generation = before.metadata.generation + (spec != before.spec)
        p = claim_pod(name, node, generation=generation, secret_env=secret_env, claim=claim)
        apply(pods, index, change, p)
    for kind, name in [("Secret", "creds"), ("PersistentVolumeClaim", "data-1"), ("PersistentVolumeClaim", "data-2")]:
        for event in events.values():
            event.clear()
        obj = secret(b"v") if kind == "Secret" else claim_object(name)
        index._on_referenced(kind, CacheEvent(Change.MODIFIED, obj, obj, 9))
        assert {n for n, e in events.items() if e.is_set()} == woken_by_scan(index, kind, "default", name)


def claim_object(name: str) -> storage_pb2.PersistentVolumeClaim:
    c = storage_pb2.PersistentVolumeClaim()
    c.metadata.name, c.metadata.namespace = name, "default"
    return c


def test_a_standalone_pods_status_write_is_not_resolved_again(monkeypatch: pytest.MonkeyPatch) -> None:
    pods, secrets = informers()
    index = AssignmentIndex(pods, secrets=secrets)
    first = pod("plain", "n1")
    apply(pods, index, Change.ADDED, first)
    index.current("n1")
    resolved: list[str] = []
    real = configenv.resolve_pod

    def counting(p: pod_pb2.Pod, *args: object) -> tuple[pod_pb2.Pod, str, list[str]]:
        resolved.append(p.metadata.name)
        return real(p, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(configenv, "resolve_pod", counting)
    running = pod("plain", "n1")
    running.status.phase = "Running"
    apply(pods, index, Change.MODIFIED, running)
    current, _ = index.current("n1")
    assert resolved == []
    assert list(current.pods) == [running]  # the new version goes out
    relabelled = pod("plain", "n1", label="b")  # a downwardAPI volume would read it: resolved again
    apply(pods, index, Change.MODIFIED, relabelled)
    index.current("n1")
    assert resolved == ["plain"]
