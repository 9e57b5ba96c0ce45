"""The pod network between nodes (host-gw), pure: which routes and forwarding rules a node needs.

Every node has a pod subnet (`spec.podCIDR`) from the cluster CIDR; its
Docker bridge holds that subnet, so the node itself reaches its own pods.
To reach another node's pods, a node routes that node's subnet via the
node's address (flannel's host-gw backend): `plan(table, own, reach)` gives
one `PeerRoute` per other node whose address `reach` says is on a directly
connected network. It skips, with the reason:

- `local`: the node's address is this host's (several agents on one machine,
  127.0.0.2-4 say): its bridge is on this host too, already reachable;
- `not_direct`: the address is reached through a gateway (another network):
  host-gw needs one L2 network; such nodes need an overlay (not built);
- `no_address`: the node reported no InternalIP address.
- `outside_cluster_cidr`: its subnet is not inside the table's cluster CIDR
  (a Node written with a foreign `spec.podCIDR` before the API checked it);
- `subnet_shared`: two nodes name the same subnet: neither gets a route.

`forward_rules(...)` are the accept rules Docker's FORWARD chain (policy
DROP) needs for routed traffic into this node's pod subnet: from the cluster
CIDR (pods of every node, and this host's other bridges) and from the
other nodes' addresses (their hosts, and the pods of nodes whose agent
predates `nat_rules`, masqueraded by Docker on the way out); and for connections this node's Service rules
DNATed to a pod (a nodePort or LoadBalancer port reached from the LAN, sent
to a pod here or on another node: conntrack state DNAT with the pod as reply
source). Nothing else is accepted into the subnet but Docker's own rules
(replies, published hostPorts), so hosts of the LAN that are not nodes do
not reach pod ports.

`nat_rules(...)` is the rule that keeps pod-to-pod traffic unNATed (as
flannel's): Docker masquerades everything leaving the bridge's subnet by
another interface (`nat POSTROUTING -s <subnet> ! -o <bridge> -j
MASQUERADE`), so a pod on another node would see this node's address; a
`RETURN` at the top of POSTROUTING for traffic from this node's pod subnet
to the cluster CIDR skips it, so the receiver sees the sender's pod address
(Kubernetes' network model). Traffic leaving the cluster CIDR (the LAN, the
internet, other nodes' host addresses) is still masqueraded.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from protos.corral.v1 import node_service_pb2


class Reach(Enum):
    LOCAL = "local"
    DIRECT = "direct"
    GATEWAY = "gateway"
    NONE = "none"


@dataclass(frozen=True, order=True)
class PeerRoute:
    subnet: str
    via: str
    node: str = ""


@dataclass(frozen=True)
class RoutePlan:
    routes: tuple[PeerRoute, ...] = ()
    # node → why it gets no route (local, not_direct, no_address)
    skipped: dict[str, str] = field(default_factory=dict)
    # This node's own pod subnet ("": none) and the cluster CIDR.
    own_subnet: str = ""
    cluster_cidr: str = ""
    # The other nodes' addresses (for the forwarding rules).
    peer_addresses: tuple[str, ...] = ()


def _valid_subnet(value: str) -> bool:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return False
    return True


def _inside(cluster: str) -> Callable[[str], bool]:
    """Whether a subnet is a valid one inside the cluster CIDR (any valid one when it is unknown:
    an older control plane sends none)."""
    network = ipaddress.IPv4Network(cluster) if cluster else None

    def check(value: str) -> bool:
        try:
            subnet = ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            return False
        return network is None or subnet.subnet_of(network)

    return check


def _valid_address(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def plan(table: node_service_pb2.PodNetwork, own: str, reach: Callable[[str], Reach]) -> RoutePlan:
    """The routes to the other nodes' pod subnets (see the module docstring)."""
    routes: list[PeerRoute] = []
    skipped: dict[str, str] = {}
    own_subnet = ""
    peers: list[str] = []
    cluster = table.cluster_cidr if _valid_subnet(table.cluster_cidr) else ""
    within = _inside(cluster)
    # How many nodes name each subnet that may be routed (valid, inside the cluster CIDR).
    claimed = Counter(entry.pod_cidr for entry in table.nodes if within(entry.pod_cidr))
    for entry in table.nodes:
        if entry.node == own:
            own_subnet = entry.pod_cidr if entry.pod_cidr in claimed else ""
            continue
        if entry.pod_cidr not in claimed:
            if entry.pod_cidr:
                skipped[entry.node] = "outside_cluster_cidr"
            continue
        if claimed[entry.pod_cidr] > 1:
            # Two nodes naming one subnet (a table the control plane should never send): route
            # neither rather than send one node's pods to the other.
            skipped[entry.node] = "subnet_shared"
            continue
        if not _valid_address(entry.address):
            skipped[entry.node] = "no_address"
            continue
        peers.append(entry.address)
        where = reach(entry.address)
        if where is Reach.LOCAL:
            skipped[entry.node] = "local"
        elif where is Reach.DIRECT:
            routes.append(PeerRoute(entry.pod_cidr, entry.address, entry.node))
        else:
            skipped[entry.node] = "not_direct"
    return RoutePlan(
        tuple(sorted(routes)), skipped, own_subnet, cluster, tuple(sorted(set(peers), key=ipaddress.IPv4Address))
    )


def changes(installed: Iterable[PeerRoute], wanted: Iterable[PeerRoute]) -> tuple[list[PeerRoute], list[str]]:
    """What to add or replace (routes not installed as wanted) and which subnets to remove."""
    have = {r.subnet: r.via for r in installed}
    want = {r.subnet: r for r in wanted}
    add = [r for s, r in sorted(want.items()) if have.get(s) != r.via]
    remove = sorted(s for s in have if s not in want)
    return add, remove


def forward_rules(plan: RoutePlan, comment: str) -> list[list[str]]:
    """iptables rule specs (for DOCKER-USER) accepting routed traffic into this node's pod subnet,
    and the connections a Service frontend of this node sent to a pod (DNAT, both directions)."""
    tag = ["-m", "comment", "--comment", comment, "-j", "ACCEPT"]
    rules = []
    if plan.cluster_cidr:
        rules.append(["-m", "conntrack", "--ctstate", "DNAT", "--ctreplsrc", plan.cluster_cidr, *tag])
    if plan.own_subnet:
        sources = ([plan.cluster_cidr] if plan.cluster_cidr else []) + [f"{a}/32" for a in plan.peer_addresses]
        rules.extend(["-s", source, "-d", plan.own_subnet, *tag] for source in sources)
    return rules


def nat_rules(plan: RoutePlan, comment: str) -> list[list[str]]:
    """iptables rule specs (for the nat table's POSTROUTING, first) returning before Docker's
    masquerade for traffic from this node's pod subnet to the cluster CIDR."""
    if not (plan.own_subnet and plan.cluster_cidr):
        return []
    return [["-s", plan.own_subnet, "-d", plan.cluster_cidr, "-m", "comment", "--comment", comment, "-j", "RETURN"]]
