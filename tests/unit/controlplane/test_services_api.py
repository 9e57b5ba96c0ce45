"""Services and EndpointSlices in the API: defaults, validation, listen-port
clashes across Services, and EndpointSlices through create/apply/get/list/watch/delete."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.apiserver import errors
from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.handlers import ApplyOutcome, ObjectApi
from controlplane.apiserver.validation import validate
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos import codec
from protos.corral.v1 import discovery_pb2, service_pb2
from protos.kinds import by_kind


def service_doc(name: str = "web", *, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}
    base.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": base}


def slice_doc(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-0", "labels": {"kubernetes.io/service-name": "web"}},
        "ports": [{"name": "", "port": 8080}],
        "endpoints": [
            {
                "addresses": ["10.0.0.1"],
                "conditions": {"ready": True},
                "hostPorts": {"": 31000},
                "nodeName": "n1",
                "targetRef": {"kind": "Pod", "name": "web-1"},
            }
        ],
    }
    base.update(fields)
    return base


def parsed(doc: dict[str, Any]) -> Any:
    info = by_kind(doc["kind"])
    msg, problems = codec.from_dict(doc, info.message)
    assert problems == []
    return msg


def causes_of(doc: dict[str, Any]) -> list[str]:
    msg = parsed(doc)
    info = by_kind(doc["kind"])
    apply_defaults(info, msg)
    return [str(c) for c in validate(info, msg)]


def test_service_defaults() -> None:
    svc = parsed(service_doc(ports=[{"port": 80}]))
    apply_defaults(by_kind("Service"), svc)
    assert isinstance(svc, service_pb2.Service)
    assert svc.spec.load_balancing == "RoundRobin"
    assert svc.spec.type == "ClusterIP"
    assert (svc.spec.ports[0].protocol, svc.spec.ports[0].target_port.int_val) == ("TCP", 80)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, [], id="valid"),
        pytest.param({"loadBalancing": "LeastConnections"}, [], id="least-connections"),
        pytest.param(
            {"loadBalancing": "Random"},
            ['spec.loadBalancing: must be one of "RoundRobin", "LeastConnections", got "Random"'],
            id="unknown-load-balancing",
        ),
        pytest.param(
            {"ports": [{"port": 53, "protocol": "UDP"}]},
            ['spec.ports[0].protocol: must be "TCP" (the node proxies relay TCP only), got "UDP"'],
            id="udp",
        ),
        pytest.param(
            {"ports": [{"port": 0}]},
            ["spec.ports[0].port: must be 1-65535, got 0", "spec.ports[0].targetPort: must be 1-65535, got 0"],
            id="port-zero",
        ),
        pytest.param(
            {"ports": [{"port": 80, "nodePort": 70000}]},
            ["spec.ports[0].nodePort: must be 0-65535, got 70000"],
            id="node-port-range",
        ),
        pytest.param(
            {"ports": [{"port": 80, "targetPort": "not a name"}]},
            [
                "spec.ports[0].targetPort: must be an IANA service name (at most 15 lower case letters, "
                'digits and "-", with at least one letter), got "not a name"'
            ],
            id="bad-target-name",
        ),
        pytest.param(
            {"ports": [{"port": 80}, {"name": "b", "port": 81}]},
            ["spec.ports[0].name: required when a Service has more than one port"],
            id="names-required",
        ),
        pytest.param(
            {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]},
            ['spec.ports[1].name: duplicate port name "a"'],
            id="duplicate-names",
        ),
        pytest.param(
            {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]},
            ["spec.ports[1].port: duplicate port 80: spec.ports[0] has it"],
            id="duplicate-port",
        ),
        pytest.param(
            {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "nodePort": 80}]},
            ["spec.ports[1].nodePort: port 80 is already listened on for spec.ports[0]"],
            id="node-port-equals-other-port",
        ),
    ],
)
def test_service_validation(spec: dict[str, Any], expected: list[str]) -> None:
    assert causes_of(service_doc(**spec)) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({}, [], id="valid"),
        pytest.param(
            {"addressType": "IPv5"},
            ['addressType: must be one of "IPv4", "IPv6", "FQDN", got "IPv5"'],
            id="address-type",
        ),
        pytest.param(
            {"ports": [{"name": "", "port": 8080, "protocol": "UDP"}]},
            ['ports[0].protocol: must be "TCP" (the node proxies relay TCP only), got "UDP"'],
            id="udp",
        ),
        pytest.param(
            {"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]},
            ['ports[1].name: duplicate port name "a"', 'endpoints[0].hostPorts[""]: names no port of this slice: ""'],
            id="duplicate-port-names",
        ),
        pytest.param(
            {"endpoints": [{"addresses": ["node-1"], "hostPorts": {"": 0}}]},
            [
                'endpoints[0].addresses[0]: must be an IPv4 address, got "node-1"',
                'endpoints[0].hostPorts[""]: must be 1-65535, got 0',
            ],
            id="bad-endpoint",
        ),
        pytest.param(
            {"endpoints": [{"addresses": []}]},
            ["endpoints[0].addresses: must have 1-100 items, got 0"],
            id="no-address",
        ),
        pytest.param({"trafficWeights": {"abc": -1}}, ["trafficWeights.abc: must be >= 0, got -1"], id="weight"),
    ],
)
def test_endpoint_slice_validation(fields: dict[str, Any], expected: list[str]) -> None:
    assert causes_of(slice_doc(**fields)) == expected


# -- the API -----------------------------------------------------------------------------


def make_api() -> ObjectApi:
    return ObjectApi(ObjectStore(MemoryStore()))


async def test_a_listen_port_used_by_another_service_is_refused_on_every_write() -> None:
    api = make_api()
    await api.create(parsed(service_doc("web", ports=[{"port": 8080}])))
    clash = parsed(
        service_doc("api", namespace="other", ports=[{"name": "a", "port": 9000}, {"name": "b", "port": 8080}])
    )
    for write in (api.create, api.apply):
        with pytest.raises(errors.InvalidError) as info:
            await write(clash)
        assert [str(c) for c in info.value.causes] == [
            "spec.ports[1].port: port 8080 is already used by Service default/web"
        ]
    with pytest.raises(errors.InvalidError, match="spec.ports.0..nodePort: port 8080 is already used"):
        await api.create(parsed(service_doc("api", ports=[{"port": 9000, "nodePort": 8080}])))
    # An update of an existing Service that would take the port is refused as well.
    api_svc = await api.create(parsed(service_doc("api", ports=[{"port": 9000}])))
    assert isinstance(api_svc, service_pb2.Service)
    api_svc.spec.ports[0].port = 8080
    with pytest.raises(errors.InvalidError, match="port 8080 is already used by Service default/web"):
        await api.update(api_svc)
    # The Service itself may be re-applied with its own ports.
    _, outcome = await api.apply(parsed(service_doc("web", ports=[{"port": 8080}])))
    assert outcome is ApplyOutcome.UNCHANGED


async def test_services_that_clash_already_can_be_reapplied_but_not_take_more() -> None:
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    await api.create(parsed(service_doc("a", ports=[{"name": "x", "port": 8080}, {"name": "y", "port": 8081}])))
    # Written past the check (as two concurrent creates can be): b has a's port too.
    clashing = parsed(service_doc("b", ports=[{"port": 8080}]))
    apply_defaults(by_kind("Service"), clashing)
    clashing.metadata.uid = "b-uid"
    await objects.create(clashing)
    for doc in (
        service_doc("a", ports=[{"name": "x", "port": 8080}, {"name": "y", "port": 8081}], selector={}),
        service_doc("b", ports=[{"port": 8080}], selector={}),
    ):
        _, outcome = await api.apply(parsed(doc))
        assert outcome is ApplyOutcome.CONFIGURED
    with pytest.raises(
        errors.InvalidError,
        match=r"spec.ports\[1\].port: port 8081 is already used by Service "
        "default/a",
    ):
        await api.apply(parsed(service_doc("b", ports=[{"name": "x", "port": 8080}, {"name": "y", "port": 8081}])))


async def test_endpoint_slices_through_the_api() -> None:
    api = make_api()
    seen: list[tuple[Change, str]] = []

    async def watch(after: str) -> None:
        async for item in api.watch("endpointslices", "default", resource_version=after):
            seen.append((item.change, item.obj.metadata.name))

    created = await api.create(parsed(slice_doc()))
    assert isinstance(created, discovery_pb2.EndpointSlice)
    assert created.address_type == "IPv4" and created.ports[0].protocol == "TCP"
    got = await api.get("endpointslice", "default", "web-0")
    assert got == created
    listed = await api.list("endpointslices.discovery.k8s.io", "default", selector="kubernetes.io/service-name=web")
    assert [o.metadata.name for o in listed.items] == ["web-0"]
    watcher = asyncio.create_task(watch(str(listed.resource_version)))
    _, outcome = await api.apply(parsed(slice_doc()))
    assert outcome is ApplyOutcome.UNCHANGED
    updated, outcome = await api.apply(parsed(slice_doc(trafficWeights={"abc": 10}, endpoints=[])))
    assert outcome is ApplyOutcome.CONFIGURED
    assert isinstance(updated, discovery_pb2.EndpointSlice)
    assert dict(updated.traffic_weights) == {"abc": 10} and list(updated.endpoints) == []
    assert updated.metadata.generation == 2
    await api.delete("EndpointSlice", "default", "web-0")
    with pytest.raises(errors.NotFoundError, match='endpointslices.discovery.k8s.io "web-0" not found'):
        await api.get("EndpointSlice", "default", "web-0")
    async with asyncio.timeout(5):
        while len(seen) < 2:
            await asyncio.sleep(0.01)
    watcher.cancel()
    assert seen == [(Change.MODIFIED, "web-0"), (Change.DELETED, "web-0")]
