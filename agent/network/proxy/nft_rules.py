"""The kernel data path's rules: Service routes → one nftables table, a pure core.

`plan(routes)` sorts every TCP Service port into the kernel's share and the
userspace proxy's, with the claim rules of `ProxyServer` (a listen port
belongs to the first Service by namespace/name that wants it):

- the kernel takes a port when nftables can do its balancing: round robin,
  with or without traffic weights, and IPv4 backends only. Its backends
  become `slots`, the order the pure `Balancer` would pick them in, over one
  whole period: round robin is each backend once; with weights, the smooth
  weighted round robin over the groups (a group weighted 10 against 90 gets
  exactly every tenth slot; weight 0, none), each group's backends in turn,
  repeated until the sequence starts again (at most `MAX_SLOTS`). A port
  with no slot left is rejected (TCP reset), so clients fail fast;
- the rest (LeastConnections, IPv6 backends, other protocols) stays with the
  userspace proxy: `Plan.leftover` is the routes cut down to those ports.

`render(plan, table, addresses)` writes the table: a `services` chain that
sends `ip daddr <proxy address> tcp dport <port>` to that port's chain, which
picks the slot with `numgen inc mod <slots>` over a verdict map of slot →
`jump port_<port>_b<index>` (the kernel's counter goes round: the slots are
followed exactly, whoever connects); each distinct backend of the port has
that one chain, which counts the connection and DNATs it to the backend's
address:port. A nat chain sees only the first packet of a connection, so a
backend chain's packet counter is its number of new connections;
`backend_chains(plan)` names the Service, pod and port behind each chain so
the counters can be attributed. Jumped to from the nat `prerouting`
(pods, other hosts) and `output` (this host's processes, loopback included)
hooks. Connections DNATed to another host are masqueraded on the way out
(else the reply would bypass this node); rejected ports are matched in the
filter `input` and `output` hooks. `table_name(node)` names one agent's
table, so several agents on one machine keep apart.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agent.network.proxy.endpoints import LEAST_CONNECTIONS, Backend, Balancer, backends_of, is_tcp
from protos.corral.v1 import discovery_pb2

# The most DNAT slots one port gets; a longer exact period is cut to whole weight cycles.
MAX_SLOTS = 4096
TABLE_PREFIX = "corral_"


@dataclass(frozen=True)
class KernelPort:
    """One listen port served by nftables: `slots` in DNAT order (empty: rejected)."""

    service: str
    port_name: str
    port: int
    slots: tuple[Backend, ...]
    # Every backend pod of the port, slots or not (a zero-weight group's too), by name.
    pods: tuple[str, ...] = ()


@dataclass(frozen=True)
class BackendChain:
    """One distinct backend of a kernel port, as its counting chain in the table names it."""

    service: str
    pod: str
    port: int  # the listen port
    backend: Backend


@dataclass(frozen=True)
class Plan:
    ports: tuple[KernelPort, ...] = ()
    # The routes the userspace proxy keeps, cut down to their ports the kernel does not take.
    leftover: dict[str, discovery_pb2.ServiceRoute] = field(default_factory=dict)
    # (port, Service left without it, Service holding it) for ports the kernel took.
    conflicts: tuple[tuple[int, str, str], ...] = ()

    def services(self) -> dict[int, str]:
        return {p.port: p.service for p in self.ports}


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


def plan(routes: Mapping[str, discovery_pb2.ServiceRoute]) -> Plan:
    """Split `routes` (keyed "namespace/name") between the kernel and the userspace proxy."""
    owners: dict[int, str] = {}
    for key in sorted(routes):
        for port in routes[key].ports:
            if is_tcp(port) and 0 < port.port < 65536:
                owners.setdefault(port.port, key)
    kernel: list[KernelPort] = []
    taken: set[int] = set()
    for key in sorted(routes):
        route = routes[key]
        for port in route.ports:
            if owners.get(port.port) == key and is_tcp(port) and kernel_capable(route, port):
                backends = backends_of(port)
                pods = tuple(dict.fromkeys(b.pod for b in backends if b.pod))
                kernel.append(KernelPort(key, port.name, port.port, tuple(slots(backends, route.weights)), pods))
                taken.add(port.port)
    leftover: dict[str, discovery_pb2.ServiceRoute] = {}
    conflicts: list[tuple[int, str, str]] = []
    for key in sorted(routes):
        route = routes[key]
        kept = [p for p in route.ports if p.port not in taken or not is_tcp(p)]
        conflicts += [(p.port, key, owners[p.port]) for p in route.ports if p.port in taken and owners[p.port] != key]
        if len(kept) == len(route.ports):
            leftover[key] = route
        elif kept:
            cut = discovery_pb2.ServiceRoute()
            cut.CopyFrom(route)
            del cut.ports[:]
            cut.ports.extend(kept)
            leftover[key] = cut
    kernel.sort(key=lambda p: p.port)
    return Plan(tuple(kernel), leftover, tuple(sorted(set(conflicts))))


# -- the text -----------------------------------------------------------------------


def _set(items: Sequence[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


def _dispatch(port: KernelPort, chains: Mapping[str, str]) -> str:
    """The port chain's rule: jump to the slot's backend chain (`chains`: backend key → chain)."""
    comment = f'comment "{port.service}:{port.port_name}"' if port.port_name else f'comment "{port.service}"'
    if len(port.slots) == 1:
        return f"meta l4proto tcp jump {chains[port.slots[0].key]} {comment}"
    lines = [f"{i} : jump {chains[b.key]}" for i, b in enumerate(port.slots)]
    rows = [", ".join(lines[i : i + 8]) for i in range(0, len(lines), 8)]
    elements = ",\n\t\t\t".join(rows)
    numgen = f"numgen inc mod {len(port.slots)}"
    return f"meta l4proto tcp {numgen} vmap {{\n\t\t\t{elements}\n\t\t}} {comment}"


def _chain(name: str, *rules: str, hook: str = "") -> str:
    body = [f"\t\t{hook}"] if hook else []
    body += [f"\t\t{rule}" for rule in rules]
    return f"\tchain {name} {{\n" + "".join(f"{line}\n" for line in body) + "\t}"


def port_chain(port: int) -> str:
    return f"port_{port}"


def backend_chain(port: int, index: int) -> str:
    """`port_<port>_b<index>`: the chain of a port's `index`-th distinct backend (first-slot order)."""
    return f"port_{port}_b{index}"


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
            chains[backend_chain(port.port, index)] = BackendChain(port.service, backend.pod, port.port, backend)
    return chains


