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


@pytest.mark.parametrize(
    ("spec", "affinity", "config"),
    [
        pytest.param({}, "None", None, id="none-by-default"),
        pytest.param({"sessionAffinity": "ClientIP"}, "ClientIP", 10800, id="client-ip-3-hours"),
        pytest.param(
            {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
            "ClientIP",
            60,
            id="client-ip-asked",
        ),
        pytest.param(
            {"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},
            "None",
            None,
            id="none-clears-the-config",
        ),
    ],
)
def test_session_affinity_defaults(spec: dict[str, Any], affinity: str, config: int | None) -> None:
    svc = parsed(service_doc(**spec))
    apply_defaults(by_kind("Service"), svc)
    assert svc.spec.session_affinity == affinity
    assert svc.spec.HasField("session_affinity_config") == (config is not None)
    if config is not None:
        assert svc.spec.session_affinity_config.client_ip.timeout_seconds == config
    assert svc.spec.internal_traffic_policy == "Cluster"
    assert validate(by_kind("Service"), svc) == []


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
        pytest.param({"ports": [{"port": 53, "protocol": "UDP"}]}, [], id="udp"),
        pytest.param(
            {"ports": [{"port": 53, "protocol": "SCTP"}]},
            ['spec.ports[0].protocol: Unsupported value: "SCTP": corral\'s Service data paths carry TCP and UDP only'],
            id="sctp",
        ),
        pytest.param(
            {"ports": [{"name": "d", "port": 53, "protocol": "UDP"}, {"name": "t", "port": 53, "protocol": "TCP"}]},
            [],
            id="dns-on-udp-and-tcp",
        ),
        pytest.param({"type": "LoadBalancer"}, [], id="load-balancer"),
        pytest.param(
            {"type": "ExternalName"},
            ['spec.type: Unsupported value: "ExternalName": corral has no ExternalName Services'],
            id="external-name",
        ),
        pytest.param(
            {"ports": [{"port": 80, "nodePort": 30080}]},
            ["spec.ports[0].nodePort: may not be used when `type` is 'ClusterIP'"],
            id="node-port-on-cluster-ip",
        ),
        pytest.param({"clusterIP": "10.43.0.10"}, [], id="asked-for-ip"),
        pytest.param(
            {"clusterIP": "10.43.0.300"},
            ['spec.clusterIP: must be "None", empty or a valid IP address, got "10.43.0.300"'],
            id="bad-ip",
        ),
        pytest.param(
            {"ipFamilies": ["IPv6"]},
            ["spec.ipFamilies: must be [\"IPv4\"] (corral's Services are IPv4 SingleStack), got ['IPv6']"],
            id="ipv6",
        ),
        pytest.param(
            {"ipFamilyPolicy": "RequireDualStack"},
            ['spec.ipFamilyPolicy: Unsupported value: "RequireDualStack": corral\'s Services are IPv4 SingleStack'],
            id="dual-stack",
        ),
        pytest.param({"sessionAffinity": "ClientIP"}, [], id="client-ip-affinity"),
        pytest.param(
            {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86400}}},
            [],
            id="affinity-a-day",
        ),
        pytest.param(
            {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}},
            [
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be greater than 0 and less than "
                "or equal to 86400, got 0"
            ],
            id="affinity-timeout-0",
        ),
        pytest.param(
            {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}},
            [
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be greater than 0 and less than "
                "or equal to 86400, got 86401"
            ],
            id="affinity-timeout-over-a-day",
        ),
        pytest.param(
            {"sessionAffinity": "Cookie"},
            ['spec.sessionAffinity: must be one of "None", "ClientIP", got "Cookie"'],
            id="affinity-unknown",
        ),
        pytest.param({"internalTrafficPolicy": "Local"}, [], id="internal-local"),
        pytest.param(
            {"internalTrafficPolicy": "Node"},
            ['spec.internalTrafficPolicy: must be one of "Cluster", "Local", got "Node"'],
            id="internal-unknown",
        ),
        pytest.param(
            {"type": "LoadBalancer", "loadBalancerIP": "1.2.3.4"},
            [
                "spec.loadBalancerIP: is deprecated and not served: corral's load balancer answers on every "
                "node's address (status.loadBalancer.ingress); remove the field"
            ],
            id="load-balancer-ip",
        ),
        pytest.param(
            {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8", "nope"]},
            ['spec.loadBalancerSourceRanges[1]: must be a CIDR such as "192.168.1.0/24", got "nope"'],
            id="source-ranges",
        ),
        pytest.param(
            {"externalTrafficPolicy": "Local"},
            ["spec.externalTrafficPolicy: may only be set when `type` is 'NodePort' or 'LoadBalancer'"],
            id="local-on-cluster-ip",
        ),
        pytest.param({"type": "NodePort", "externalTrafficPolicy": "Local"}, [], id="local-node-port"),
        pytest.param(
            {"ports": [{"port": 0}]},
            ["spec.ports[0].port: must be 1-65535, got 0", "spec.ports[0].targetPort: must be 1-65535, got 0"],
            id="port-zero",
        ),
        pytest.param(
            {"type": "NodePort", "ports": [{"port": 80, "nodePort": 70000}]},
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
            ["spec.ports[1].port: duplicate port 80/TCP: spec.ports[0] has it"],
            id="duplicate-port",
        ),
        pytest.param(
            {
                "type": "NodePort",
                "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30080}],
            },
            ["spec.ports[1].nodePort: duplicate nodePort 30080: spec.ports[0] has it"],
            id="duplicate-node-port",
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
        pytest.param({"ports": [{"name": "", "port": 8080, "protocol": "UDP"}]}, [], id="udp"),
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


async def test_cluster_ip_services_may_share_a_port_but_load_balancers_may_not() -> None:
    api = make_api()
    await api.create(parsed(service_doc("web", ports=[{"port": 80}])))
    await api.create(parsed(service_doc("web", namespace="other", ports=[{"port": 80}])))
    await api.create(parsed(service_doc("lb", type="LoadBalancer", ports=[{"port": 8080}])))
    clash = parsed(
        service_doc(
            "api",
            namespace="other",
            type="LoadBalancer",
            ports=[{"name": "a", "port": 9000}, {"name": "b", "port": 8080}],
        )
    )
    for write in (api.create, api.apply):
        with pytest.raises(errors.InvalidError) as info:
            await write(clash)
        assert [str(c) for c in info.value.causes] == [
            "spec.ports[1].port: port 8080 is already used on the nodes' addresses by LoadBalancer Service default/lb"
        ]
    # A ClusterIP Service on that port is fine: its port lives on its own address.
    await api.create(parsed(service_doc("api", ports=[{"port": 8080}])))
    _, outcome = await api.apply(parsed(service_doc("lb", type="LoadBalancer", ports=[{"port": 8080}])))
    assert outcome is ApplyOutcome.UNCHANGED


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
