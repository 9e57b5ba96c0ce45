"""The endpoints controller's per-version cache of which pods a Service takes (`Members`),
checked against `member` recomputed for every pod: the same slices after random changes to
pods, nodes and the Service, across syncs; and an unchanged pod is not read again."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from controlplane.controllers.endpoints import endpoint
from controlplane.controllers.endpoints.endpoint import Members
from controlplane.controllers.endpoints.reconcile import reconcile
from protos.corral.v1 import discovery_pb2, node_pb2, pod_pb2, service_pb2
from tests.unit.controllers.test_endpoints_reconcile import PodSpec, node, pod, service

NAMES = ("a", "b", "c", "d")

# One change: a pod (name, ready, node, published port, labelled for the Service) or gone,
# a node's readiness, or the Service's target port.
changes_ = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(NAMES),
            st.booleans(),
            st.sampled_from(["n1", "n2"]),
            st.sampled_from([0, 31000]),
            st.booleans(),
        ),
        st.tuples(st.sampled_from(NAMES)),
        st.tuples(st.sampled_from(["n1", "n2"]), st.booleans()),
        st.sampled_from([8080, 9090]),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(changes=changes_)
@example(changes=[("a", True, "n1", 31000, True), ("n1", False)])  # the node changed, not the pod
@example(changes=[("a", True, "n1", 31000, True), 9090, ("b", True, "n2", 0, True)])  # the Service changed
def test_kept_members_give_the_slices_recomputed_from_every_pod(changes: list[object]) -> None:
    members = Members()
    pods: dict[str, pod_pb2.Pod] = {}
    nodes: dict[str, node_pb2.Node] = {"n1": node("n1"), "n2": node("n2")}
    svc: service_pb2.Service = service()
    kept: list[discovery_pb2.EndpointSlice] = []
    for change in changes:
        match change:
            case int(port):
                svc = service(target=port)
            case (str(name),):
                pods.pop(name, None)
            case (str(name), bool(ready)):
                nodes[name] = node(name, ready)
            case (str(name), bool(ready), str(on), int(published), bool(labelled)):
                labels = {"app": "web"} if labelled else {"app": "other"}
                spec = PodSpec(name, ready=ready, node=on, ports={8080: published, 9090: 0}, labels=labels)
                pods[name] = pod(spec)
        members.begin("default/web")
        cached = reconcile(svc, list(pods.values()), nodes, (), kept, max_endpoints=2, member_of=members)
        members.synced()
        assert cached == reconcile(svc, list(pods.values()), nodes, (), kept, max_endpoints=2)
        kept = [*(s for s in kept if s not in cached.delete), *cached.create]
        kept = [next((u for u in cached.update if u.metadata.name == s.metadata.name), s) for s in kept]


def test_an_unchanged_pod_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    members, svc = Members(), service()
    pods = [pod(PodSpec("a")), pod(PodSpec("b"))]
    nodes = {"n1": node("n1")}
    read: list[str] = []
    real = endpoint.member

    def counting(s: service_pb2.Service, p: pod_pb2.Pod, n: dict[str, node_pb2.Node]) -> endpoint.Member:
        read.append(p.metadata.name)
        return real(s, p, n)

    monkeypatch.setattr(endpoint, "member", counting)
    for _ in range(3):
        members.begin("default/web")
        reconcile(svc, pods, nodes, (), (), member_of=members)
        members.synced()
    pods[1] = pod(PodSpec("b", ready=False))
    members.begin("default/web")
    reconcile(svc, pods, nodes, (), (), member_of=members)
    members.synced()
    assert read == ["a", "b", "b"]
