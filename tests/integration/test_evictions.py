"""Concurrent evictions against one budget, on the memory store and real etcd: the
budget's last disruption is taken by exactly one of them (a compare-and-swap on
the budget), the others are refused with TooManyRequests and their pods stay."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ObjectApi
from controlplane.store.base import Store
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import pod_pb2, policy_pb2
from protos.kinds import by_kind

PODS = 6


async def ready_pod(api: ObjectApi, name: str) -> None:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["app"] = "web"
    p.spec.node_name = "n1"
    p.spec.containers.add(name="main", image="busybox:1")
    created = await api.create(p)
    assert isinstance(created, pod_pb2.Pod)
    created.status.phase = "Running"
    created.status.conditions.add(type="Ready", status="True")
    await api.update_status(created)


async def budget_allowing(api: ObjectApi, allowed: int) -> None:
    b = policy_pb2.PodDisruptionBudget()
    b.metadata.name = "web"
    b.spec.min_available.int_val = PODS - allowed
    b.spec.selector.match_labels["app"] = "web"
    created = await api.create(b)
    assert isinstance(created, policy_pb2.PodDisruptionBudget)
    created.status.observed_generation = created.metadata.generation
    created.status.current_healthy, created.status.desired_healthy = PODS, PODS - allowed
    created.status.expected_pods, created.status.disruptions_allowed = PODS, allowed
    await api.update_status(created)


async def test_only_one_of_many_concurrent_evictions_takes_the_last_disruption(store: Store, key_prefix: str) -> None:
    api = ObjectApi(ObjectStore(store, prefix=key_prefix))
    for i in range(PODS):
        await ready_pod(api, f"web-{i}")
    await budget_allowing(api, 1)

    results = await asyncio.gather(*(api.evict("default", f"web-{i}") for i in range(PODS)), return_exceptions=True)

    evicted = [r for r in results if isinstance(r, pod_pb2.Pod)]
    refused = [r for r in results if isinstance(r, errors.TooManyRequestsError)]
    assert (len(evicted), len(refused)) == (1, PODS - 1), results
    b = await api.find(by_kind("PodDisruptionBudget"), "default", "web")
    assert isinstance(b, policy_pb2.PodDisruptionBudget)
    assert b.status.disruptions_allowed == 0
    assert list(b.status.disrupted_pods) == [evicted[0].metadata.name]
    listed = (await api.list("Pod", "default")).items
    terminating = [p for p in listed if isinstance(p, pod_pb2.Pod) and p.metadata.HasField("deletion_timestamp")]
    assert len(terminating) == 1


@pytest.mark.parametrize("allowed", [0, 2])
async def test_evictions_take_exactly_what_the_budget_allows(store: Store, key_prefix: str, allowed: int) -> None:
    api = ObjectApi(ObjectStore(store, prefix=key_prefix))
    for i in range(PODS):
        await ready_pod(api, f"web-{i}")
    await budget_allowing(api, allowed)
    results = await asyncio.gather(*(api.evict("default", f"web-{i}") for i in range(PODS)), return_exceptions=True)
    assert sum(isinstance(r, pod_pb2.Pod) for r in results) == allowed
    assert sum(isinstance(r, errors.TooManyRequestsError) for r in results) == PODS - allowed