def render(plan: Plan, table: str, addresses: Sequence[str]) -> str:
    """The whole table, `table ip <table> { … }`, for the IPv4 `addresses` the proxy serves."""
    served = [p for p in plan.ports if p.slots]
    rejected = [p.port for p in plan.ports if not p.slots]
    daddr = f"ip daddr {_set(list(dict.fromkeys(addresses)))}"
    chains: list[str] = []
    for port in served:
        names: dict[str, str] = {}
        for index, backend in enumerate(_port_backends(port).values()):
            names[backend.key] = backend_chain(port.port, index)
            chains.append(
                _chain(names[backend.key], f"meta l4proto tcp counter dnat ip to {backend.address}:{backend.port}")
            )
        chains.append(_chain(port_chain(port.port), _dispatch(port, names)))
    dispatch = [f"{daddr} tcp dport vmap {_set([f'{p.port} : jump {port_chain(p.port)}' for p in served])}"]
    masquerade = [
        f'ct status dnat oifname != "lo" ct original {daddr} meta l4proto tcp '
        f"ct original proto-dst {_set([p.port for p in served])} masquerade"
    ]
    reject = [f"{daddr} tcp dport {_set(rejected)} reject with tcp reset"]
    if not served or not addresses:
        dispatch = masquerade = []
    if not rejected or not addresses:
        reject = []
    chains += [
        _chain("services", *dispatch),
        _chain("prerouting", "jump services", hook="type nat hook prerouting priority dstnat; policy accept;"),
        _chain("output", "jump services", hook="type nat hook output priority -100; policy accept;"),
        _chain("postrouting", *masquerade, hook="type nat hook postrouting priority srcnat; policy accept;"),
        _chain("reject_input", *reject, hook="type filter hook input priority filter; policy accept;"),
        _chain("reject_output", *reject, hook="type filter hook output priority filter; policy accept;"),
    ]
    return f"table ip {table} {{\n" + "\n".join(chains) + "\n}\n"
