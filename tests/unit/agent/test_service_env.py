"""Service env vars, DNS settings and the route table: agent/pods/service_env.py, agent/network/routes.py."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from agent.network.routes import ServiceTable
from agent.pods.service_env import PodNetwork, ServiceAccess, dns_search, env_name, pod_network, service_env
from agent.pods.worker import build_spec
from agent.runtime.base import LABEL_SPEC_HASH
from protos.corral.v1 import discovery_pb2, node_service_pb2, pod_pb2

HOST = "172.18.0.1"


def route(name: str, *ports: tuple[str, int, str], namespace: str = "default") -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        namespace=namespace,
        name=name,
        ports=[
            discovery_pb2.RoutePort(name=port_name, port=port, protocol=protocol) for port_name, port, protocol in ports
        ],
    )


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        pytest.param(
            [route("redis-master", ("", 6379, "TCP"))],
            {
                "REDIS_MASTER_SERVICE_HOST": HOST,
                "REDIS_MASTER_SERVICE_PORT": "6379",
                "REDIS_MASTER_PORT": f"tcp://{HOST}:6379",
                "REDIS_MASTER_PORT_6379_TCP": f"tcp://{HOST}:6379",
                "REDIS_MASTER_PORT_6379_TCP_PROTO": "tcp",
                "REDIS_MASTER_PORT_6379_TCP_PORT": "6379",
                "REDIS_MASTER_PORT_6379_TCP_ADDR": HOST,
            },
            id="kubernetes-example",
        ),
        pytest.param(
            [route("web", ("http", 80, "TCP"), ("metrics-port", 9090, ""))],
            {
                "WEB_SERVICE_HOST": HOST,
                "WEB_SERVICE_PORT": "80",
                "WEB_SERVICE_PORT_HTTP": "80",
                "WEB_SERVICE_PORT_METRICS_PORT": "9090",
                "WEB_PORT": f"tcp://{HOST}:80",
                "WEB_PORT_80_TCP": f"tcp://{HOST}:80",
                "WEB_PORT_80_TCP_PROTO": "tcp",
                "WEB_PORT_80_TCP_PORT": "80",
                "WEB_PORT_80_TCP_ADDR": HOST,
                "WEB_PORT_9090_TCP": f"tcp://{HOST}:9090",
                "WEB_PORT_9090_TCP_PROTO": "tcp",
                "WEB_PORT_9090_TCP_PORT": "9090",
                "WEB_PORT_9090_TCP_ADDR": HOST,
            },
            id="named-ports-first-is-the-service-port",
        ),
        pytest.param(
            [route("dns", ("dns", 53, "UDP"))],
            {
                "DNS_SERVICE_HOST": HOST,
                "DNS_SERVICE_PORT": "53",
                "DNS_SERVICE_PORT_DNS": "53",
                "DNS_PORT": f"udp://{HOST}:53",
                "DNS_PORT_53_UDP": f"udp://{HOST}:53",
                "DNS_PORT_53_UDP_PROTO": "udp",
                "DNS_PORT_53_UDP_PORT": "53",
                "DNS_PORT_53_UDP_ADDR": HOST,
            },
            id="udp",
        ),
        pytest.param([route("headless")], {}, id="no-ports-no-vars"),
        pytest.param([], {}, id="no-services"),
    ],
)
def test_service_env(routes: list[discovery_pb2.ServiceRoute], expected: dict[str, str]) -> None:
    assert service_env(routes, HOST) == expected


def test_env_of_an_ipv6_host_brackets_the_address() -> None:
    env = service_env([route("web", ("", 80, "TCP"))], "fd00::1")
    assert env["WEB_PORT"] == "tcp://[fd00::1]:80"
    assert env["WEB_SERVICE_HOST"] == "fd00::1"


@pytest.mark.parametrize(("name", "expected"), [("web", "WEB"), ("my-api-v2", "MY_API_V2")])
def test_env_name(name: str, expected: str) -> None:
    assert env_name(name) == expected


def test_pod_network_takes_the_namespace_services_and_dns_of_the_access() -> None:
    routes = [route("web", ("", 80, "TCP")), route("db", ("", 5432, "TCP"), namespace="prod")]

    docker = pod_network(routes, "default", ServiceAccess(host=HOST, dns_server=HOST))
    process = pod_network(routes, "prod", ServiceAccess(host="127.0.0.2"))

    assert docker.env["WEB_SERVICE_HOST"] == HOST and "DB_SERVICE_HOST" not in docker.env
    assert docker.dns_servers == (HOST,)
    assert docker.dns_search == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert process.env["DB_SERVICE_PORT"] == "5432" and "WEB_SERVICE_HOST" not in process.env
    assert (process.dns_servers, process.dns_search) == ((), ())


def test_dns_search() -> None:
    assert dns_search("prod") == ("prod.svc.cluster.local", "svc.cluster.local", "cluster.local")


# -- the route table -------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self.seen.append(sorted(routes))


def message(
    *upserts: discovery_pb2.ServiceRoute, removed: tuple[str, ...] = (), full: bool = False
) -> node_service_pb2.ServiceRoutes:
    return node_service_pb2.ServiceRoutes(full=full, upserts=list(upserts), removed=list(removed))


def test_snapshot_then_deltas_then_a_new_snapshot() -> None:
    recorder = Recorder()
    table = ServiceTable([recorder])
    web, db, api = route("web", ("", 80, "TCP")), route("db", ("", 5432, "TCP")), route("api", ("", 8080, "TCP"))

    table.apply(message(web, db, full=True))
    table.apply(message(api, removed=("default/db",)))
    changed = route("web", ("", 81, "TCP"))
    table.apply(message(changed))
    web_port = table.routes["default/web"].ports[0].port
    table.apply(message(db, full=True))  # a reconnect: the snapshot replaces everything

    assert recorder.seen == [
        ["default/db", "default/web"],
        ["default/api", "default/web"],
        ["default/api", "default/web"],
        ["default/db"],
    ]
    assert web_port == 81
    assert list(table.routes) == ["default/db"]


def test_removing_an_unknown_service_is_fine() -> None:
    table = ServiceTable()
    table.apply(message(removed=("default/ghost",)))
    assert dict(table.routes) == {}


def test_pod_network_by_runtime() -> None:
    table = ServiceTable(
        access={"docker": ServiceAccess(host=HOST, dns_server=HOST), "process": ServiceAccess(host="127.0.0.2")}
    )
    table.apply(message(route("web", ("", 80, "TCP")), full=True))

    docker = table.pod_network("default", "docker")
    process = table.pod_network("default", "process")
    other = table.pod_network("default", "fake")

    assert docker.env["WEB_SERVICE_HOST"] == HOST and docker.dns_servers == (HOST,)
    assert process.env["WEB_SERVICE_HOST"] == "127.0.0.2" and process.dns_servers == ()
    assert other == PodNetwork({})


# -- into the container spec -------------------------------------------------------------


def test_the_pods_own_env_wins_and_service_env_is_not_in_the_spec_hash() -> None:
    pod = pod_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace, pod.metadata.uid = "web-1", "default", "uid-1"
    container = pod.spec.containers.add(name="main", image="busybox")
    container.env.add(name="WEB_SERVICE_HOST", value="mine")
    network = PodNetwork({"WEB_SERVICE_HOST": HOST, "WEB_SERVICE_PORT": "80"}, (HOST,), dns_search("default"))

    with_services = build_spec(pod, container, 0, node="n1", epoch=1, extra_env={}, network=network)
    without = build_spec(pod, container, 0, node="n1", epoch=1, extra_env={})

    assert with_services.env == {"WEB_SERVICE_HOST": "mine", "WEB_SERVICE_PORT": "80"}
    assert with_services.dns_servers == [HOST]
    assert with_services.dns_search == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert without.dns_servers == [] and without.dns_search == []
    assert with_services.labels[LABEL_SPEC_HASH] == without.labels[LABEL_SPEC_HASH]


def test_a_service_with_a_cluster_ip_is_found_there() -> None:
    web = route("web", ("http", 80, "TCP"))
    web.cluster_ip = "10.43.0.10"
    env = service_env([web], HOST)
    assert env["WEB_SERVICE_HOST"] == "10.43.0.10"
    assert env["WEB_PORT_80_TCP"] == "tcp://10.43.0.10:80"
