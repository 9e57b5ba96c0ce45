"""Headless Services end to end through the pure cores: the endpoints a headless Service's pods
become (their own addresses, hostnames under the Kubernetes rule, publishNotReadyAddresses),
the route the registry makes of them (no proxy ports), and the DNS answers a node gives."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import pytest

from agent.network.dns.records import build_zone, respond
from controlplane.apiserver.defaults import apply_defaults
from controlplane.controllers.endpoints.reconcile import reconcile
from controlplane.registry.routes import route_for
from protos.corral.v1 import discovery_pb2, node_pb2, pod_pb2, service_pb2
from protos.kinds import by_kind

LOCAL = "172.18.0.1"


def service(*, headless: bool = True, publish: bool = False, ports: bool = True) -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name, s.metadata.namespace, s.metadata.uid = "db", "default", "svc-uid"
    s.spec.selector["app"] = "db"
    if ports:
        s.spec.ports.add(port=6379)
    if headless:
        s.spec.cluster_ip = "None"
    s.spec.publish_not_ready_addresses = publish
    apply_defaults(by_kind("Service"), s)
    return s


def pod(name: str, ip: str, *, ready: bool = True, subdomain: str = "db", hostname: str | None = None) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.metadata.labels["app"] = "db"
    p.spec.node_name = "n1"
    p.spec.hostname = name if hostname is None else hostname
    p.spec.subdomain = subdomain
    p.spec.containers.add(name="db", image="redis:7").ports.add(container_port=6379)
    p.status.phase = "Running"
    p.status.host_ip, p.status.pod_ip = "10.0.0.1", ip
    p.status.conditions.add(type="Ready", status="True" if ready else "False")
    return p


NODES = {"n1": node_pb2.Node()}
NODES["n1"].metadata.name = "n1"
NODES["n1"].status.conditions.add(type="Ready", status="True")


def slices(svc: service_pb2.Service, pods: list[pod_pb2.Pod]) -> list[discovery_pb2.EndpointSlice]:
    return list(reconcile(svc, pods, NODES, [], []).create)


def endpoints(svc: service_pb2.Service, pods: list[pod_pb2.Pod]) -> list[tuple[str, str, bool, str]]:
    return [
        (e.target_ref.name, e.addresses[0], e.conditions.ready, e.hostname)
        for s in slices(svc, pods)
        for e in s.endpoints
    ]


PODS = [pod("db-0", "172.18.0.5"), pod("db-1", "172.18.0.6", ready=False)]


def test_headless_endpoints_are_the_pods_own_addresses_without_published_ports() -> None:
    assert endpoints(service(), PODS) == [("db-0", "172.18.0.5", True, "db-0"), ("db-1", "172.18.0.6", False, "db-1")]
    assert endpoints(service(ports=False), PODS[:1]) == [("db-0", "172.18.0.5", True, "db-0")]


def test_a_proxied_service_keeps_node_addresses_and_needs_published_ports() -> None:
    assert endpoints(service(headless=False), PODS) == []


def test_publish_not_ready_addresses_makes_every_endpoint_ready() -> None:
    assert [e[2] for e in endpoints(service(publish=True), PODS)] == [True, True]


@pytest.mark.parametrize(
    ("the_pod", "hostname"),
    [
        pytest.param(pod("db-0", "172.18.0.5"), "db-0", id="subdomain-names-the-service"),
        pytest.param(pod("db-0", "172.18.0.5", subdomain="other"), "", id="other-subdomain"),
        pytest.param(pod("db-0", "172.18.0.5", subdomain=""), "", id="no-subdomain"),
        pytest.param(pod("web-x", "172.18.0.5", hostname=""), "", id="no-hostname"),
    ],
)
def test_hostname_only_when_the_subdomain_names_the_service(the_pod: pod_pb2.Pod, hostname: str) -> None:
    assert [e[3] for e in endpoints(service(), [the_pod])] == [hostname]


def test_a_headless_route_has_no_ports_and_lists_ready_endpoints() -> None:
    svc = service()
    route = route_for(svc, slices(svc, PODS))
    assert route.headless
    assert list(route.ports) == []
    assert [(b.pod, b.address, b.hostname) for b in route.endpoints] == [("db-0", "172.18.0.5", "db-0")]
    proxied = route_for(service(headless=False), [])
    assert not proxied.headless and len(proxied.ports) == 1


# -- DNS ---------------------------------------------------------------------------------


def zone() -> object:
    svc = service()
    pods = [*PODS, pod("db-2", "172.18.0.7")]
    web = discovery_pb2.ServiceRoute(name="web", namespace="default", ports=[discovery_pb2.RoutePort(port=80)])
    return build_zone([route_for(svc, slices(svc, pods)), web])


def ask(name: str, rdtype: str = "A") -> dns.message.Message | None:
    return respond(dns.message.make_query(name, rdtype), zone(), LOCAL)  # type: ignore[arg-type]


def answers(response: dns.message.Message | None) -> list[str]:
    assert response is not None
    return sorted(str(rd) for rrset in response.answer for rd in rrset)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("db.default.svc.cluster.local.", ["172.18.0.5", "172.18.0.7"], id="service-every-ready-pod"),
        pytest.param("db.default.", ["172.18.0.5", "172.18.0.7"], id="service-short"),
        pytest.param("db-0.db.default.svc.cluster.local.", ["172.18.0.5"], id="pod-full"),
        pytest.param("DB-2.db.default.svc.cluster.local.", ["172.18.0.7"], id="pod-any-case"),
        pytest.param("db-0.db.default.svc.", ["172.18.0.5"], id="pod-short-svc"),
        pytest.param("db-0.db.default.", ["172.18.0.5"], id="pod-short"),
        pytest.param("web.default.svc.cluster.local.", [LOCAL], id="proxied-service-unchanged"),
    ],
)
def test_headless_names_answer_pod_addresses(name: str, expected: list[str]) -> None:
    assert answers(ask(name)) == expected


def test_a_pod_that_is_not_ready_has_no_name() -> None:
    response = ask("db-1.db.default.svc.cluster.local.")
    assert response is not None
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA


def test_a_headless_service_without_ready_pods_is_an_empty_answer() -> None:
    svc = service()
    empty = build_zone([route_for(svc, slices(svc, [pod("db-0", "172.18.0.5", ready=False)]))])
    response = respond(dns.message.make_query("db.default.svc.cluster.local.", "A"), empty, LOCAL)
    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer


def test_host_and_service_alone_answer_when_one_namespace_has_them() -> None:
    # busybox's nslookup sends `db-0.db` as it is (no search list for a name with a dot).
    assert answers(ask("db-0.db.")) == ["172.18.0.5"]
    response = ask("db-0.db.")
    assert response is not None and not response.flags & dns.flags.AA
    other = service()
    other.metadata.namespace = "other"
    twice = build_zone(
        [
            route_for(service(), slices(service(), [pod("db-0", "172.18.0.5")])),
            route_for(other, [_slice_in("other", "172.18.1.5")]),
        ]
    )
    assert respond(dns.message.make_query("db-0.db.", "A"), twice, LOCAL) is None
    assert answers(respond(dns.message.make_query("db-0.db.other.svc.cluster.local.", "A"), twice, LOCAL)) == [
        "172.18.1.5"
    ]


def _slice_in(namespace: str, address: str) -> discovery_pb2.EndpointSlice:
    s = discovery_pb2.EndpointSlice(address_type="IPv4")
    s.metadata.name, s.metadata.namespace = "db-0", namespace
    e = s.endpoints.add(addresses=[address], hostname="db-0")
    e.conditions.ready = True
    e.target_ref.name = "db-0"
    return s


def test_aaaa_for_ipv4_pods_is_empty_and_unknown_short_hosts_are_forwarded() -> None:
    response = ask("db-0.db.default.svc.cluster.local.", "AAAA")
    assert response is not None and response.rcode() == dns.rcode.NOERROR and not response.answer
    assert ask("www.example.com.") is None
    assert ask("db-9.db.default.") is None
