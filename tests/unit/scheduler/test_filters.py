"""Every filter plugin, as named table cases: (pod, node) -> reasons ("" = fits)."""

from __future__ import annotations

import pytest

from controlplane.scheduler.framework import FilterPlugin, Status
from controlplane.scheduler.plugins.host_ports import HostPorts
from controlplane.scheduler.plugins.node_ready import NodeReady
from controlplane.scheduler.plugins.node_selector import NodeSelector
from controlplane.scheduler.plugins.resources_fit import ResourcesFit
from controlplane.scheduler.plugins.runtime import Runtime
from controlplane.scheduler.plugins.taints import Taints, tolerates
from controlplane.scheduler.snapshot import NodeInfo, PodRequest, Requirement, Resources, Taint, Toleration

from .builders import GI, node, pod

OK: tuple[str, ...] = ()


def check(plugin: FilterPlugin, p: PodRequest, n: NodeInfo, reasons: tuple[str, ...]) -> None:
    status = plugin.filter(p, n)
    assert isinstance(status, Status)
    assert status.reasons == reasons
    assert status.ok is (not reasons)


@pytest.mark.parametrize(
    ("n", "reasons"),
    [
        pytest.param(node(), OK, id="ready"),
        pytest.param(node(ready=False), ("node not ready",), id="not-ready"),
        pytest.param(node(unschedulable=True), ("node is cordoned",), id="cordoned"),
        pytest.param(node(ready=False, unschedulable=True), ("node not ready", "node is cordoned"), id="both"),
    ],
)
def test_node_ready(n: NodeInfo, reasons: tuple[str, ...]) -> None:
    check(NodeReady(), pod(), n, reasons)


UNSCHEDULABLE = "node.kubernetes.io/unschedulable"


@pytest.mark.parametrize(
    ("tolerations", "n", "reasons"),
    [
        pytest.param(
            (Toleration(UNSCHEDULABLE, "Exists", "", "NoSchedule"),), node(unschedulable=True), OK, id="cordoned"
        ),
        pytest.param((Toleration("", "Exists"),), node(unschedulable=True), OK, id="tolerates-everything"),
        pytest.param(
            (Toleration(UNSCHEDULABLE, "Exists", "", "NoExecute"),),
            node(unschedulable=True),
            ("node is cordoned",),
            id="other-effect",
        ),
        pytest.param(
            (Toleration(UNSCHEDULABLE, "Exists", "", "NoSchedule"),),
            node(ready=False, unschedulable=True),
            ("node not ready",),
            id="still-not-ready",
        ),
    ],
)
def test_node_ready_lets_a_pod_that_tolerates_unschedulable_onto_a_cordoned_node(
    tolerations: tuple[Toleration, ...], n: NodeInfo, reasons: tuple[str, ...]
) -> None:
    check(NodeReady(), pod(tolerations=tolerations), n, reasons)


@pytest.mark.parametrize(
    ("runtime", "offered", "reasons"),
    [
        pytest.param("docker", {"docker"}, OK, id="docker-on-docker"),
        pytest.param("process", {"docker", "process"}, OK, id="process-offered"),
        pytest.param("process", {"docker"}, ("runtime process not offered",), id="process-not-offered"),
        pytest.param("docker", {"process"}, ("runtime docker not offered",), id="docker-not-offered"),
    ],
)
def test_runtime(runtime: str, offered: set[str], reasons: tuple[str, ...]) -> None:
    check(Runtime(), pod(runtime=runtime), node(runtimes=frozenset(offered)), reasons)


@pytest.mark.parametrize(
    ("p", "n", "reasons"),
    [
        pytest.param(pod(cpu=1000, memory=GI), node(cpu=2000, memory=2 * GI), OK, id="fits"),
        pytest.param(pod(cpu=2000, memory=2 * GI), node(cpu=2000, memory=2 * GI), OK, id="exactly-fits"),
        pytest.param(pod(cpu=2001), node(cpu=2000), ("insufficient cpu",), id="cpu"),
        pytest.param(pod(memory=3 * GI), node(memory=2 * GI), ("insufficient memory",), id="memory"),
        pytest.param(
            pod(cpu=3000, memory=3 * GI),
            node(cpu=2000, memory=2 * GI),
            ("insufficient cpu", "insufficient memory"),
            id="both",
        ),
        pytest.param(
            pod(memory=GI),
            node(memory=2 * GI, requested=Resources(0, GI + 1)),
            ("insufficient memory",),
            id="already-requested",
        ),
        pytest.param(pod(), node(cpu=0, memory=0, requested=Resources(5, 5)), OK, id="no-requests-fit-anywhere"),
        pytest.param(pod(cpu=1), node(max_pods=2, pod_count=1), OK, id="room-for-one-more-pod"),
        pytest.param(pod(), node(max_pods=2, pod_count=2), ("too many pods",), id="too-many-pods"),
    ],
)
def test_resources_fit(p: PodRequest, n: NodeInfo, reasons: tuple[str, ...]) -> None:
    check(ResourcesFit(), p, n, reasons)


