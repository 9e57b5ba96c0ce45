"""Node restriction, pure: the labels a node may set on itself, and how a registration merges."""

from __future__ import annotations

import pytest

from controlplane.nodeapi.restriction import bound_elsewhere, bound_here, label_forbidden, merged_node
from protos.corral.v1 import node_pb2, node_service_pb2, pod_pb2


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        pytest.param("zone", "a", True, id="no prefix"),
        pytest.param("example.com/disk", "ssd", True, id="another domain"),
        pytest.param("kubernetes.io/hostname", "n1", True, id="its own hostname"),
        pytest.param("kubernetes.io/hostname", "n2", False, id="another hostname"),
        pytest.param("kubernetes.io/arch", "arm64", True, id="arch"),
        pytest.param("topology.kubernetes.io/zone", "z", True, id="topology zone"),
        pytest.param("failure-domain.beta.kubernetes.io/region", "r", True, id="beta region"),
        pytest.param("node.kubernetes.io/instance-type", "pi4", True, id="instance type"),
        pytest.param("node.kubernetes.io/anything", "x", True, id="node.kubernetes.io prefix"),
        pytest.param("x.kubelet.kubernetes.io/anything", "x", True, id="kubelet subdomain"),
        pytest.param("node-role.kubernetes.io/control-plane", "", False, id="a role"),
        pytest.param("kubernetes.io/role", "master", False, id="other kubernetes.io"),
        pytest.param("k8s.io/thing", "x", False, id="k8s.io"),
        pytest.param("sub.k8s.io/thing", "x", False, id="k8s.io subdomain"),
        pytest.param("node-restriction.kubernetes.io/pci", "y", False, id="node-restriction"),
        pytest.param("corral.io/dedicated", "db", False, id="corral.io"),
        pytest.param("roles.corral.io/db", "", False, id="corral.io subdomain"),
        pytest.param("node.corral.io/hollow", "true", True, id="node.corral.io"),
        pytest.param("notkubernetes.io/x", "y", True, id="a lookalike domain"),
    ],
)
def test_label_forbidden(key: str, value: str, allowed: bool) -> None:
    assert (label_forbidden("n1", key, value) is None) is allowed


def test_a_registration_adds_missing_labels_and_keeps_the_rest() -> None:
    existing = node_pb2.Node()
    existing.metadata.name = "n1"
    existing.metadata.labels.update({"zone": "b", "dedicated": "db"})
    existing.status.conditions.add(type="Ready", status="False")
    request = node_service_pb2.RegisterRequest(
        node_name="n1", labels={"zone": "a", "rack": "7"}, status=node_pb2.NodeStatus(runtimes=["docker"])
    )
    node = merged_node(existing, request)
    assert dict(node.metadata.labels) == {"zone": "b", "dedicated": "db", "rack": "7"}
    assert list(node.status.runtimes) == ["docker"]
    assert [c.type for c in node.status.conditions] == ["Ready"]
    assert dict(merged_node(None, request).metadata.labels) == {"zone": "a", "rack": "7"}


def test_whose_pod() -> None:
    pod = pod_pb2.Pod()
    pod.metadata.namespace, pod.metadata.name, pod.metadata.uid = "default", "web", "u1"
    pod.spec.node_name = "n2"
    cached = {"default/web": pod}
    assert bound_elsewhere("n1", "default", "web", "u1", cached) == "n2"
    assert bound_elsewhere("n1", "default", "web", "other", cached) == ""  # another incarnation
    assert bound_elsewhere("n2", "default", "web", "u1", cached) == ""
    assert bound_here("n2", "default", "web", "u1", cached)
    assert not bound_here("n2", "default", "web", "", cached)
    assert not bound_here("n1", "default", "web", "u1", cached)
