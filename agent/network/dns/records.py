"""Answers for Service names, as pure functions over dnspython messages.

Names (case does not matter):

    <svc>.<ns>.svc.cluster.local.           A: the Service's clusterIP
    <svc>.<ns>.svc.   <svc>.<ns>.           the same, short forms
    _<port>._tcp.<svc>.<ns>.svc.cluster.local.   SRV 0 100 <listen port> <svc>.<ns>.svc.cluster.local.

A headless Service (`clusterIP: None`) has no proxy: its name answers one A
record per ready endpoint (the pods' own addresses; none ready: an empty
NOERROR), and `<hostname>.<svc>.<ns>.svc.cluster.local.` (short forms
`<hostname>.<svc>.<ns>.svc.` and `<hostname>.<svc>.<ns>.`) the address of the
endpoint with that hostname — a pod whose spec.hostname and spec.subdomain
name it, such as a StatefulSet's `db-0.db`. It has no SRV records. The
two-label `<hostname>.<svc>.` is answered too when one namespace only has
that pair: a resolver's search list completes `db-0.db` in the pod's own
namespace, but some clients (busybox's nslookup) send a name with a dot as it
is; when several namespaces have it, the name is forwarded like any other.

The A record is the Service's clusterIP. A route without one (from a
control plane before virtual IPs, a Service not given one yet, or the
agent's reduced mode) answers the local address the query arrived on
instead: every address the node proxy listens on runs a DNS server too, so a
client is sent to the proxy address it already reaches. AAAA (and any other
type) for a known name is an empty NOERROR, unless that address is IPv6. Under `cluster.local.` the server
is authoritative: an unknown name is NXDOMAIN. A short form that is not a
known Service is not ours (`respond` returns None) and is forwarded, since
`web.example.` may well be a real name. TTL 5 s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from protos.corral.v1 import discovery_pb2

TTL = 5
ZONE = dns.name.from_text("cluster.local.")
_SOA = dns.rdata.from_text(
    dns.rdataclass.IN, dns.rdatatype.SOA, f"ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 {TTL}"
)


@dataclass(frozen=True)
class ServicePorts:
    # (port name, protocol in lower case, port)
    ports: tuple[tuple[str, str, int], ...]
    # The Service's virtual IP ("": answer the address the query arrived on).
    cluster_ip: str = ""


@dataclass(frozen=True)
class Zone:
    """The Service names a node answers for: (name, namespace) → ports; a headless Service's
    (name, namespace) → its endpoints' addresses; (hostname, Service, namespace) → addresses."""

    services: dict[tuple[str, str], ServicePorts] = field(default_factory=dict)
    namespaces: frozenset[str] = frozenset()
    headless: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    hosts: dict[tuple[str, str, str], tuple[str, ...]] = field(default_factory=dict)
    # (hostname, Service) → addresses, for the pairs that only one namespace has.
    short_hosts: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)


def build_zone(routes: Iterable[discovery_pb2.ServiceRoute]) -> Zone:
    routes = list(routes)
    services = {
        (r.name.lower(), r.namespace.lower()): ServicePorts(
            tuple((p.name.lower(), (p.protocol or "TCP").lower(), p.port) for p in r.ports), r.cluster_ip
        )
        for r in routes
    }
    headless: dict[tuple[str, str], tuple[str, ...]] = {}
    hosts: dict[tuple[str, str, str], list[str]] = {}
    for r in routes:
        if not r.headless:
            continue
        key = (r.name.lower(), r.namespace.lower())
        headless[key] = tuple(dict.fromkeys(e.address for e in r.endpoints if e.address))
        for e in r.endpoints:
            if e.hostname and e.address:
                hosts.setdefault((e.hostname.lower(), *key), []).append(e.address)
    full = {k: tuple(dict.fromkeys(v)) for k, v in hosts.items()}
    namespaces: dict[tuple[str, str], list[str]] = {}
    for host, service, namespace in full:
        namespaces.setdefault((host, service), []).append(namespace)
    short = {pair: full[(*pair, found[0])] for pair, found in namespaces.items() if len(found) == 1}
    return Zone(services, frozenset(ns for _, ns in services), headless, full, short)


def _labels(name: dns.name.Name) -> list[str]:
    return [label.decode("ascii", "replace").lower() for label in name.labels if label]


@dataclass(frozen=True)
class _Lookup:
    authoritative: bool  # under cluster.local.
    inner: list[str]  # the labels before ".svc" (or all of a two-label short form)
    exists: bool  # the name exists with no records of its own (the zone, svc, a namespace)


