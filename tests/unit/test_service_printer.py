"""`corral get svc`: TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE as kubectl shows them."""

from datetime import UTC, datetime

import pytest

from corral.cli import printers
from protos.corral.v1 import service_pb2

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def svc(kind: str, cluster_ip: str, ports: list[tuple[int, int, str]], ingress: list[str]) -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.creation_timestamp.FromDatetime(NOW)
    s.spec.type, s.spec.cluster_ip = kind, cluster_ip
    for port, node_port, protocol in ports:
        s.spec.ports.add(port=port, node_port=node_port, protocol=protocol)
    for ip in ingress:
        s.status.load_balancer.ingress.add(ip=ip)
    return s


@pytest.mark.parametrize(
    ("service", "row"),
    [
        pytest.param(
            svc("ClusterIP", "10.43.0.10", [(80, 0, "TCP")], []),
            ["ClusterIP", "10.43.0.10", "<none>", "80/TCP", "0s"],
            id="cluster-ip",
        ),
        pytest.param(
            svc("ClusterIP", "None", [(5432, 0, "TCP")], []),
            ["ClusterIP", "None", "<none>", "5432/TCP", "0s"],
            id="headless",
        ),
        pytest.param(
            svc("NodePort", "10.43.0.11", [(80, 30080, "TCP"), (53, 30053, "UDP")], []),
            ["NodePort", "10.43.0.11", "<none>", "80:30080/TCP,53:30053/UDP", "0s"],
            id="node-port",
        ),
        pytest.param(
            svc("LoadBalancer", "10.43.0.12", [(80, 31000, "TCP")], ["10.0.0.2", "10.0.0.3"]),
            ["LoadBalancer", "10.43.0.12", "10.0.0.2,10.0.0.3", "80:31000/TCP", "0s"],
            id="load-balancer",
        ),
        pytest.param(
            svc("LoadBalancer", "10.43.0.12", [(80, 31000, "TCP")], []),
            ["LoadBalancer", "10.43.0.12", "<pending>", "80:31000/TCP", "0s"],
            id="pending",
        ),
    ],
)
def test_service_row(service: service_pb2.Service, row: list[str]) -> None:
    assert printers.COLUMNS["Service"].headers == ("TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
    assert printers.service_row(service, NOW, False) == row
