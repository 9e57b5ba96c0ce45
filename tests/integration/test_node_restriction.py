"""A node acts only as itself: what Register may set, and whose pods a node may report on."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from protos.corral.v1 import (
    api_pb2,
    configmap_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
    node_service_pb2,
    pod_pb2,
    secret_pb2,
)
from tests.integration.test_node_service import Plane, assigned, bound_pod, plane, registration
from tests.pki import admin_of, aio_channel

pytestmark = pytest.mark.etcd
__all__ = ["plane"]  # the fixture


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("node-role.kubernetes.io/control-plane", "", id="a role"),
        pytest.param("node-restriction.kubernetes.io/pci", "yes", id="node-restriction prefix"),
        pytest.param("example.node-restriction.kubernetes.io/pci", "yes", id="node-restriction subdomain"),
        pytest.param("kubernetes.io/hostname", "n2", id="another node's hostname"),
        pytest.param("kubernetes.io/role", "master", id="other kubernetes.io label"),
        pytest.param("corral.io/dedicated", "db", id="corral's own prefix"),
    ],
)
async def test_register_cannot_set_labels_reserved_to_admins(plane: Plane, key: str, value: str) -> None:
    nodes = await plane.node("n1")
    request = registration("n1")
    request.labels[key] = value
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await nodes.Register(request)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"labels.{key}" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await (await plane.admin()).Get(api_pb2.GetRequest(kind="node", name="n1"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_register_may_set_the_kubelets_own_labels(plane: Plane) -> None:
    nodes = await plane.node("n1")
    request = registration("n1")
    request.labels.update(
        {
            "kubernetes.io/hostname": "n1",
            "kubernetes.io/arch": "arm64",
            "topology.kubernetes.io/zone": "rack-2",
            "node.kubernetes.io/instance-type": "pi4",
            "kubelet.kubernetes.io/x": "y",
            "disk": "ssd",
        }
    )
    await nodes.Register(request)
    got = (await (await plane.admin()).Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    assert dict(got.metadata.labels) == dict(request.labels)


def bad(change: str) -> node_service_pb2.RegisterRequest:
    request = registration("n1")
    status = request.status
    if change == "label value":
        request.labels["zone"] = "not a value!"
    elif change == "capacity":
        status.capacity["cpu"] = "lots"
    elif change == "negative":
        status.allocatable["memory"] = "-1Gi"
    elif change == "address type":
        status.addresses.add(type="Secret", address="10.0.0.1")
    elif change == "address":
        status.addresses.add(type="InternalIP", address="x" * 300)
    elif change == "runtime":
        status.runtimes.append("Not A Runtime")
    elif change == "node info":
        status.node_info.os_image = "x" * 10_000
    elif change == "many addresses":
        for i in range(40):
            status.addresses.add(type="InternalIP", address=f"10.0.0.{i}")
    return request


BAD = [
    pytest.param("label value", "labels.zone", id="label value"),
    pytest.param("capacity", "status.capacity.cpu", id="capacity not a quantity"),
    pytest.param("negative", "status.allocatable.memory", id="negative allocatable"),
    pytest.param("address type", "status.addresses[0].type", id="address type"),
    pytest.param("address", "status.addresses[0].address", id="address too long"),
    pytest.param("runtime", "status.runtimes[1]", id="runtime name"),
    pytest.param("node info", "status.nodeInfo.osImage", id="node info too long"),
    pytest.param("many addresses", "status.addresses", id="too many addresses"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
async def test_register_validates_the_node_like_the_api(plane: Plane, change: str, field: str) -> None:
    nodes = await plane.node("n1")
    objects = await plane.admin()
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a new Node
        await nodes.Register(bad(change))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field}:" in (info.value.details() or "")
    await nodes.Register(registration("n1"))
    before = (await objects.Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    with pytest.raises(grpc.aio.AioRpcError) as info:  # a re-registration of the Node
        await nodes.Register(bad(change))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field}:" in (info.value.details() or "")
    after = (await objects.Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    assert after.metadata.resource_version == before.metadata.resource_version


async def test_reregister_keeps_the_labels_an_admin_set(plane: Plane) -> None:
    nodes = await plane.node("n1")
    objects = await plane.admin()
    await nodes.Register(registration("n1"))  # zone=a
    node = (await objects.Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    node.metadata.labels["zone"] = "b"
    node.metadata.labels["dedicated"] = "db"
    node.metadata.labels["node-role.kubernetes.io/edge"] = ""
    await objects.Update(api_pb2.UpdateRequest(object=api_pb2.Object(node=node)))
    request = registration("n1")
    request.labels["rack"] = "7"
    await nodes.Register(request)
    got = (await objects.Get(api_pb2.GetRequest(kind="node", name="n1"))).object.node
    assert dict(got.metadata.labels) == {
        "zone": "b",
        "dedicated": "db",
        "node-role.kubernetes.io/edge": "",
        "rack": "7",
    }


def usage(namespace: str, name: str, uid: str) -> metrics_pb2.PodUsage:
    pod = metrics_pb2.PodUsage(namespace=namespace, name=name, uid=uid)
    pod.containers.add(name="main", cpu_millis=900, memory_bytes=1 << 20)
    return pod


async def test_metrics_reports_count_only_for_the_reporting_nodes_pods(plane: Plane) -> None:
    n1, n2 = await plane.node("n1"), await plane.node("n2")
    objects = await plane.admin()
    await n1.Register(registration("n1"))
    await n2.Register(registration("n2"))
    mine = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("mine", "n1")))).object.pod
    theirs = (await objects.Create(api_pb2.CreateRequest(object=bound_pod("theirs", "n2")))).object.pod
    stream = n2.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n2"))
    await assigned(stream, "theirs")  # the control plane's pod cache has both
    stream.cancel()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await n1.ReportMetrics(
            metrics_pb2.MetricsReport(
                node_name="n1",
                pods=[usage("default", "mine", mine.metadata.uid), usage("default", "theirs", theirs.metadata.uid)],
            )
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert 'pod default/theirs, which is bound to node "n2"' in (info.value.details() or "")
    # Without the uid, or for a pod that does not exist: left out, the rest kept.
    await n1.ReportMetrics(
        metrics_pb2.MetricsReport(
            node_name="n1",
            pods=[
                usage("default", "mine", mine.metadata.uid),
                usage("default", "theirs", ""),
                usage("default", "ghost", "x"),
            ],
        )
    )
    channel = await plane.stack.enter_async_context(aio_channel(plane.running.address, admin_of(plane.running)))
    metrics = metrics_pb2_grpc.MetricsServiceStub(channel)
    got = await metrics.PodMetrics(metrics_pb2.PodMetricsRequest(namespace="default"))
    assert [(p.name, p.usage.containers[0].cpu_millis) for p in got.items] == [("mine", 900)]


def _volume_pod(name: str, node: str, secret: str, config_map: str) -> api_pb2.Object:
    """A pod with a secret volume (one key, by items) and a configMap volume."""
    obj = bound_pod(name, node)
    volumes = obj.pod.spec.volumes
    volumes.add(name="creds").secret.CopyFrom(
        pod_pb2.SecretVolumeSource(secret_name=secret, items=[pod_pb2.KeyToPath(key="password", path="pw")])
    )
    volumes.add(name="conf").config_map.name = config_map
    return obj


async def test_a_node_gets_only_its_own_pods_volume_files_and_only_the_keys_used(plane: Plane) -> None:
    """Two nodes, each with a pod mounting its own Secret and ConfigMap: each node's assignment
    set carries only its own pod's files, and of the Secret only the key its items name; a
    changed ConfigMap reaches the node using it, with the pod's spec (and generation) unchanged."""
    objects = await plane.admin()
    for name in ("n1", "n2"):
        await (await plane.node(name)).Register(registration(name))
    for suffix in ("1", "2"):
        secret = secret_pb2.Secret(data={"password": f"pw-{suffix}".encode(), "other": f"unused-{suffix}".encode()})
        secret.metadata.name = f"db-{suffix}"
        await objects.Create(api_pb2.CreateRequest(object=api_pb2.Object(secret=secret)))
        cm = configmap_pb2.ConfigMap(data={"app.conf": f"conf-{suffix}"})
        cm.metadata.name = f"app-{suffix}"
        await objects.Create(api_pb2.CreateRequest(object=api_pb2.Object(config_map=cm)))
        await objects.Create(
            api_pb2.CreateRequest(object=_volume_pod(f"pod-{suffix}", f"n{suffix}", f"db-{suffix}", f"app-{suffix}"))
        )
    n1 = (await plane.node("n1")).WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n1"))
    async with asyncio.timeout(10):
        update = await n1.read()
        while len(update.volumes) < 2:
            update = await n1.read()
    [pod] = update.pods
    files = {(v.pod_uid, v.volume, v.secret): {f.path: f.data for f in v.files} for v in update.volumes}
    assert files == {
        (pod.metadata.uid, "creds", True): {"pw": b"pw-1"},
        (pod.metadata.uid, "conf", False): {"app.conf": b"conf-1"},
    }
    everything = update.SerializeToString()
    assert b"pw-2" not in everything and b"conf-2" not in everything and b"unused-1" not in everything

    cm = configmap_pb2.ConfigMap(data={"app.conf": "conf-1 changed"})
    cm.metadata.name = "app-1"
    await objects.Apply(api_pb2.ApplyRequest(object=api_pb2.Object(config_map=cm)))
    async with asyncio.timeout(10):
        changed = await n1.read()
        while not any(f.data == b"conf-1 changed" for v in changed.volumes for f in v.files):
            changed = await n1.read()
    assert changed.pods[0].metadata.generation == pod.metadata.generation
    assert changed.pods[0].spec == pod.spec