def req(key: str, op: str, *values: str) -> Requirement:
    return Requirement(key, op, values)


def field(key: str, op: str, *values: str) -> Requirement:
    """A matchFields requirement (on the node's fields, not its labels)."""
    return Requirement(key, op, values, on_field=True)


LABELS = {"zone": "a", "disk": "ssd", "cores": "8"}
MISMATCH = ("didn't match node selector",)


@pytest.mark.parametrize(
    ("p", "reasons"),
    [
        pytest.param(pod(), OK, id="no-constraints"),
        pytest.param(pod(node_selector={"zone": "a", "disk": "ssd"}), OK, id="selector-match"),
        pytest.param(pod(node_selector={"zone": "b"}), MISMATCH, id="selector-wrong-value"),
        pytest.param(pod(node_selector={"gpu": "yes"}), MISMATCH, id="selector-missing-label"),
        pytest.param(pod(affinity_terms=((req("zone", "In", "a", "b"),),)), OK, id="in"),
        pytest.param(pod(affinity_terms=((req("zone", "In", "b"),),)), MISMATCH, id="in-miss"),
        pytest.param(pod(affinity_terms=((req("zone", "NotIn", "b"),),)), OK, id="notin"),
        pytest.param(pod(affinity_terms=((req("gpu", "NotIn", "x"),),)), OK, id="notin-absent-label"),
        pytest.param(pod(affinity_terms=((req("zone", "NotIn", "a"),),)), MISMATCH, id="notin-miss"),
        pytest.param(pod(affinity_terms=((req("disk", "Exists"),),)), OK, id="exists"),
        pytest.param(pod(affinity_terms=((req("gpu", "Exists"),),)), MISMATCH, id="exists-miss"),
        pytest.param(pod(affinity_terms=((req("gpu", "DoesNotExist"),),)), OK, id="does-not-exist"),
        pytest.param(pod(affinity_terms=((req("disk", "DoesNotExist"),),)), MISMATCH, id="does-not-exist-miss"),
        pytest.param(pod(affinity_terms=((req("cores", "Gt", "4"),),)), OK, id="gt"),
        pytest.param(pod(affinity_terms=((req("cores", "Gt", "8"),),)), MISMATCH, id="gt-equal-is-not-greater"),
        pytest.param(pod(affinity_terms=((req("cores", "Lt", "16"),),)), OK, id="lt"),
        pytest.param(pod(affinity_terms=((req("cores", "Lt", "8"),),)), MISMATCH, id="lt-miss"),
        pytest.param(pod(affinity_terms=((req("zone", "Gt", "1"),),)), MISMATCH, id="gt-non-integer-label"),
        pytest.param(pod(affinity_terms=((req("gpu", "Lt", "1"),),)), MISMATCH, id="lt-absent-label"),
        pytest.param(pod(affinity_terms=((req("zone", "Near", "a"),),)), MISMATCH, id="unknown-operator"),
        pytest.param(
            pod(affinity_terms=((req("zone", "In", "a"), req("disk", "In", "hdd")),)),
            MISMATCH,
            id="term-requirements-anded",
        ),
        pytest.param(
            pod(affinity_terms=((req("zone", "In", "b"),), (req("disk", "In", "ssd"),))),
            OK,
            id="terms-ored",
        ),
        pytest.param(pod(affinity_terms=((),)), MISMATCH, id="empty-term-matches-nothing"),
        pytest.param(pod(affinity_terms=((field("metadata.name", "In", "n1"),),)), OK, id="field-name-in"),
        pytest.param(pod(affinity_terms=((field("metadata.name", "In", "n2"),),)), MISMATCH, id="field-name-in-miss"),
        pytest.param(pod(affinity_terms=((field("metadata.name", "NotIn", "n2"),),)), OK, id="field-name-notin"),
        pytest.param(
            pod(affinity_terms=((req("metadata.name", "In", "n1"),),)), MISMATCH, id="label-is-not-the-name-field"
        ),
        pytest.param(
            pod(affinity_terms=((field("metadata.name", "In", "n1"), req("zone", "In", "b")),)),
            MISMATCH,
            id="field-and-labels-anded",
        ),
        pytest.param(
            pod(affinity_terms=((field("metadata.name", "In", "n1"), req("zone", "In", "a")),)),
            OK,
            id="field-and-labels-match",
        ),
        pytest.param(
            pod(node_selector={"zone": "b"}, affinity_terms=((req("disk", "Exists"),),)),
            MISMATCH,
            id="selector-and-affinity-both-required",
        ),
    ],
)
def test_node_selector(p: PodRequest, reasons: tuple[str, ...]) -> None:
    check(NodeSelector(), p, node(labels=LABELS), reasons)


