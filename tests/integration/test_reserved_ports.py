"""No Service may take a control plane port (API, join, metrics) of any replica on the nodes'
addresses (a LoadBalancer's port, a nodePort): refused at create, apply and update with the field
named. A ClusterIP Service's port lives on its own virtual address and may be any number."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import grpc
import pytest

from controlplane.server import RunningServer, ServerConfig, start
from protos.corral.v1 import api_pb2, api_pb2_grpc, service_pb2
from tests.pki import admin_of, aio_channel

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def service(name: str, port: int, *, kind: str = "LoadBalancer") -> api_pb2.Object:
    s = service_pb2.Service()
    s.metadata.name = name
    s.spec.type = kind
    s.spec.selector["app"] = name
    s.spec.ports.add(port=port)
    return api_pb2.Object(service=s)


@pytest.fixture
async def replicas(etcd_endpoint: str) -> AsyncIterator[list[RunningServer]]:
    """Two replicas of one cluster (one store prefix), each with its API, join and metrics ports."""
    prefix = f"/reserved/{uuid.uuid4().hex}"
    async with AsyncExitStack() as stack:
        yield [
            await start(
                ServerConfig(
                    listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=prefix, metrics_listen="127.0.0.1:0"
                ),
                stack,
            )
            for _ in range(2)
        ]


async def refused(objects: api_pb2_grpc.ObjectServiceAsyncStub, call: str, obj: api_pb2.Object) -> str:
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "create": lambda: objects.Create(api_pb2.CreateRequest(object=obj)),
        "apply": lambda: objects.Apply(api_pb2.ApplyRequest(object=obj)),
        "update": lambda: objects.Update(api_pb2.UpdateRequest(object=obj)),
    }
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await calls[call]()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.details() or ""


async def test_a_service_cannot_take_a_control_plane_port(replicas: list[RunningServer]) -> None:
    first, second = replicas
    assert first.metrics_address is not None and second.metrics_address is not None
    async with aio_channel(second.address, admin_of(second)) as channel:  # through the other replica
        objects = api_pb2_grpc.ObjectServiceStub(channel)
        cases = [
            ("create", service("api", port_of(first.address)), "API", first.address),
            ("apply", service("join", port_of(first.join_address)), "join", first.address),
            ("create", service("scrape", port_of(first.metrics_address)), "metrics", first.address),
            ("apply", service("own", port_of(second.address)), "API", second.address),
        ]
        for call, obj, use, owner in cases:
            number = obj.service.spec.ports[0].port
            details = await refused(objects, call, obj)
            assert f"spec.ports[0].port: {number} is the control plane's {use} port (server {owner})" in details
        web = (await objects.Create(api_pb2.CreateRequest(object=service("web", 8080)))).object
        web.service.spec.ports[0].port = port_of(first.address)
        details = await refused(objects, "update", web)
        assert f"spec.ports[0].port: {port_of(first.address)} is the control plane's API port" in details
        # On its own virtual address, a ClusterIP Service may use the API's port number.
        inside = service("inside", port_of(first.address), kind="ClusterIP")
        await objects.Create(api_pb2.CreateRequest(object=inside))
        listed = await objects.List(api_pb2.ListRequest(kind="service"))
        assert sorted(o.service.metadata.name for o in listed.items) == ["inside", "web"]
