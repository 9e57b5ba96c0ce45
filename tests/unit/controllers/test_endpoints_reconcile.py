"""Endpoints reconcile: which pods become endpoints, their conditions and host
ports, slicing, traffic weights, and writing only what changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate
from controlplane.controllers.endpoints.reconcile import MANAGED_BY, SliceActions, reconcile
from protos.corral.v1 import discovery_pb2, node_pb2, pod_pb2, service_pb2, workloads_pb2
from protos.kinds import by_kind
from protos.wellknown import ENDPOINTSLICE_MANAGED_BY, SERVICE_NAME

SLICE = by_kind("EndpointSlice")


def service(
    *,
    selector: dict[str, str] | None = None,
    target: int | str | None = 8080,
    port: int = 80,
    extra_port: tuple[str, int | str] | None = None,
) -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name, s.metadata.namespace, s.metadata.uid = "web", "default", "svc-uid"
    s.spec.selector.update({"app": "web"} if selector is None else selector)
    p = s.spec.ports.add(name="http" if extra_port else "", port=port)
    if isinstance(target, int):
        p.target_port.int_val = target
    elif isinstance(target, str):
        p.target_port.str_val = target
    if extra_port is not None:
        q = s.spec.ports.add(name=extra_port[0], port=9000)
        if isinstance(extra_port[1], int):
            q.target_port.int_val = extra_port[1]
        else:
            q.target_port.str_val = extra_port[1]
    apply_defaults(by_kind("Service"), s)
    return s


@dataclass
class PodSpec:
    name: str
    ready: bool = True
    node: str = "n1"
    host_ip: str = "10.0.0.1"
    phase: str = "Running"
    deleting: bool = False
    labels: dict[str, str] = field(default_factory=lambda: {"app": "web"})
    # container port → published host port (0: declared, not published)
    ports: dict[int, int] = field(default_factory=lambda: {8080: 31000})
    port_names: dict[int, str] = field(default_factory=dict)
    spec_host_ports: dict[int, int] = field(default_factory=dict)


def pod(spec: PodSpec) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = spec.name, "default", f"uid-{spec.name}"
    p.metadata.labels.update(spec.labels)
    if spec.deleting:
        p.metadata.deletion_timestamp.seconds = 1_700_000_000
    p.spec.node_name = spec.node
    c = p.spec.containers.add(name="main", image="httpd:2")
    for number in sorted({*spec.ports, *spec.spec_host_ports}):
        c.ports.add(
            container_port=number,
            name=spec.port_names.get(number, ""),
            host_port=spec.spec_host_ports.get(number, 0),
            protocol="TCP",
        )
    p.status.phase = spec.phase
    p.status.host_ip = spec.host_ip
    p.status.conditions.add(type="Ready", status="True" if spec.ready else "False")
    status = p.status.container_statuses.add(name="main", ready=spec.ready)
    for number, published in spec.ports.items():
        if published:
            status.ports.add(container_port=number, host_port=published, protocol="TCP")
    return p


def node(name: str, ready: bool = True) -> node_pb2.Node:
    n = node_pb2.Node()
    n.metadata.name = name
    n.status.conditions.add(type="Ready", status="True" if ready else "False")
    return n


NODES = {"n1": node("n1"), "n2": node("n2")}


def run(
    svc: service_pb2.Service | None,
    pods: Sequence[PodSpec],
    *,
    nodes: dict[str, node_pb2.Node] | None = None,
    slices: Sequence[discovery_pb2.EndpointSlice] = (),
    deployments: Sequence[workloads_pb2.Deployment] = (),
    max_endpoints: int = 100,
    taken: Sequence[str] = (),
) -> SliceActions:
    return reconcile(
        svc,
        [pod(p) for p in pods],
        NODES if nodes is None else nodes,
        deployments,
        slices,
        taken=taken,
        max_endpoints=max_endpoints,
    )


def endpoints_of(actions: SliceActions) -> list[discovery_pb2.Endpoint]:
    return [e for s in (*actions.create, *actions.update) for e in s.endpoints]


def stored(slices: Sequence[discovery_pb2.EndpointSlice]) -> list[discovery_pb2.EndpointSlice]:
    """The slices as the store would hand them back (uid and resourceVersion set)."""
    out = []
    for n, s in enumerate(slices):
        copy = discovery_pb2.EndpointSlice()
        copy.CopyFrom(s)
        copy.metadata.uid, copy.metadata.resource_version = f"slice-{n}", str(100 + n)
        out.append(copy)
    return out


# -- which pods, with which conditions ------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "nodes", "conditions"),
    [
        pytest.param(PodSpec("a"), None, (True, True, False), id="ready"),
        pytest.param(PodSpec("a", ready=False), None, (False, False, False), id="unready"),
        pytest.param(PodSpec("a", deleting=True), None, (False, True, True), id="terminating"),
        pytest.param(PodSpec("a", ready=False, deleting=True), None, (False, False, True), id="terminating-unready"),
        pytest.param(PodSpec("a"), {"n1": node("n1", ready=False)}, (False, False, False), id="node-not-ready"),
        pytest.param(PodSpec("a"), {}, (False, False, False), id="node-unknown"),
    ],
)
def test_endpoint_conditions(
    spec: PodSpec, nodes: dict[str, node_pb2.Node] | None, conditions: tuple[bool, bool, bool]
) -> None:
    [endpoint] = endpoints_of(run(service(), [spec], nodes=nodes))
    c = endpoint.conditions
    assert (c.ready, c.serving, c.terminating) == conditions
    assert list(endpoint.addresses) == ["10.0.0.1"]
    assert endpoint.node_name == "n1"
    assert (endpoint.target_ref.kind, endpoint.target_ref.name, endpoint.target_ref.uid) == ("Pod", "a", "uid-a")


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(PodSpec("a", labels={"app": "other"}), id="labels-do-not-match"),
        pytest.param(PodSpec("a", node=""), id="not-bound"),
        pytest.param(PodSpec("a", host_ip=""), id="no-host-ip"),
        pytest.param(PodSpec("a", phase="Succeeded"), id="succeeded"),
        pytest.param(PodSpec("a", phase="Failed"), id="failed"),
        pytest.param(PodSpec("a", ports={9999: 31000}), id="publishes-no-service-port"),
        pytest.param(PodSpec("a", ports={8080: 0}), id="declared-not-published"),
    ],
)
def test_pods_that_are_no_endpoint(spec: PodSpec) -> None:
    assert run(service(), [spec]) == SliceActions()


def test_service_without_selector_gets_no_slices_and_loses_managed_ones() -> None:
    existing = stored(run(service(), [PodSpec("a")]).create)
    assert run(service(selector={}), [PodSpec("a")]) == SliceActions()
    assert run(service(selector={}), [PodSpec("a")], slices=existing).delete == tuple(existing)


def test_deleted_service_deletes_its_slices() -> None:
    existing = stored(run(service(), [PodSpec("a"), PodSpec("b")], max_endpoints=1).create)
    assert len(existing) == 2
    actions = run(None, [PodSpec("a")], slices=existing)
    assert [s.metadata.name for s in actions.delete] == ["web-0", "web-1"]
    assert not actions.create and not actions.update


# -- ports ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("svc", "spec", "host_ports", "slice_port"),
    [
        pytest.param(service(target=8080), PodSpec("a"), {"": 31000}, 8080, id="numeric-target"),
        pytest.param(service(target=None, port=8080), PodSpec("a"), {"": 31000}, 8080, id="target-defaults-to-port"),
        pytest.param(
            service(target="web"),
            PodSpec("a", ports={8080: 31000}, port_names={8080: "web"}),
            {"": 31000},
            8080,
            id="named-target",
        ),
        pytest.param(service(target="web"), PodSpec("a", ports={8080: 31000}), {}, None, id="named-target-missing"),
        pytest.param(
            service(target=8080),
            PodSpec("a", ports={8080: 0}, spec_host_ports={8080: 8080}),
            {"": 8080},
            8080,
            id="spec-host-port-fallback",
        ),
        pytest.param(
            service(extra_port=("metrics", 9090)),
            PodSpec("a", ports={8080: 31000, 9090: 31001}),
            {"http": 31000, "metrics": 31001},
            8080,
            id="two-ports",
        ),
        pytest.param(
            service(extra_port=("metrics", 9090)),
            PodSpec("a", ports={8080: 31000}),
            {"http": 31000},
            8080,
            id="one-of-two-ports-missing",
        ),
    ],
)
def test_host_ports(
    svc: service_pb2.Service, spec: PodSpec, host_ports: dict[str, int], slice_port: int | None
) -> None:
    actions = run(svc, [spec])
    if not host_ports:
        assert actions == SliceActions()
        return
    [created] = actions.create
    assert dict(created.endpoints[0].host_ports) == host_ports
    first = created.ports[0]
    assert (first.name, first.protocol) == (svc.spec.ports[0].name, "TCP")
    assert (first.port if first.HasField("port") else None) == slice_port
    assert [p.name for p in created.ports] == [p.name for p in svc.spec.ports]


def test_named_target_port_resolves_per_pod_and_the_slice_takes_the_first() -> None:
    pods = [
        PodSpec("b", ports={9090: 31002}, port_names={9090: "web"}),
        PodSpec("a", ports={8080: 31001}, port_names={8080: "web"}),
    ]
    [created] = run(service(target="web"), pods).create
    assert created.ports[0].port == 8080
    assert {e.target_ref.name: e.host_ports[""] for e in created.endpoints} == {"a": 31001, "b": 31002}


# -- the slices ------------------------------------------------------------------------


def test_slice_shape_is_valid_and_owned_by_the_service() -> None:
    [created] = run(service(), [PodSpec("b"), PodSpec("a", node="n2", host_ip="10.0.0.2")]).create
    m = created.metadata
    assert (m.name, m.namespace) == ("web-0", "default")
    assert dict(m.labels) == {SERVICE_NAME: "web", ENDPOINTSLICE_MANAGED_BY: MANAGED_BY}
    [owner] = m.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Service", "web", "svc-uid", True)
    assert created.address_type == "IPv4"
    assert [e.target_ref.name for e in created.endpoints] == ["a", "b"]
    assert validate(SLICE, created) == []


@pytest.mark.parametrize(
    ("count", "max_endpoints", "sizes"),
    [
        pytest.param(5, 2, [2, 2, 1], id="five-by-two"),
        pytest.param(4, 2, [2, 2], id="exact"),
        pytest.param(3, 100, [3], id="one-slice"),
    ],
)
def test_slicing_at_most_n(count: int, max_endpoints: int, sizes: list[int]) -> None:
    pods = [PodSpec(f"p{i}") for i in range(count)]
    actions = run(service(), pods, max_endpoints=max_endpoints)
    assert [len(s.endpoints) for s in actions.create] == sizes
    assert [s.metadata.name for s in actions.create] == [f"web-{i}" for i in range(len(sizes))]


def test_slice_names_skip_names_other_slices_have() -> None:
    actions = run(service(), [PodSpec("a"), PodSpec("b")], max_endpoints=1, taken=["web-0", "web-2"])
    assert [s.metadata.name for s in actions.create] == ["web-1", "web-3"]


def test_unchanged_pods_write_nothing() -> None:
    pods = [PodSpec(f"p{i}") for i in range(5)]
    existing = stored(run(service(), pods, max_endpoints=2).create)
    assert run(service(), list(reversed(pods)), slices=existing, max_endpoints=2) == SliceActions(endpoints=5, ready=5)


def test_readiness_change_rewrites_only_its_slice() -> None:
    pods = [PodSpec(f"p{i}") for i in range(4)]
    existing = stored(run(service(), pods, max_endpoints=2).create)
    pods[3].ready = False
    actions = run(service(), pods, slices=existing, max_endpoints=2)
    [updated] = actions.update
    assert updated.metadata.name == "web-1" and updated.metadata.resource_version == "101"
    assert [(e.target_ref.name, e.conditions.ready) for e in updated.endpoints] == [("p2", True), ("p3", False)]
    assert not actions.create and not actions.delete and actions.ready == 3


def test_endpoints_stay_in_their_slice_and_new_ones_fill_room() -> None:
    existing = stored(run(service(), [PodSpec("a"), PodSpec("b"), PodSpec("c")], max_endpoints=2).create)
    # "b" goes; "aa" comes: it fills the room "b" left in web-0 instead of reshuffling.
    actions = run(service(), [PodSpec("a"), PodSpec("c"), PodSpec("aa")], slices=existing, max_endpoints=2)
    [updated] = actions.update
    assert updated.metadata.name == "web-0"
    assert [e.target_ref.name for e in updated.endpoints] == ["a", "aa"]
    assert not actions.create and not actions.delete


def test_emptied_slices_are_deleted_and_emptied_first_slice_is_reused() -> None:
    existing = stored(run(service(), [PodSpec("a"), PodSpec("b")], max_endpoints=1).create)
    actions = run(service(), [PodSpec("z")], slices=existing, max_endpoints=1)
    assert [s.metadata.name for s in actions.update] == ["web-0"]
    assert [e.target_ref.name for e in actions.update[0].endpoints] == ["z"]
    assert [s.metadata.name for s in actions.delete] == ["web-1"]
    assert not actions.create


def test_no_endpoints_left_deletes_every_slice() -> None:
    existing = stored(run(service(), [PodSpec("a")]).create)
    actions = run(service(), [PodSpec("a", phase="Failed")], slices=existing)
    assert actions.delete == tuple(existing) and not actions.update


def test_recreated_service_takes_over_its_slices() -> None:
    existing = stored(run(service(), [PodSpec("a")]).create)
    again = service()
    again.metadata.uid = "new-uid"
    [updated] = run(again, [PodSpec("a")], slices=existing).update
    assert updated.metadata.owner_references[0].uid == "new-uid"


# -- traffic weights -------------------------------------------------------------------


def deployment(name: str, weights: dict[str, int]) -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace = name, "default"
    for group, weight in weights.items():
        d.status.traffic.add(pod_template_hash=group, weight=weight)
    return d


@pytest.mark.parametrize(
    ("deployments", "weights"),
    [
        pytest.param([], {}, id="no-deployments"),
        pytest.param([deployment("web", {})], {}, id="no-split"),
        pytest.param([deployment("web", {"old": 90, "new": 10})], {"old": 90, "new": 10}, id="canary"),
        pytest.param([deployment("other", {"x": 50, "y": 50})], {}, id="unrelated-deployment"),
        pytest.param(
            [deployment("web", {"old": 0, "new": 100}), deployment("side", {"side1": 100})],
            {"old": 0, "new": 100, "side1": 100},
            id="union-of-relevant",
        ),
    ],
)
def test_traffic_weights(deployments: list[workloads_pb2.Deployment], weights: dict[str, int]) -> None:
    pods = [
        PodSpec("a", labels={"app": "web", "pod-template-hash": "old"}),
        PodSpec("b", labels={"app": "web", "pod-template-hash": "new"}),
        PodSpec("c", labels={"app": "web", "pod-template-hash": "side1"}),
    ]
    if weights.get("side1") is None:
        pods = pods[:2]
    actions = run(service(), pods, deployments=deployments, max_endpoints=1)
    assert len(actions.create) == len(pods)
    for created in actions.create:
        assert dict(created.traffic_weights) == weights
    assert {e.target_ref.name: e.group for e in endpoints_of(actions)} == {
        "a": "old",
        "b": "new",
        **({"c": "side1"} if len(pods) == 3 else {}),
    }


def test_weight_change_rewrites_every_slice() -> None:
    pods = [PodSpec(f"p{i}", labels={"app": "web", "pod-template-hash": "h1"}) for i in range(3)]
    existing = stored(run(service(), pods, deployments=[deployment("web", {"h1": 100})], max_endpoints=2).create)
    actions = run(
        service(), pods, deployments=[deployment("web", {"h1": 50, "h2": 50})], slices=existing, max_endpoints=2
    )
    assert [s.metadata.name for s in actions.update] == ["web-0", "web-1"]
    assert all(dict(s.traffic_weights) == {"h1": 50, "h2": 50} for s in actions.update)


def test_a_udp_service_port_takes_the_udp_container_port_only() -> None:
    svc = service(target=53, port=53)
    svc.spec.ports[0].protocol = "UDP"
    udp_pod = pod(PodSpec("a", ports={}))
    udp_pod.spec.containers[0].ports.add(container_port=53, protocol="UDP")
    udp_pod.status.container_statuses[0].ports.add(container_port=53, host_port=31053, protocol="UDP")
    tcp_pod = pod(PodSpec("b", ports={53: 31054}))
    actions = reconcile(svc, [udp_pod, tcp_pod], NODES, [], [], taken=[], max_endpoints=100)
    [created] = actions.create
    assert {e.target_ref.name: dict(e.host_ports) for e in created.endpoints} == {"a": {"": 31053}}
    assert created.ports[0].protocol == "UDP"


@pytest.mark.parametrize(
    "target", [pytest.param("proxy", id="named-sidecar-port"), pytest.param(15001, id="sidecar-port-number")]
)
def test_a_sidecars_port_is_an_endpoint(target: int | str) -> None:
    """A Service may target a sidecar's port (a proxy in front of the app), published in its
    initContainerStatuses entry."""
    p = pod(PodSpec("a", ports={}))
    sidecar = p.spec.init_containers.add(name="envoy", image="envoy:1", restart_policy="Always")
    sidecar.ports.add(container_port=15001, name="proxy", protocol="TCP")
    status = p.status.init_container_statuses.add(name="envoy", ready=True, started=True)
    status.ports.add(container_port=15001, host_port=32001, protocol="TCP")
    [created] = reconcile(service(target=target), [p], NODES, (), (), taken=(), max_endpoints=100).create
    assert dict(created.endpoints[0].host_ports) == {"": 32001}


# -- the pod network: pods at their own addresses ---------------------------------------


def pod_network_node(name: str = "n1", subnet: str = "10.42.1.0/24") -> node_pb2.Node:
    n = node(name)
    n.spec.pod_cidr = subnet
    n.spec.pod_cidrs.append(subnet)
    return n


def on_pod_network(spec: PodSpec, pod_ip: str = "10.42.1.5") -> pod_pb2.Pod:
    p = pod(spec)
    p.status.pod_ip = pod_ip
    p.status.container_statuses[0].ip = pod_ip
    return p


@pytest.mark.parametrize(
    ("svc", "spec", "pod_ip", "wanted"),
    [
        pytest.param(
            service(target=8080), PodSpec("a", ports={8080: 0}), "10.42.1.5", ("10.42.1.5", {"": 8080}), id="numeric"
        ),
        pytest.param(
            service(target="web"),
            PodSpec("a", ports={8080: 0}, port_names={8080: "web"}),
            "10.42.1.5",
            ("10.42.1.5", {"": 8080}),
            id="named",
        ),
        pytest.param(
            service(target=9999),
            PodSpec("a", ports={}),
            "10.42.1.5",
            ("10.42.1.5", {"": 9999}),
            id="undeclared-number",
        ),
        pytest.param(
            service(target=8080),
            PodSpec("a", ports={8080: 0}, spec_host_ports={8080: 18080}),
            "10.42.1.5",
            ("10.42.1.5", {"": 8080}),
            id="host-port-too",
        ),
        pytest.param(
            service(target=8080),
            PodSpec("a", ports={8080: 31000}),
            "172.18.0.5",
            ("10.0.0.1", {"": 31000}),
            id="bridge-outside-the-subnet-publishes",
        ),
        pytest.param(
            service(target=8080),
            PodSpec("a", ports={8080: 8080}),
            "10.0.0.1",
            ("10.0.0.1", {"": 8080}),
            id="host-network",
        ),
    ],
)
def test_a_pod_on_the_pod_network_is_reached_at_its_own_address(
    svc: service_pb2.Service, spec: PodSpec, pod_ip: str, wanted: tuple[str, dict[str, int]]
) -> None:
    nodes = {"n1": pod_network_node()}
    [created] = reconcile(svc, [on_pod_network(spec, pod_ip)], nodes, (), (), taken=(), max_endpoints=100).create
    endpoint = created.endpoints[0]
    assert (endpoint.addresses[0], dict(endpoint.host_ports)) == wanted


def test_a_node_without_a_pod_subnet_keeps_the_published_ports() -> None:
    [created] = reconcile(
        service(target=8080), [on_pod_network(PodSpec("a"))], NODES, (), (), taken=(), max_endpoints=100
    ).create
    assert (created.endpoints[0].addresses[0], dict(created.endpoints[0].host_ports)) == ("10.0.0.1", {"": 31000})


@pytest.mark.parametrize(
    "target", [pytest.param("proxy", id="named-sidecar-port"), pytest.param(15001, id="sidecar-port-number")]
)
def test_a_sidecars_port_is_reached_at_the_sidecars_own_address(target: int | str) -> None:
    p = on_pod_network(PodSpec("a", ports={}))
    sidecar = p.spec.init_containers.add(name="envoy", image="envoy:1", restart_policy="Always")
    sidecar.ports.add(container_port=15001, name="proxy", protocol="TCP")
    p.status.init_container_statuses.add(name="envoy", ready=True, started=True, ip="10.42.1.6")
    nodes = {"n1": pod_network_node()}
    [created] = reconcile(service(target=target), [p], nodes, (), (), taken=(), max_endpoints=100).create
    assert (created.endpoints[0].addresses[0], dict(created.endpoints[0].host_ports)) == ("10.42.1.6", {"": 15001})
