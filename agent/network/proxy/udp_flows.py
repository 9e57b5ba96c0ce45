"""Which UDP conntrack entries a new kernel table leaves stale: a pure core.

Conntrack keeps a UDP flow's NAT for as long as the client keeps sending
(within its UDP timeout), so a table replace alone does not move a flow: a
client that keeps talking to a removed endpoint would never reach another.
As kube-proxy does, `stale_flows(old, new, addresses)` lists what to delete
when the kernel's plan goes from `old` (applied) to `new`, for UDP frontends
only (a TCP connection to a removed endpoint ends on its own):

- a backend in the old slots of a frontend and not in its new ones: the
  flows to that frontend DNATed to that backend (`Flow.backend`);
- a frontend that has slots now and had none (it was rejected, served by
  the userspace proxy, or new): every flow to it, which the kernel tracked
  while no DNAT applied;
- a frontend the kernel no longer serves (its Service gone, or moved to the
  userspace proxy): every flow to it.

Node frontends stand for each of the node `addresses`. The addresses are
whatever the routes say (node address and host port, or pod address and
container port): nothing here depends on their shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.network.proxy.frontends import NODE
from agent.network.proxy.nft_rules import KernelPort, Plan


@dataclass(frozen=True, order=True)
class Flow:
    """UDP flows to `address:port`; with `backend` (address, port), only those DNATed there."""

    address: str
    port: int
    backend: tuple[str, int] | None = None

    def describe(self) -> str:
        to = f" -> {self.backend[0]}:{self.backend[1]}" if self.backend else ""
        return f"{self.address}:{self.port}/udp{to}"


def _udp(plan: Plan) -> dict[tuple[str, int, str], KernelPort]:
    return {p.frontend.key: p for p in plan.ports if p.frontend.protocol == "udp"}


def stale_flows(old: Plan, new: Plan, addresses: Sequence[str]) -> list[Flow]:
    """The flows to delete once `new` replaces `old` (see the module docstring), sorted, without repeats."""
    before, after = _udp(old), _udp(new)
    flows: set[Flow] = set()
    for key in before.keys() | after.keys():
        was, now = before.get(key), after.get(key)
        port = now or was
        assert port is not None
        where = addresses if port.frontend.address == NODE else [port.frontend.address]
        if now is None or (now.slots and (was is None or not was.slots)):
            flows.update(Flow(a, port.port) for a in where)
            continue
        if was is None:
            continue
        gone = {(b.address, b.port) for b in was.slots} - {(b.address, b.port) for b in now.slots}
        flows.update(Flow(a, port.port, backend) for a in where for backend in gone)
    return sorted(flows)
