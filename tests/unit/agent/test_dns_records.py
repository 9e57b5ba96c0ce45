"""Answers for Service names: agent/network/dns/records.py."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from agent.network.dns.records import TTL, build_zone, error_response, respond
from protos.corral.v1 import discovery_pb2

LOCAL = "172.18.0.1"


def route(
    name: str, namespace: str = "default", ports: tuple[tuple[str, int], ...] = (("http", 80),)
) -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        name=name,
        namespace=namespace,
        ports=[discovery_pb2.RoutePort(name=port_name, protocol="TCP", port=port) for port_name, port in ports],
    )


ZONE = build_zone(
    [
        route("web", ports=(("http", 80), ("metrics", 9090))),
        route("db", "prod", ports=(("", 5432),)),
    ]
)


def ask(name: str, rdtype: str = "A", local: str = LOCAL) -> dns.message.Message | None:
    return respond(dns.message.make_query(name, rdtype), ZONE, local)


def answers(response: dns.message.Message | None) -> list[str]:
    assert response is not None
    return sorted(
        f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rd}" for rrset in response.answer for rd in rrset
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("web.default.svc.cluster.local.", id="full"),
        pytest.param("WEB.Default.svc.cluster.local.", id="any-case"),
        pytest.param("web.default.svc.", id="short-svc"),
        pytest.param("web.default.", id="short"),
        pytest.param("db.prod.svc.cluster.local.", id="other-namespace"),
    ],
)
def test_a_record_is_the_local_address(name: str) -> None:
    response = ask(name)

    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert answers(response) == [f"{name} A {LOCAL}"]
    assert response.answer[0].ttl == TTL
    assert response.flags & dns.flags.QR and response.flags & dns.flags.RA


def test_each_listening_address_answers_with_itself() -> None:
    assert answers(ask("web.default.svc.cluster.local.", local="192.0.2.2")) == [
        "web.default.svc.cluster.local. A 192.0.2.2"
    ]


def test_authoritative_only_under_cluster_local() -> None:
    full = ask("web.default.svc.cluster.local.")
    short = ask("web.default.")
    assert full is not None and full.flags & dns.flags.AA
    assert short is not None and not short.flags & dns.flags.AA


def test_srv_for_a_named_port() -> None:
    response = ask("_metrics._tcp.web.default.svc.cluster.local.", "SRV")

    assert answers(response) == [
        "_metrics._tcp.web.default.svc.cluster.local. SRV 0 100 9090 web.default.svc.cluster.local."
    ]
    assert response is not None
    assert [f"{r.name} {rd}" for r in response.additional for rd in r] == [f"web.default.svc.cluster.local. {LOCAL}"]


def test_srv_for_the_service_lists_every_port() -> None:
    assert answers(ask("web.default.svc.cluster.local.", "SRV")) == [
        "web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local.",
        "web.default.svc.cluster.local. SRV 0 100 9090 web.default.svc.cluster.local.",
    ]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("nope.default.svc.cluster.local.", id="unknown-service"),
        pytest.param("web.other.svc.cluster.local.", id="unknown-namespace"),
        pytest.param("_grpc._tcp.web.default.svc.cluster.local.", id="unknown-port"),
        pytest.param("_http._udp.web.default.svc.cluster.local.", id="wrong-protocol"),
        pytest.param("web.default.pod.cluster.local.", id="not-svc"),
        pytest.param("a.b.c.web.default.svc.cluster.local.", id="too-deep"),
    ],
)
def test_unknown_names_under_cluster_local_are_nxdomain(name: str) -> None:
    response = ask(name)

    assert response is not None
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    assert [dns.rdatatype.to_text(r.rdtype) for r in response.authority] == ["SOA"]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("default.svc.cluster.local.", id="namespace"),
        pytest.param("svc.cluster.local.", id="svc"),
        pytest.param("cluster.local.", id="zone"),
    ],
)
def test_names_above_services_exist_without_records(name: str) -> None:
    response = ask(name)

    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer


@pytest.mark.parametrize("rdtype", ["AAAA", "MX", "TXT"])
def test_other_types_for_known_names_are_empty(rdtype: str) -> None:
    response = ask("web.default.svc.cluster.local.", rdtype)

    assert response is not None
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer


def test_an_ipv6_local_address_answers_aaaa() -> None:
    assert answers(ask("web.default.svc.cluster.local.", "AAAA", local="fd00::1")) == [
        "web.default.svc.cluster.local. AAAA fd00::1"
    ]
    assert answers(ask("web.default.svc.cluster.local.", "A", local="fd00::1")) == []


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("example.com.", id="two-labels-not-a-service"),
        pytest.param("www.example.com.", id="three-labels"),
        pytest.param("nope.default.svc.", id="unknown-short-svc"),
        pytest.param("a.b.c.d.", id="four-labels"),
        pytest.param(".", id="root"),
        pytest.param("localhost.", id="one-label"),
    ],
)
def test_names_that_are_not_ours_are_forwarded(name: str) -> None:
    assert ask(name) is None


def test_only_plain_queries_are_answered() -> None:
    query = dns.message.make_query("web.default.svc.cluster.local.", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    assert respond(query, ZONE, LOCAL) is None


def test_the_response_echoes_id_and_question() -> None:
    query = dns.message.make_query("web.default.svc.cluster.local.", "A")
    response = respond(query, ZONE, LOCAL)

    assert response is not None
    assert response.id == query.id
    assert response.question == query.question
    assert query.is_response(response)


def test_error_response_keeps_the_question() -> None:
    query = dns.message.make_query("example.com.", "A")
    response = error_response(query, dns.rcode.SERVFAIL)

    assert response.rcode() == dns.rcode.SERVFAIL
    assert query.is_response(response)


def test_a_service_with_a_cluster_ip_answers_it_wherever_asked() -> None:
    zone = build_zone(
        [
            discovery_pb2.ServiceRoute(
                name="web",
                namespace="default",
                cluster_ip="10.43.0.10",
                ports=[discovery_pb2.RoutePort(name="http", protocol="TCP", port=80)],
            ),
            discovery_pb2.ServiceRoute(
                name="dns",
                namespace="kube-system",
                cluster_ip="10.43.0.53",
                ports=[discovery_pb2.RoutePort(name="dns", protocol="UDP", port=53)],
            ),
        ]
    )
    for local in (LOCAL, "127.0.0.2"):
        response = respond(dns.message.make_query("web.default.svc.cluster.local.", "A"), zone, local)
        assert answers(response) == ["web.default.svc.cluster.local. A 10.43.0.10"]
    srv = respond(dns.message.make_query("_dns._udp.dns.kube-system.svc.cluster.local.", "SRV"), zone, LOCAL)
    assert answers(srv) == [
        "_dns._udp.dns.kube-system.svc.cluster.local. SRV 0 100 53 dns.kube-system.svc.cluster.local."
    ]
    assert srv is not None and [str(r) for r in srv.additional[0]] == ["10.43.0.53"]
    aaaa = respond(dns.message.make_query("web.default.svc.cluster.local.", "AAAA"), zone, LOCAL)
    assert answers(aaaa) == []
