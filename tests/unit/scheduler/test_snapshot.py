"""Building NodeInfo, PodRequest and Snapshot values from protos."""

from __future__ import annotations

import pytest

from controlplane.scheduler.snapshot import (
    DEFAULT_CPU_MILLIS,
    DEFAULT_MEMORY_BYTES,
    LEAST_ALLOCATED,
    MOST_ALLOCATED,
    Requirement,
    Resources,
    Snapshot,
    Taint,
    Toleration,
    build_snapshot,
    node_info,
    pod_request,
)
from protos.corral.v1 import meta_pb2, node_pb2, pod_pb2
from protos.wellknown import SCHEDULING_STRATEGY

from .builders import GI, MI, container, node, node_proto, pod, pod_proto


def request_of(*containers: pod_pb2.Container) -> Resources:
    return pod_request(pod_proto(containers=list(containers)), default_strategy=LEAST_ALLOCATED).requests


@pytest.mark.parametrize(
    ("containers", "expected"),
    [
        pytest.param([container()], Resources(0, 0), id="no-requests"),
        pytest.param([container({"cpu": "250m", "memory": "64Mi"})], Resources(250, 64 * MI), id="requests"),
        pytest.param([container(limits={"cpu": "1", "memory": "1Gi"})], Resources(1000, GI), id="limit-as-request"),
        pytest.param(
            [container({"cpu": "100m"}, {"cpu": "2", "memory": "128Mi"})],
            Resources(100, 128 * MI),
            id="request-wins-over-limit",
        ),
        pytest.param(
            [container({"cpu": "0.5", "memory": "1G"}), container({"cpu": "1500m", "memory": "24M"})],
            Resources(2000, 1_024_000_000),
            id="sum-over-containers",
        ),
    ],
)
def test_pod_requests(containers: list[pod_pb2.Container], expected: Resources) -> None:
    assert request_of(*containers) == expected


@pytest.mark.parametrize(
    ("containers", "expected"),
    [
        pytest.param([container()], Resources(DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_BYTES), id="defaults"),
        pytest.param([container({"cpu": "0", "memory": "0"})], Resources(0, 0), id="explicit-zero-kept"),
        pytest.param(
            [container({"memory": "1Gi"}), container({"cpu": "300m"})],
            Resources(DEFAULT_CPU_MILLIS + 300, GI + DEFAULT_MEMORY_BYTES),
            id="per-container",
        ),
    ],
)
def test_nonzero_requests_for_scoring(containers: list[pod_pb2.Container], expected: Resources) -> None:
    got = pod_request(pod_proto(containers=containers), default_strategy=LEAST_ALLOCATED)
    assert got.nonzero_requests == expected


def init_request_of(inits: list[pod_pb2.Container], apps: list[pod_pb2.Container], *, nonzero: bool) -> Resources:
    spec = pod_proto(containers=apps)
    spec.spec.init_containers.extend(inits)
    found = pod_request(spec, default_strategy=LEAST_ALLOCATED)
    return found.nonzero_requests if nonzero else found.requests


def test_sidecars_request_beside_the_app_containers_and_later_init_containers() -> None:
    sidecar = container({"cpu": "1", "memory": "64Mi"})
    sidecar.restart_policy = "Always"
    got = init_request_of([sidecar, container({"cpu": "2"})], [container({"cpu": "500m"})], nonzero=False)
    assert got == Resources(3000, 64 * MI)  # the init container (2) beside the sidecar (1), over 1.5


def test_a_sidecars_host_ports_are_the_pods_a_plain_init_containers_are_not() -> None:
    sidecar = container(host_ports=((9090, "TCP"),))
    sidecar.restart_policy = "Always"
    spec = pod_proto(containers=[container(host_ports=((80, "TCP"),))])
    spec.spec.init_containers.extend([sidecar, container(host_ports=((8080, "TCP"),))])
    assert pod_request(spec, default_strategy=LEAST_ALLOCATED).host_ports == {(80, "TCP"), (9090, "TCP")}


@pytest.mark.parametrize(
    ("inits", "apps", "nonzero", "expected"),
    [
        pytest.param(
            [container({"cpu": "2", "memory": "64Mi"})],
            [container({"cpu": "500m", "memory": "1Gi"})],
            False,
            Resources(2000, GI),
            id="larger-of-each-resource",
        ),
        pytest.param(
            [container({"cpu": "1"}), container({"cpu": "3"})],
            [container({"cpu": "1"}), container({"cpu": "1"})],
            False,
            Resources(3000, 0),
            id="largest-init-not-their-sum",
        ),
        pytest.param(
            [container({"cpu": "200m"})],
            [container({"cpu": "300m"}), container({"cpu": "300m"})],
            False,
            Resources(600, 0),
            id="app-sum-wins",
        ),
        pytest.param(
            [container({"memory": "1Gi"})],
            [container({"cpu": "1"})],
            True,
            Resources(1000, GI),
            id="scoring-defaults-per-container",
        ),
    ],
)
def test_init_containers_request_the_larger_of_largest_and_sum(
    inits: list[pod_pb2.Container], apps: list[pod_pb2.Container], nonzero: bool, expected: Resources
) -> None:
    assert init_request_of(inits, apps, nonzero=nonzero) == expected