NO_SCHEDULE = Taint("dedicated", "db", "NoSchedule")


@pytest.mark.parametrize(
    ("taints", "tolerations", "reasons"),
    [
        pytest.param((), (), OK, id="no-taints"),
        pytest.param((NO_SCHEDULE,), (), ("untolerated taint {dedicated=db:NoSchedule}",), id="no-schedule"),
        pytest.param(
            (Taint("node.corral.io/unreachable", "", "NoExecute"),),
            (),
            ("untolerated taint {node.corral.io/unreachable:NoExecute}",),
            id="no-execute",
        ),
        pytest.param((Taint("spot", "true", "PreferNoSchedule"),), (), OK, id="prefer-no-schedule-never-filters"),
        pytest.param((NO_SCHEDULE,), (Toleration("dedicated", "Equal", "db", "NoSchedule"),), OK, id="equal"),
        pytest.param(
            (NO_SCHEDULE,),
            (Toleration("dedicated", "Equal", "web", "NoSchedule"),),
            ("untolerated taint {dedicated=db:NoSchedule}",),
            id="equal-other-value",
        ),
        pytest.param((NO_SCHEDULE,), (Toleration("dedicated", "Exists"),), OK, id="exists-any-value-any-effect"),
        pytest.param((NO_SCHEDULE,), (Toleration(operator="Exists"),), OK, id="empty-key-exists-tolerates-all"),
        pytest.param(
            (NO_SCHEDULE,),
            (Toleration("dedicated", "Exists", effect="NoExecute"),),
            ("untolerated taint {dedicated=db:NoSchedule}",),
            id="other-effect",
        ),
        pytest.param(
            (NO_SCHEDULE, Taint("gpu", "", "NoSchedule")),
            (Toleration("dedicated", "Exists"),),
            ("untolerated taint {gpu:NoSchedule}",),
            id="second-taint-untolerated",
        ),
    ],
)
def test_taints(taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...], reasons: tuple[str, ...]) -> None:
    check(Taints(), pod(tolerations=tolerations), node(taints=taints), reasons)


@pytest.mark.parametrize(
    ("toleration", "expected"),
    [
        pytest.param(Toleration("k", "Equal", "v", "NoSchedule"), True, id="exact"),
        pytest.param(Toleration("k", "Equal", "v", ""), True, id="empty-effect-matches-all"),
        pytest.param(Toleration("k", "", "v", ""), True, id="empty-operator-is-equal"),
        pytest.param(Toleration("k", "Equal", "", ""), False, id="equal-needs-value"),
        pytest.param(Toleration("other", "Exists"), False, id="other-key"),
        pytest.param(Toleration("", "Exists", effect="NoSchedule"), True, id="all-keys-one-effect"),
        pytest.param(Toleration("k", "Bogus", "v"), False, id="unknown-operator"),
    ],
)
def test_toleration_matching(toleration: Toleration, expected: bool) -> None:
    assert tolerates(toleration, Taint("k", "v", "NoSchedule")) is expected


USED = frozenset({(80, "TCP"), (53, "UDP")})


@pytest.mark.parametrize(
    ("ports", "reasons"),
    [
        pytest.param(frozenset(), OK, id="no-host-ports"),
        pytest.param(frozenset({(8080, "TCP")}), OK, id="free-port"),
        pytest.param(frozenset({(80, "TCP")}), ("host port 80/TCP in use",), id="conflict"),
        pytest.param(frozenset({(80, "UDP"), (53, "TCP")}), OK, id="other-protocol-is-free"),
        pytest.param(
            frozenset({(53, "UDP"), (80, "TCP"), (81, "TCP")}),
            ("host ports 53/UDP, 80/TCP in use",),
            id="several-conflicts",
        ),
    ],
)
def test_host_ports(ports: frozenset[tuple[int, str]], reasons: tuple[str, ...]) -> None:
    check(HostPorts(), pod(host_ports=ports), node(host_ports=USED), reasons)
