"""`corral server` refuses a --cluster-cidr that overlaps --service-cidr: a pod address could then
be a Service's clusterIP, and the node's rules and routes for one would take the other's traffic."""

from __future__ import annotations

import pytest

from controlplane.server import ServerConfig, ServerError, check


@pytest.mark.parametrize(
    ("cluster", "service"),
    [
        pytest.param("10.42.0.0/16", "10.42.0.0/16", id="the same range"),
        pytest.param("10.0.0.0/8", "10.43.0.0/16", id="services inside the pods' range"),
        pytest.param("10.43.128.0/17", "10.43.0.0/16", id="pods inside the services' range"),
    ],
)
def test_overlapping_pod_and_service_ranges_are_refused(cluster: str, service: str) -> None:
    config = ServerConfig(listen="127.0.0.1:0", etcd=["127.0.0.1:2379"], cluster_cidr=cluster, service_cidr=service)
    with pytest.raises(ServerError, match=rf"--cluster-cidr {cluster} overlaps --service-cidr {service}"):
        check(config)


def test_the_default_ranges_are_apart() -> None:
    check(ServerConfig(listen="127.0.0.1:0", etcd=["127.0.0.1:2379"]))
