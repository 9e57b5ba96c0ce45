"""The ingress controller's pure core: status from the Ready nodes' addresses, and the
warnings an Ingress carries (conflicts, default certificates, unknown backends)."""

from __future__ import annotations

import pytest

from controlplane.controllers.ingress.reconcile import ingress_status, warnings
from controlplane.registry.ingress import IngressPlan
from protos.corral.v1 import ingress_pb2, node_pb2


def node(ready: bool, *addresses: tuple[str, str]) -> node_pb2.Node:
    n = node_pb2.Node()
    n.status.conditions.add(type="Ready", status="True" if ready else "False")
    for kind, address in addresses:
        n.status.addresses.add(type=kind, address=address)
    return n


@pytest.mark.parametrize(
    ("nodes", "want"),
    [
        pytest.param([node(True, ("InternalIP", "10.0.0.2"))], ["10.0.0.2"], id="internal"),
        pytest.param(
            [node(True, ("InternalIP", "10.0.0.2"), ("ExternalIP", "1.2.3.4"))], ["1.2.3.4"], id="external-first"
        ),
        pytest.param([node(False, ("InternalIP", "10.0.0.2"))], [], id="not-ready-left-out"),
        pytest.param(
            [node(True, ("InternalIP", "10.0.0.3")), node(True, ("InternalIP", "10.0.0.2")), node(True)],
            ["10.0.0.2", "10.0.0.3"],
            id="sorted-without-addressless",
        ),
    ],
)
def test_status_lists_ready_nodes(nodes: list[node_pb2.Node], want: list[str]) -> None:
    assert [i.ip for i in ingress_status(nodes).load_balancer.ingress] == want


def test_warnings_of_one_ingress() -> None:
    routes = ingress_pb2.IngressRoutes()
    host = routes.hosts.add(host="a.test")
    host.paths.add(path="/", backend=ingress_pb2.IngressRouteBackend(ingress="default/web", problem="no Service x"))
    host.paths.add(path="/b", backend=ingress_pb2.IngressRouteBackend(ingress="default/other", problem="no Service y"))
    plan = IngressPlan(
        routes,
        served=["default/web", "default/other"],
        conflicts={"default/web": ["lost a.test /z"]},
        tls_problems={"default/web": ["Secret s not found"]},
    )
    assert warnings(plan, "default/web") == [
        ("Conflict", "lost a.test /z"),
        ("DefaultCertificate", "Secret s not found"),
        ("BackendNotFound", "no Service x: requests for it are answered 503"),
    ]