def _parse(labels: list[str], zone: Zone) -> _Lookup | None:
    if labels[-2:] == ["cluster", "local"]:
        rest = labels[:-2]
        if not rest:
            return _Lookup(True, [], exists=True)
        if rest[-1] != "svc":
            return _Lookup(True, rest, exists=False)
        inner = rest[:-1]
        exists = not inner or (len(inner) == 1 and inner[0] in zone.namespaces)
        return _Lookup(True, inner, exists=exists)
    if labels[-1:] == ["svc"]:
        return _Lookup(False, labels[:-1], exists=False)
    if len(labels) in (2, 3, 4):
        return _Lookup(False, labels, exists=False)
    return None


def respond(query: dns.message.Message, zone: Zone, local_address: str) -> dns.message.Message | None:
    """The answer to `query`, or None when the name is not ours (forward it)."""
    if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
        return None
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN:
        return None
    labels = _labels(question.name)
    lookup = _parse(labels, zone) if labels else None
    if lookup is None:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    host = tuple(lookup.inner)
    addresses = zone.hosts.get(host) if len(host) == 3 else None
    if len(host) == 2 and not lookup.authoritative and _service(lookup.inner, zone) is None:
        addresses = zone.short_hosts.get(host)
    if addresses is not None:
        if lookup.authoritative:
            response.flags |= dns.flags.AA
        _answer_addresses(response, question.name, question.rdtype, addresses)
        if not response.answer and lookup.authoritative:
            _add(response.authority, ZONE, _SOA)
        return response
    found = _service(lookup.inner, zone)
    if found is None:
        if not lookup.authoritative:
            return None
        response.flags |= dns.flags.AA
        if not lookup.exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if lookup.exists and not lookup.inner and question.rdtype == dns.rdatatype.SOA and len(labels) == 2:
            _add(response.answer, question.name, _SOA)
        else:
            _add(response.authority, ZONE, _SOA)
        return response
    if lookup.authoritative:
        response.flags |= dns.flags.AA
    (name, namespace), srv_port = found
    target = dns.name.from_text(f"{name}.{namespace}.svc.cluster.local.")
    ports = zone.services[(name, namespace)].ports
    if srv_port is not None:
        ports = tuple(p for p in ports if (p[0], p[1]) == srv_port)
        if not ports:
            if lookup.authoritative:
                response.set_rcode(dns.rcode.NXDOMAIN)
                _add(response.authority, ZONE, _SOA)
                return response
            return None
    if (name, namespace) in zone.headless:
        _answer_addresses(response, question.name, question.rdtype, zone.headless[(name, namespace)])
    else:
        address = zone.services[(name, namespace)].cluster_ip or local_address
        _answer(response, question.name, question.rdtype, target, ports, address)
    if not response.answer and lookup.authoritative:
        _add(response.authority, ZONE, _SOA)
    return response


def _service(inner: list[str], zone: Zone) -> tuple[tuple[str, str], tuple[str, str] | None] | None:
    """((name, namespace), (port name, protocol) for an SRV name, else None), if it is a known Service."""
    if len(inner) == 2 and (inner[0], inner[1]) in zone.services:
        return (inner[0], inner[1]), None
    if (
        len(inner) == 4
        and inner[0].startswith("_")
        and inner[1] in ("_tcp", "_udp")
        and (inner[2], inner[3]) in zone.services
    ):
        return (inner[2], inner[3]), (inner[0][1:], inner[1][1:])
    return None


def _answer(
    response: dns.message.Message,
    qname: dns.name.Name,
    qtype: int,
    target: dns.name.Name,
    ports: tuple[tuple[str, str, int], ...],
    local_address: str,
) -> None:
    v6 = ":" in local_address
    address_type = dns.rdatatype.AAAA if v6 else dns.rdatatype.A
    if qtype in (address_type, dns.rdatatype.ANY):
        _add(response.answer, qname, _address(local_address))
    if qtype in (dns.rdatatype.SRV, dns.rdatatype.ANY) and ports:
        for _, _, port in ports:
            _add(
                response.answer,
                qname,
                dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SRV, f"0 100 {port} {target.to_text()}"),
            )
        _add(response.additional, target, _address(local_address))


def _answer_addresses(
    response: dns.message.Message, qname: dns.name.Name, qtype: int, addresses: Iterable[str]
) -> None:
    """A (and AAAA) records for a headless Service's or a pod host's addresses."""
    for address in addresses:
        rdata = _address(address)
        if qtype in (rdata.rdtype, dns.rdatatype.ANY):
            _add(response.answer, qname, rdata)


def _address(local_address: str) -> dns.rdata.Rdata:
    rdtype = dns.rdatatype.AAAA if ":" in local_address else dns.rdatatype.A
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, local_address)


def _add(section: list[dns.rrset.RRset], name: dns.name.Name, rdata: dns.rdata.Rdata) -> None:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == rdata.rdtype:
            rrset.add(rdata, TTL)
            return
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdata.rdtype)
    rrset.add(rdata, TTL)
    section.append(rrset)


def error_response(query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    """SERVFAIL, REFUSED, …: the query's header and question with `rcode`."""
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    response.set_rcode(rcode)
    return response