def test_pod_request_fields() -> None:
    proto = pod_proto(
        "web-1",
        containers=[container(host_ports=((8080, ""), (0, "TCP"))), container(host_ports=((53, "UDP"),))],
        owner_uid="rs-1",
        node_selector={"disk": "ssd"},
        tolerations=[pod_pb2.Toleration(key="k", operator="Exists", effect="NoSchedule"), pod_pb2.Toleration(key="j")],
        runtime_class_name="process",
        affinity=pod_pb2.Affinity(
            node_affinity=pod_pb2.NodeAffinity(
                required_during_scheduling_ignored_during_execution=pod_pb2.NodeSelector(
                    node_selector_terms=[
                        pod_pb2.NodeSelectorTerm(
                            match_expressions=[
                                pod_pb2.NodeSelectorRequirement(key="zone", operator="In", values=["a"])
                            ],
                            match_fields=[
                                pod_pb2.NodeSelectorRequirement(key="metadata.name", operator="In", values=["n1"])
                            ],
                        )
                    ]
                )
            )
        ),
    )
    got = pod_request(proto, default_strategy=LEAST_ALLOCATED)
    assert got.key == "default/web-1"
    assert got.owner_uid == "rs-1"
    assert got.host_ports == {(8080, "TCP"), (53, "UDP")}
    assert got.node_selector == {"disk": "ssd"}
    assert got.tolerations == (Toleration("k", "Exists", "", "NoSchedule"), Toleration("j", "Equal", "", ""))
    assert got.affinity_terms == (
        (Requirement("zone", "In", ("a",)), Requirement("metadata.name", "In", ("n1",), on_field=True)),
    )
    assert got.runtime == "process"


def test_owner_is_the_controller_reference_only() -> None:
    proto = pod_proto()
    proto.metadata.owner_references.append(meta_pb2.OwnerReference(uid="not-controller", controller=False))
    assert pod_request(proto, default_strategy=LEAST_ALLOCATED).owner_uid == ""


def test_runtime_defaults_to_docker() -> None:
    assert pod_request(pod_proto(), default_strategy=LEAST_ALLOCATED).runtime == "docker"


@pytest.mark.parametrize(
    ("annotation", "default", "expected"),
    [
        pytest.param(None, LEAST_ALLOCATED, LEAST_ALLOCATED, id="cluster-default-least"),
        pytest.param(None, MOST_ALLOCATED, MOST_ALLOCATED, id="cluster-default-most"),
        pytest.param("MostAllocated", LEAST_ALLOCATED, MOST_ALLOCATED, id="annotation-most"),
        pytest.param("LeastAllocated", MOST_ALLOCATED, LEAST_ALLOCATED, id="annotation-least"),
        pytest.param("Random", MOST_ALLOCATED, MOST_ALLOCATED, id="unknown-annotation-falls-back"),
    ],
)
def test_scoring_strategy(annotation: str | None, default: str, expected: str) -> None:
    annotations = {} if annotation is None else {SCHEDULING_STRATEGY: annotation}
    assert pod_request(pod_proto(annotations=annotations), default_strategy=default).strategy == expected


def test_unknown_default_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scheduling strategy"):
        pod_request(pod_proto(), default_strategy="Spread")


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        pytest.param("True", True, id="ready"),
        pytest.param("False", False, id="not-ready"),
        pytest.param("Unknown", False, id="unknown"),
        pytest.param(None, False, id="no-condition"),
    ],
)
def test_node_ready_condition(ready: str | None, expected: bool) -> None:
    assert node_info(node_proto(ready=ready), []).ready is expected


@pytest.mark.parametrize(
    ("runtimes", "expected"),
    [
        pytest.param([], {"docker"}, id="none-means-docker"),
        pytest.param(["process"], {"process"}, id="process-only"),
        pytest.param(["docker", "process"], {"docker", "process"}, id="both"),
    ],
)
def test_node_runtimes(runtimes: list[str], expected: set[str]) -> None:
    assert node_info(node_proto(runtimes=runtimes), []).runtimes == expected


