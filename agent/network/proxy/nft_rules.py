"""The kernel data path's rules: Service routes → one nftables table, a pure core.

`plan(routes, node=…, reserved=…)` sorts every Service frontend
(`frontends.py`: `<clusterIP>:<port>`, `<node addresses>:<nodePort>`, a
LoadBalancer's `<node addresses>:<port>`; TCP and UDP) into the kernel's share
and the userspace proxy's. A frontend belongs to the first Service by
namespace/name that wants it:

- the kernel takes a route port when nftables can do its balancing: round
  robin, with or without traffic weights, and IPv4 backends only. Its backends
  become `slots`, the order the pure `Balancer` would pick them in, over one
  whole period: round robin is each backend once; with weights, the smooth
  weighted round robin over the groups (a group weighted 10 against 90 gets
  exactly every tenth slot; weight 0, none), each group's backends in turn,
  repeated until the sequence starts again (at most `MAX_SLOTS`). A node
  frontend with `externalTrafficPolicy: Local`, and a clusterIP frontend with
  `internalTrafficPolicy: Local`, get only the backends on this node. A
  frontend with no slot left is rejected (TCP reset, ICMP port unreachable
  for UDP), so clients fail fast;
- the rest (LeastConnections, IPv6 backends) stays with the userspace proxy:
  `Plan.leftover` is the routes cut down to those ports.

`render(plan, table, addresses)` writes the table: a `services` chain whose
one verdict map sends `ip daddr . meta l4proto . th dport` of every frontend
(a clusterIP, or each node address for node frontends) to that frontend's
chain. The frontend chain drops clients outside a LoadBalancer's
loadBalancerSourceRanges, marks the connection for masquerading (unless
a node frontend's externalTrafficPolicy is Local: the client's address is
kept), and picks the slot with `numgen inc mod
<slots>` over a verdict map of slot → `jump <frontend chain>_b<index>` (the
kernel's counter goes round: the slots are followed exactly, whoever
connects); each distinct backend of the frontend has that one chain, which
counts the connection and DNATs it to the backend's address:port. A nat chain
sees only the first packet of a connection, so a backend chain's packet
counter is its number of new connections; `backend_chains(plan)` names the
Service, pod and port behind each chain so the counters can be attributed.
A frontend with ClientIP affinity (`Frontend.affinity_seconds`) also gets,
per distinct backend, a set `<backend chain>_aff` of client addresses with
that timeout, as kube-proxy's nftables mode does: the backend chain first
`update`s the set with the client's address (added, or its timeout started
again), and the frontend chain, before the slots, jumps a client found in a
backend's set straight to that backend's chain. A backend that leaves the
slots takes its set with it. Every replace starts the sets anew, so
`render(…, pinned=…)` writes back the clients read from the table before
(by frontend chain and backend; `affinity_sets(plan)` names each set's).
Jumped to from the nat `prerouting` (pods, other hosts) and `output` (this
host's processes, loopback included) hooks. Marked connections leaving by
another interface than lo are masqueraded (else the reply would bypass this
node); rejected frontends are matched in the filter `input`, `forward` and
`output` hooks. `table_name(node)` names one agent's table, so several agents
on one machine keep apart.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.network.proxy.endpoints import LEAST_CONNECTIONS, Backend, Balancer, backends_of
from agent.network.proxy.frontends import NODE, Frontend, frontends
from protos.corral.v1 import discovery_pb2

# The most DNAT slots one port gets; a longer exact period is cut to whole weight cycles.
MAX_SLOTS = 4096
TABLE_PREFIX = "corral_"


@dataclass(frozen=True)
class KernelPort:
    """One frontend served by nftables: `slots` in DNAT order (empty: rejected)."""

    service: str
    port_name: str
    port: int  # the frontend's port
    slots: tuple[Backend, ...]
    # Every backend pod of the port, slots or not (a zero-weight group's too), by name.
    pods: tuple[str, ...] = ()
    frontend: Frontend = field(default_factory=lambda: Frontend(NODE, 0, "tcp"))

    @property
    def chain(self) -> str:
        return frontend_chain(self.frontend)


@dataclass(frozen=True)
class BackendChain:
    """One distinct backend of a kernel port, as its counting chain in the table names it."""

    service: str
    pod: str
    port: int  # the frontend's port
    backend: Backend


@dataclass(frozen=True)
class Plan:
    ports: tuple[KernelPort, ...] = ()
    # The routes the userspace proxy keeps, cut down to their ports the kernel does not take.
    leftover: dict[str, discovery_pb2.ServiceRoute] = field(default_factory=dict)
    # (port, Service left without it, Service holding it) for frontends the kernel took.
    conflicts: tuple[tuple[int, str, str], ...] = ()

    def services(self) -> dict[int, str]:
        """Node-address port → Service, for the TCP node frontends."""
        return {p.port: p.service for p in self.ports if p.frontend.address == NODE and p.frontend.protocol == "tcp"}


def table_name(node: str) -> str:
    """`corral_<node>`: nft names take letters, digits and "_" (and at most 256 characters)."""
    return TABLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", node.lower())[:64]


def _is_ipv4(address: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(address), ipaddress.IPv4Address)
    except ValueError:
        return False


def kernel_capable(route: discovery_pb2.ServiceRoute, port: discovery_pb2.RoutePort) -> bool:
    """Whether nftables can balance this port as the userspace proxy would."""
    return route.load_balancing != LEAST_CONNECTIONS and all(_is_ipv4(b.address) for b in port.backends)


def slots(backends: Sequence[Backend], weights: Mapping[str, int] | None = None) -> list[Backend]:
    """One whole period of the `Balancer`'s picks (see the module docstring)."""
    balancer = Balancer(backends, weights=weights)
    members = balancer.backends
    if not weights:
        period = len(members)
    else:
        counts: dict[str, int] = {}
        for backend in members:
            if weights.get(backend.group, 0) > 0:
                counts[backend.group] = counts.get(backend.group, 0) + 1
        if not counts:
            return []
        divisor = math.gcd(*(int(weights[g]) for g in counts))
        reduced = {g: int(weights[g]) // divisor for g in counts}
        cycle = sum(reduced.values())  # group picks until the weighted round robin starts again
        # Cycles until every group's round robin is back at its first backend too.
        cycles = math.lcm(*(n // math.gcd(n, reduced[g]) for g, n in counts.items()))
        period = cycle * cycles
        if period > MAX_SLOTS:
            period = max(cycle, MAX_SLOTS // cycle * cycle)
    picks = [balancer.pick(0.0) for _ in range(period)]
    return [p for p in picks if p is not None]


def plan(
    routes: Mapping[str, discovery_pb2.ServiceRoute], *, node: str = "", reserved: Mapping[int, str] | None = None
) -> Plan:
    """Split `routes` (keyed "namespace/name") between the kernel and the userspace proxy."""
    owners: dict[tuple[str, int, str], str] = {}
    for key in sorted(routes):
        for port in routes[key].ports:
            for front in frontends(routes[key], port, reserved):
                owners.setdefault(front.key, key)
    kernel: list[KernelPort] = []
    taken: set[tuple[str, str]] = set()  # (service, port name) the kernel serves
    conflicts: set[tuple[int, str, str]] = set()
    for key in sorted(routes):
        route = routes[key]
        for port in route.ports:
            fronts = frontends(route, port, reserved)
            if not fronts or not kernel_capable(route, port):
                continue
            taken.add((key, port.name))
            backends = backends_of(port)
            pods = tuple(dict.fromkeys(b.pod for b in backends if b.pod))
            for front in fronts:
                if owners[front.key] != key:
                    conflicts.add((front.port, key, owners[front.key]))
                    continue
                chosen = [b for b in backends if b.node == node] if front.local_only else backends
                kernel.append(KernelPort(key, port.name, front.port, tuple(slots(chosen, route.weights)), pods, front))
    leftover: dict[str, discovery_pb2.ServiceRoute] = {}
    for key in sorted(routes):
        route = routes[key]
        kept = [p for p in route.ports if (key, p.name) not in taken]
        if len(kept) == len(route.ports):
            leftover[key] = route
        elif kept:
            cut = discovery_pb2.ServiceRoute()
            cut.CopyFrom(route)
            del cut.ports[:]
            cut.ports.extend(kept)
            leftover[key] = cut
    kernel.sort(key=lambda p: (p.frontend.address != NODE, p.frontend.address, p.port, p.frontend.protocol))
    return Plan(tuple(kernel), leftover, tuple(sorted(conflicts)))


# -- the text -----------------------------------------------------------------------


def _set(items: Sequence[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


MASQUERADE_MARK = "0x00004000"


def _dispatch(port: KernelPort, chains: Mapping[str, str]) -> list[str]:
    """The frontend chain's rules: source ranges, the masquerade mark, affinity, the jump to the slot's backend."""
    comment = f'comment "{port.service}:{port.port_name}"' if port.port_name else f'comment "{port.service}"'
    rules: list[str] = []
    if port.frontend.source_ranges:
        rules.append(f"ip saddr != {_set(list(port.frontend.source_ranges))} drop")
    if not port.frontend.keeps_client:
        rules.append(f"ct mark set ct mark | {MASQUERADE_MARK}")
    if port.frontend.affinity_seconds:
        rules += [f"ip saddr @{affinity_set(chain)} jump {chain}" for chain in chains.values()]
    if len(port.slots) == 1:
        return [*rules, f"jump {chains[port.slots[0].key]} {comment}"]
    lines = [f"{i} : jump {chains[b.key]}" for i, b in enumerate(port.slots)]
    rows = [", ".join(lines[i : i + 8]) for i in range(0, len(lines), 8)]
    elements = ",\n\t\t\t".join(rows)
    numgen = f"numgen inc mod {len(port.slots)}"
    return [*rules, f"{numgen} vmap {{\n\t\t\t{elements}\n\t\t}} {comment}"]


def _chain(name: str, *rules: str, hook: str = "") -> str:
    body = [f"\t\t{hook}"] if hook else []
    body += [f"\t\t{rule}" for rule in rules]
    return f"\tchain {name} {{\n" + "".join(f"{line}\n" for line in body) + "\t}"


def frontend_chain(front: Frontend) -> str:
    """`port_<port>` for a node TCP frontend, `ip_<clusterIP>_<port>` for a clusterIP one; `_udp` for UDP."""
    base = f"port_{front.port}" if front.address == NODE else f"ip_{front.address.replace('.', '_')}_{front.port}"
    return base if front.protocol == "tcp" else f"{base}_{front.protocol}"


def backend_chain(chain: str, index: int) -> str:
    """`<frontend chain>_b<index>`: the chain of a frontend's `index`-th distinct backend (first-slot order)."""
    return f"{chain}_b{index}"


def affinity_set(chain: str) -> str:
    """`<backend chain>_aff`: the clients pinned to that backend (ClientIP affinity)."""
    return f"{chain}_aff"


def affinity_sets(plan: Plan) -> dict[str, tuple[str, str]]:
    """Set name → (frontend chain, backend address:port), for every affinity set `render(plan, …)` writes."""
    sets: dict[str, tuple[str, str]] = {}
    for port in plan.ports:
        if port.frontend.affinity_seconds:
            for index, backend in enumerate(_port_backends(port).values()):
                sets[affinity_set(backend_chain(port.chain, index))] = (port.chain, backend.key)
    return sets


Pinned = Mapping[tuple[str, str], Mapping[str, int]]


def _affinity_set(name: str, timeout: int, clients: Mapping[str, int]) -> str:
    """A set of client addresses that expire `timeout` s after their latest update; `clients`: address → s left."""
    lines = ["type ipv4_addr", "flags dynamic,timeout", f"timeout {timeout}s"]
    kept = [f"{ip} timeout {timeout}s expires {min(n, timeout)}s" for ip, n in sorted(clients.items()) if n > 0]
    if kept:
        lines.append(f"elements = {_set(kept)}")
    return f"\tset {name} {{\n" + "".join(f"\t\t{line}\n" for line in lines) + "\t}"


def _port_backends(port: KernelPort) -> dict[str, Backend]:
    """A port's distinct backends by address:port, in the order of their first slot."""
    distinct: dict[str, Backend] = {}
    for backend in port.slots:
        distinct.setdefault(backend.key, backend)
    return distinct


def backend_chains(plan: Plan) -> dict[str, BackendChain]:
    """Chain name → the backend it DNATs to, for every backend chain `render(plan, …)` writes."""
    chains: dict[str, BackendChain] = {}
    for port in plan.ports:
        for index, backend in enumerate(_port_backends(port).values()):
            chains[backend_chain(port.chain, index)] = BackendChain(port.service, backend.pod, port.port, backend)
    return chains


def _elements(ports: Sequence[KernelPort], addresses: Sequence[str], verdict: bool) -> list[str]:
    """`address . proto . port [: jump chain]` for every address each frontend is served on."""
    out: list[str] = []
    for port in ports:
        where = addresses if port.frontend.address == NODE else [port.frontend.address]
        for address in where:
            element = f"{address} . {port.frontend.protocol} . {port.port}"
            out.append(f"{element} : jump {port.chain}" if verdict else element)
    return out


def render(plan: Plan, table: str, addresses: Sequence[str], *, pinned: Pinned | None = None) -> str:
    """The whole table, `table ip <table> { … }`, for the IPv4 `addresses` the proxy serves on the node;
    `pinned`: (frontend chain, backend address:port) → client address → seconds left, for the affinity sets."""
    addresses = list(dict.fromkeys(addresses))
    pinned = pinned or {}
    served = [p for p in plan.ports if p.slots]
    rejected = [p for p in plan.ports if not p.slots]
    chains: list[str] = []
    for port in served:
        names: dict[str, str] = {}
        timeout = port.frontend.affinity_seconds
        for index, backend in enumerate(_port_backends(port).values()):
            names[backend.key] = name = backend_chain(port.chain, index)
            dnat = f"meta l4proto {port.frontend.protocol} counter dnat ip to {backend.address}:{backend.port}"
            if timeout:
                clients = pinned.get((port.chain, backend.key), {})
                chains.append(_affinity_set(affinity_set(name), timeout, clients))
                chains.append(_chain(name, f"update @{affinity_set(name)} {{ ip saddr }}", dnat))
            else:
                chains.append(_chain(name, dnat))
        chains.append(_chain(port.chain, *_dispatch(port, names)))
    elements = _elements(served, addresses, verdict=True)
    dispatch = [f"ip daddr . meta l4proto . th dport vmap {_set(elements)}"] if elements else []
    masquerade = [f'ct status dnat oifname != "lo" ct mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} masquerade']
    reject: list[str] = []
    for protocol, verdict in (("tcp", "reject with tcp reset"), ("udp", "reject")):
        dead = _elements([p for p in rejected if p.frontend.protocol == protocol], addresses, verdict=False)
        if dead:
            reject.append(f"ip daddr . meta l4proto . th dport {_set(dead)} {verdict}")
    if not elements:
        masquerade = []
    chains += [
        _chain("services", *dispatch),
        _chain("prerouting", "jump services", hook="type nat hook prerouting priority dstnat; policy accept;"),
        _chain("output", "jump services", hook="type nat hook output priority -100; policy accept;"),
        _chain("postrouting", *masquerade, hook="type nat hook postrouting priority srcnat; policy accept;"),
        _chain("reject_input", *reject, hook="type filter hook input priority filter; policy accept;"),
        _chain("reject_forward", *reject, hook="type filter hook forward priority filter; policy accept;"),
        _chain("reject_output", *reject, hook="type filter hook output priority filter; policy accept;"),
    ]
    return f"table ip {table} {{\n" + "\n".join(chains) + "\n}\n"
