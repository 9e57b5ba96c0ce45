"""`apply` of a Deployment or ReplicaSet manifest without `spec.replicas` keeps the stored
count (which an autoscaler or `corral scale` set), as `kubectl apply` does."""

from __future__ import annotations

import pytest

from controlplane.apiserver.handlers import ApplyOutcome
from protos.corral.v1 import workloads_pb2
from tests.unit.controlplane.test_handlers import copy_of, deployment, make_api


def without_replicas(d: workloads_pb2.Deployment) -> workloads_pb2.Deployment:
    d.spec.ClearField("replicas")
    return d


async def test_manifest_without_replicas_keeps_the_count() -> None:
    api = make_api()
    created, _ = await api.apply(without_replicas(deployment()))
    assert isinstance(created, workloads_pb2.Deployment) and created.spec.replicas == 1
    scaled = copy_of(created, workloads_pb2.Deployment)
    scaled.spec.replicas = 6
    await api.update(scaled)
    again, outcome = await api.apply(without_replicas(deployment()))
    assert outcome is ApplyOutcome.UNCHANGED
    assert isinstance(again, workloads_pb2.Deployment) and again.spec.replicas == 6
    new_image, outcome = await api.apply(without_replicas(deployment(image="httpd:2.5")))
    assert outcome is ApplyOutcome.CONFIGURED
    assert isinstance(new_image, workloads_pb2.Deployment) and new_image.spec.replicas == 6


@pytest.mark.parametrize("replicas", [2, 0])
async def test_manifest_with_replicas_sets_them(replicas: int) -> None:
    api = make_api()
    await api.apply(deployment(replicas=6))
    applied, outcome = await api.apply(deployment(replicas=replicas))
    assert outcome is ApplyOutcome.CONFIGURED
    assert isinstance(applied, workloads_pb2.Deployment) and applied.spec.replicas == replicas


async def test_a_statefulset_manifest_without_replicas_keeps_the_count() -> None:
    api = make_api()

    def stateful_set() -> workloads_pb2.StatefulSet:
        s = workloads_pb2.StatefulSet()
        s.metadata.name, s.metadata.namespace = "db", "default"
        s.spec.selector.match_labels["app"] = "db"
        s.spec.template.metadata.labels["app"] = "db"
        s.spec.template.spec.containers.add(name="db", image="redis:7")
        return s

    created, _ = await api.apply(stateful_set())
    scaled = copy_of(created, workloads_pb2.StatefulSet)
    scaled.spec.replicas = 3
    await api.update(scaled)
    again, outcome = await api.apply(stateful_set())
    assert outcome is ApplyOutcome.UNCHANGED
    assert isinstance(again, workloads_pb2.StatefulSet) and again.spec.replicas == 3