@pytest.mark.parametrize(
    ("allocatable", "capacity", "expected", "max_pods"),
    [
        pytest.param({"cpu": "2", "memory": "4Gi"}, {}, Resources(2000, 4 * GI), None, id="allocatable"),
        pytest.param(
            {"cpu": "1500m"},
            {"cpu": "2", "memory": "2Gi", "pods": "110"},
            Resources(1500, 2 * GI),
            110,
            id="capacity-fills-gaps",
        ),
        pytest.param({}, {}, Resources(0, 0), None, id="nothing-reported"),
        pytest.param({"pods": "3"}, {}, Resources(0, 0), 3, id="pods"),
    ],
)
def test_node_allocatable(
    allocatable: dict[str, str], capacity: dict[str, str], expected: Resources, max_pods: int | None
) -> None:
    info = node_info(node_proto(allocatable=allocatable, capacity=capacity), [])
    assert info.allocatable == expected
    assert info.max_pods == max_pods


def test_node_info_counts_bound_pods_but_not_finished_ones() -> None:
    proto = node_proto("n1")
    proto.spec.unschedulable = True
    proto.spec.taints.append(node_pb2.Taint(key="gpu", value="yes", effect="NoSchedule"))
    proto.metadata.labels["zone"] = "a"
    bound = [
        pod_proto(
            "a",
            containers=[container({"cpu": "500m", "memory": "1Gi"}, host_ports=((80, "TCP"),))],
            owner_uid="rs-1",
            phase="Running",
        ),
        pod_proto("b", containers=[container({"cpu": "250m"})], owner_uid="rs-1"),
        pod_proto("c", containers=[container()], owner_uid="rs-2", phase="Pending"),
        pod_proto(
            "done",
            containers=[container({"cpu": "4", "memory": "4Gi"}, host_ports=((443, "TCP"),))],
            owner_uid="rs-3",
            phase="Succeeded",
        ),
        pod_proto("failed", containers=[container({"cpu": "4"})], phase="Failed"),
    ]
    info = node_info(proto, bound)
    assert info.name == "n1"
    assert info.labels == {"zone": "a"}
    assert info.unschedulable
    assert info.taints == (Taint("gpu", "yes", "NoSchedule"),)
    assert info.requested == Resources(750, GI)
    assert info.nonzero_requested == Resources(750 + DEFAULT_CPU_MILLIS, GI + 2 * DEFAULT_MEMORY_BYTES)
    assert info.host_ports == {(80, "TCP")}
    assert info.pod_count == 3
    assert info.pods_per_owner == {"rs-1": 2, "rs-2": 1}


def test_build_snapshot_groups_pods_by_binding() -> None:
    nodes = [node_proto("n2"), node_proto("n1")]
    pods = [
        pod_proto("a", containers=[container({"memory": "1Gi"})], node_name="n1"),
        pod_proto("b", containers=[container({"memory": "2Gi"})], node_name="n2"),
        pod_proto("pending", containers=[container({"memory": "4Gi"})]),
        pod_proto("elsewhere", containers=[container({"memory": "4Gi"})], node_name="gone"),
    ]
    snap = build_snapshot(nodes, pods)
    assert [n.name for n in snap] == ["n1", "n2"]
    assert snap["n1"].requested.memory_bytes == GI
    assert snap["n2"].requested.memory_bytes == 2 * GI


def test_with_binding_returns_a_new_snapshot() -> None:
    before = Snapshot([node("b"), node("a")])
    placed = pod(cpu=500, memory=GI, owner_uid="rs", host_ports=frozenset({(80, "TCP")}))
    after = before.with_binding(placed, "b")
    assert before["b"].pod_count == 0
    assert before["b"].requested == Resources()
    assert after["b"].requested == Resources(500, GI)
    assert after["b"].host_ports == {(80, "TCP")}
    assert after["b"].pods_per_owner == {"rs": 1}
    assert after["a"] is before["a"]
    assert [n.name for n in after.nodes] == ["a", "b"]
    assert "b" in after and "c" not in after


def test_with_binding_to_unknown_node_raises() -> None:
    with pytest.raises(KeyError):
        Snapshot([node("a")]).with_binding(pod(), "zz")


def test_duplicate_node_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Snapshot([node("a"), node("a")])


def test_bad_quantity_raises() -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        node_info(node_proto(allocatable={"cpu": "lots"}), [])


def test_pods_without_host_ports_share_one_empty_set() -> None:
    """Most pods have no host port: one frozenset for all of them, not 216 bytes each."""
    first, second = (pod_request(pod_proto(), default_strategy=LEAST_ALLOCATED) for _ in range(2))
    assert first.host_ports == frozenset()
    assert first.host_ports is second.host_ports
