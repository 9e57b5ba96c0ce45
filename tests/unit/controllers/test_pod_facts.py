"""Pods' facts, read once per pod version, and the index of them by controller owner
(`PodFactsIndex`), checked against the full recomputation they replace: the facts against
the pod functions, the index against the informer's cache after random writes through the
in-memory store, and the ReplicaSet and Deployment syncs fed from the index against
reconciling every pod of the namespace."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.apiserver import labels
from controlplane.controllers.deployment.reconcile import reconcile as reconcile_deployment
from controlplane.controllers.deployment.reconcile import reconcile_facts as reconcile_deployment_facts
from controlplane.controllers.index import PodFactsIndex
from controlplane.controllers.replicaset import reconcile as rs_reconcile
from controlplane.controllers.replicaset.reconcile import reconcile, reconcile_facts
from controlplane.informer import Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos import owners
from protos import pods as podutil
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POD = by_kind("Pod")
OWNERS = ("rs-a", "rs-b", "")
NAMESPACES = ("default", "other")


def deployment() -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace, d.metadata.uid = "web", "default", "d-uid"
    d.metadata.generation = 2
    d.spec.replicas = 4
    d.spec.selector.match_labels["app"] = "web"
    d.spec.template.metadata.labels["app"] = "web"
    d.spec.template.spec.containers.add(name="main", image="httpd:2")
    d.spec.strategy.type = "RollingUpdate"
    d.spec.strategy.rolling_update.max_surge.str_val = "25%"
    d.spec.strategy.rolling_update.max_unavailable.str_val = "25%"
    return d


def replica_set(uid: str, replicas: int, *, min_ready_seconds: int = 0) -> workloads_pb2.ReplicaSet:
    rs = workloads_pb2.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace, rs.metadata.uid = f"web-{uid}", "default", uid
    rs.metadata.creation_timestamp.FromDatetime(NOW - timedelta(hours=1 if uid == "rs-a" else 2))
    rs.metadata.owner_references.append(owners.owner_reference(deployment()))
    rs.spec.replicas = replicas
    rs.spec.min_ready_seconds = min_ready_seconds
    rs.spec.selector.match_labels["app"] = "web"
    rs.spec.template.metadata.labels.update({"app": "web", "tier": "front"})
    rs.spec.template.spec.containers.add(name="main", image="httpd:2")
    return rs


def pod(
    name: str,
    *,
    namespace: str = "default",
    owner: str = "rs-a",
    phase: str = "Running",
    ready: str = "True",
    ready_ago: float | None = 30,
    deleting: bool = False,
    labels: dict[str, str] | None = None,
) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, namespace, f"uid-{name}"
    p.metadata.labels.update({"app": "web", "tier": "front"} if labels is None else labels)
    p.metadata.creation_timestamp.FromDatetime(NOW - timedelta(hours=3))
    if owner:
        p.metadata.owner_references.add(kind="ReplicaSet", name=f"web-{owner}", uid=owner, controller=True)
    p.metadata.owner_references.add(kind="Other", name="not-the-controller", uid="other", controller=False)
    if deleting:
        p.metadata.deletion_timestamp.FromDatetime(NOW)
    p.spec.node_name = "node-a"
    p.status.phase = phase
    if ready:
        condition = p.status.conditions.add(type="Ready", status=ready)
        if ready_ago is not None:
            condition.last_transition_time.FromDatetime(NOW - timedelta(seconds=ready_ago))
    return p


pods_ = st.builds(
    pod,
    st.sampled_from([f"p{i}" for i in range(8)]),
    namespace=st.sampled_from(NAMESPACES),
    owner=st.sampled_from(OWNERS),
    phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]),
    ready=st.sampled_from(["", "True", "False"]),
    ready_ago=st.one_of(st.none(), st.floats(min_value=0, max_value=120)),
    deleting=st.booleans(),
    labels=st.one_of(st.none(), st.just({"app": "web"}), st.just({"app": "db"})),
)


@pytest.mark.parametrize("min_ready", [0, 10, 60])
@given(p=pods_)
def test_facts_agree_with_the_pod_functions(min_ready: int, p: pod_pb2.Pod) -> None:
    facts = podutil.facts_of(p)
    ref = owners.controller_ref(p)
    assert facts.owner == (ref.uid if ref is not None else "")
    assert facts.namespace == p.metadata.namespace
    assert facts.labels == dict(p.metadata.labels)
    assert facts.terminal == podutil.is_terminal(p)
    assert facts.terminating == podutil.is_terminating(p)
    assert facts.active == podutil.is_active(p)
    assert facts.ready == podutil.is_ready(p)
    assert facts.available_at(min_ready) == podutil.available_at(p, min_ready)
    assert facts.is_available(min_ready, NOW) == podutil.is_available(p, min_ready, NOW)


@pytest.mark.parametrize("min_ready", [0, 10, 60])
@given(pods=st.lists(pods_, max_size=8))
def test_next_available_of_facts_agrees(min_ready: int, pods: list[pod_pb2.Pod]) -> None:
    facts = [podutil.facts_of(p) for p in pods]
    assert podutil.next_available_of(facts, min_ready, NOW) == podutil.next_available(pods, min_ready, NOW)


# A write: (pod to create or replace) or (namespace, name) to delete.
writes_ = st.lists(st.one_of(pods_, st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(["p0", "p1", "p2"]))))


async def _indexed(writes: list[pod_pb2.Pod | tuple[str, str]]) -> tuple[Informer, PodFactsIndex]:
    """An informer over the in-memory store and an index on it (hung on it half way through,
    so both its start from a filled cache and its following events are exercised)."""
    objects = ObjectStore(MemoryStore())
    informer = Informer(objects, POD)
    task = asyncio.create_task(informer.run())
    await informer.synced.wait()
    index: PodFactsIndex | None = None
    revision = 0
    for n, write in enumerate(writes):
        if n == len(writes) // 2:
            index = PodFactsIndex(informer)
        if isinstance(write, tuple):
            existing = await objects.get(POD, *write)
            if existing is not None:
                revision = await objects.delete(existing)
            continue
        existing = await objects.get(POD, write.metadata.namespace, write.metadata.name)
        if existing is None:
            revision = int((await objects.create(write)).metadata.resource_version)
        else:
            write.metadata.resource_version = existing.metadata.resource_version
            revision = int((await objects.update(write)).metadata.resource_version)
    for _ in range(1000):
        if informer.revision >= revision:
            break
        await asyncio.sleep(0)
    assert informer.revision >= revision, "the informer did not catch up with the writes"
    task.cancel()
    return informer, index or PodFactsIndex(informer)


def _by_key(facts: list[podutil.PodFacts]) -> dict[str, podutil.PodFacts]:
    return {f"{f.namespace}/{f.pod.metadata.name}": f for f in facts}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=writes_)
def test_index_matches_the_cache_after_random_writes(writes: list[pod_pb2.Pod | tuple[str, str]]) -> None:
    informer, index = asyncio.run(_indexed(writes))
    everything = [podutil.facts_of(p) for p in informer.items.values() if isinstance(p, pod_pb2.Pod)]
    for owner in OWNERS[:-1]:
        assert _by_key(index.owned_by(owner)) == _by_key([f for f in everything if f.owner == owner])
    for namespace in NAMESPACES:
        orphans = [f for f in everything if not f.owner and f.namespace == namespace]
        assert _by_key(index.orphans(namespace)) == _by_key(orphans)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    writes=writes_,
    replicas=st.integers(min_value=0, max_value=5),
    min_ready=st.sampled_from([0, 45]),
    manage=st.booleans(),
)
def test_replica_set_sync_from_the_index_equals_reconciling_the_namespace(
    writes: list[pod_pb2.Pod | tuple[str, str]], replicas: int, min_ready: int, manage: bool
) -> None:
    informer, index = asyncio.run(_indexed(writes))
    rs = replica_set("rs-a", replicas, min_ready_seconds=min_ready)
    namespace = [p for p in informer.items.values() if isinstance(p, pod_pb2.Pod) and p.metadata.namespace == "default"]
    candidates = [*index.owned_by("rs-a"), *index.orphans("default")]
    assert reconcile_facts(rs, candidates, now=NOW, manage=manage) == reconcile(rs, namespace, now=NOW, manage=manage)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=writes_, new=st.integers(min_value=0, max_value=5), old=st.integers(min_value=0, max_value=5))
def test_deployment_sync_from_the_index_equals_reconciling_the_namespace(
    writes: list[pod_pb2.Pod | tuple[str, str]], new: int, old: int
) -> None:
    informer, index = asyncio.run(_indexed(writes))
    sets = [replica_set("rs-a", new), replica_set("rs-b", old)]
    everything = list(informer.items.values())
    pods = [f for rs in sets for f in index.owned_by(rs.metadata.uid)]
    expected = reconcile_deployment(deployment(), sets, everything, now=NOW)  # type: ignore[arg-type]
    assert reconcile_deployment_facts(deployment(), sets, pods, now=NOW) == expected


def test_controllers_of_a_term_share_one_index_and_the_next_term_gets_a_fresh_one() -> None:
    informer = Informer(ObjectStore(MemoryStore()), POD)
    first = PodFactsIndex.shared(informer)
    assert PodFactsIndex.shared(informer) is first
    assert len(informer.listeners) == 1  # one pod event, one update of one index
    informer.remove_listener(informer.listeners[0])  # the term ended: the manager took it off
    fresh = PodFactsIndex.shared(informer)
    assert fresh is not first
    assert fresh.listening_to(informer)


label_maps = st.dictionaries(st.sampled_from(["app", "tier", "track"]), st.sampled_from(["web", "db", ""]), max_size=3)


@given(match_labels=label_maps, pod_labels=label_maps, expression=st.booleans())
def test_a_replica_sets_label_match_is_the_selectors(
    match_labels: dict[str, str], pod_labels: dict[str, str], expression: bool
) -> None:
    raw = meta_pb2.LabelSelector(match_labels=match_labels)
    if expression:
        raw.match_expressions.add(key="tier", operator="NotIn", values=["db"])
    selector = labels.from_label_selector(raw)
    assert rs_reconcile._matcher(raw, selector)(pod_labels) == selector.matches(pod_labels)
