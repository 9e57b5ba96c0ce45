"""The pod subnet repair's decisions, pure (`controllers/podcidrs/controller.py` is its shell).

`repair(held, claims, now=…, grace=…)` compares the Nodes with the pod
subnet keys (`apiserver.pod_cidrs`), as Kubernetes' range allocator rebuilds
its map from the Nodes at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controlplane.apiserver.pod_cidrs import Claim


@dataclass
class CidrRepair:
    free: list[tuple[str, int]] = field(default_factory=list)  # (subnet, revision)
    claim: list[tuple[str, str]] = field(default_factory=list)  # (subnet, the Node holding it)
    clashes: list[tuple[str, str, str]] = field(default_factory=list)  # (subnet, holder, the key's owner)


def repair(held: Mapping[str, str], claims: Mapping[str, Claim], *, now: float, grace: float) -> CidrRepair:
    """What the leader's repair does, from the Nodes (`held`: name → spec.podCIDR, "" for none)
    and the keys (`claims`, read before the Nodes), as Kubernetes' range allocator rebuilds its
    map from the Nodes: a key whose Node does not exist or holds another subnet is freed once
    its claim is `grace` seconds old (a registration between its claim and its Node write is
    left alone; an unreadable key goes at once); a Node holding a subnet without its key gets
    it claimed again; a key naming another Node than one holding it is a clash (logged)."""
    out = CidrRepair()
    holders: dict[str, str] = {}
    for node, subnet in sorted(held.items()):
        if not subnet:
            continue
        holders.setdefault(subnet, node)
        found = claims.get(subnet)
        if found is None:
            out.claim.append((subnet, node))
        elif found.node != node:
            out.clashes.append((subnet, node, found.node or "?"))
    for subnet, found in sorted(claims.items()):
        if subnet in holders:
            continue  # its Node's (or a clash, reported above)
        if found.at is None or not found.node or now - found.at >= grace:
            out.free.append((subnet, found.revision))
    return out
