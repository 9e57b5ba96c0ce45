"""Programs the pod network between nodes (host-gw): routes, and Docker's forwarding and NAT rules.

Fed the pod network's table from the Services stream (`update_pod_network`),
it installs `ip route replace <subnet> via <node address> proto 97` for
every route of `pod_routes.plan`, removes the ones of nodes gone, and (with
the Docker runtime) keeps this node's accept rules at the top of Docker's
`DOCKER-USER` chain (`pod_routes.forward_rules`) and the rule that keeps
pod-to-pod traffic from Docker's masquerade at the top of the nat table's
`POSTROUTING` chain (`pod_routes.nat_rules`), each with the comment
`corral-podnet-<node>`, all once per burst of changes. Routes carry the
protocol number 97, so a restarted agent finds its own (`ip route show
proto 97`) and replaces or removes them; rules are found by their comment,
and put back at the top when another rule (Docker's, for a network made
since) got above them. All stay when the agent stops: pods keep running, and
keep reaching each other, across an agent restart; a node whose pod subnet
is gone from the table loses its rules with its routes.

How each peer's address is reached (`ip -j route get`: local, direct or via
a gateway) is asked once per address. A skipped node is logged once per
reason (`pod_route_skipped`). Without root or `ip`/`iptables`, one warning
(`pod_routes_unavailable` / `pod_forwarding_unavailable`) and the rest of
the agent goes on: pods on other hosts are then not reachable at their
addresses (Services still reach them through their nodes' proxies only when
those are on one host).
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Awaitable, Callable

import structlog

from agent.network.pod_routes import PeerRoute, Reach, RoutePlan, changes, forward_rules, nat_rules, plan
from protos.corral.v1 import node_service_pb2

log = structlog.get_logger(__name__)

ROUTE_PROTO = "97"
CHAIN = "DOCKER-USER"
# Where Docker masquerades its bridges' traffic (`iptables -t nat`).
NAT_CHAIN = "POSTROUTING"
# Every agent's rules carry a comment starting so (several agents on one host share the chains).
COMMENT_PREFIX = "corral-podnet-"
COALESCE_SECONDS = 0.05

Runner = Callable[[list[str]], Awaitable[tuple[int, str, str]]]


async def run_command(argv: list[str]) -> tuple[int, str, str]:
    """Run a command: its exit status, stdout and stderr (127 when it is not installed)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError as e:
        return 127, "", str(e)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


class CommandFailed(Exception):
    pass


class PodRouting:
    def __init__(
        self, node: str, *, forwarding: bool, runner: Runner = run_command, coalesce: float = COALESCE_SECONDS
    ) -> None:
        """`forwarding`: keep Docker's DOCKER-USER accept rules (the node runs Docker pods)."""
        self.node = node
        self.forwarding = forwarding
        self.runner = runner
        self.coalesce = coalesce
        self.comment = f"{COMMENT_PREFIX}{node}"[:250]
        self._table: node_service_pb2.PodNetwork | None = None
        self._wake = asyncio.Event()
        self._reach: dict[str, Reach] = {}
        self._installed: list[PeerRoute] | None = None
        # (table, chain) → the rules this run installed there.
        self._rules: dict[tuple[str, str], list[list[str]]] = {}
        self._skipped_logged: set[tuple[str, str]] = set()
        self._warned: set[str] = set()
        self.plan = RoutePlan()

    def update_pod_network(self, table: node_service_pb2.PodNetwork) -> None:
        self._table = table
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.coalesce)
            self._wake.clear()
            if self._table is not None:
                await self.sync(self._table)

    async def sync(self, table: node_service_pb2.PodNetwork) -> None:
        """Bring routes and rules to what `table` asks for (errors are logged, never raised)."""
        for entry in table.nodes:
            if entry.node != self.node and entry.address and entry.address not in self._reach:
                self._reach[entry.address] = await self._ask_reach(entry.address)
        self.plan = plan(table, self.node, lambda a: self._reach.get(a, Reach.NONE))
        for node, reason in sorted(self.plan.skipped.items()):
            if (node, reason) not in self._skipped_logged:
                self._skipped_logged.add((node, reason))
                log.info("pod_route_skipped", peer=node, reason=reason, message=_SKIPPED[reason])
        try:
            await self._sync_routes()
        except CommandFailed as e:
            self._warn("pod_routes_unavailable", str(e))
        if self.forwarding:
            try:
                await self._sync_rules("filter", CHAIN, forward_rules(self.plan, self.comment))
                await self._sync_rules("nat", NAT_CHAIN, nat_rules(self.plan, self.comment))
            except CommandFailed as e:
                self._warn("pod_forwarding_unavailable", str(e))

    def _warn(self, event: str, reason: str) -> None:
        if event not in self._warned:
            self._warned.add(event)
            log.warning(event, reason=reason[:300])

    async def _ask_reach(self, address: str) -> Reach:
        code, out, _ = await self.runner(["ip", "-j", "route", "get", address])
        if code != 0:
            return Reach.NONE
        try:
            found = json.loads(out)[0]
        except (ValueError, IndexError, KeyError, TypeError):
            return Reach.NONE
        if found.get("type") == "local":
            return Reach.LOCAL
        return Reach.GATEWAY if found.get("gateway") else Reach.DIRECT

    async def _check(self, argv: list[str]) -> str:
        code, out, err = await self.runner(argv)
        if code != 0:
            raise CommandFailed(f"{shlex.join(argv)}: {(err or out).strip() or f'exit status {code}'}")
        return out

    async def _sync_routes(self) -> None:
        if self._installed is None:
            self._installed = await self._found_routes()
        add, remove = changes(self._installed, self.plan.routes)
        for route in add:
            await self._check(["ip", "route", "replace", route.subnet, "via", route.via, "proto", ROUTE_PROTO])
            log.info("pod_route_added", peer=route.node, subnet=route.subnet, via=route.via)
        for subnet in remove:
            await self._check(["ip", "route", "del", subnet, "proto", ROUTE_PROTO])
            log.info("pod_route_removed", subnet=subnet)
        self._installed = list(self.plan.routes)

    async def _found_routes(self) -> list[PeerRoute]:
        """Routes of an earlier run of the agent (protocol 97)."""
        out = await self._check(["ip", "-j", "route", "show", "proto", ROUTE_PROTO])
        try:
            entries = json.loads(out or "[]")
        except ValueError:
            return []
        return [PeerRoute(str(e["dst"]), str(e.get("gateway", ""))) for e in entries if "dst" in e]

    async def _sync_rules(self, table: str, chain: str, wanted: list[list[str]]) -> None:
        """Keep `wanted` (and no other rule with this node's comment) at the top of `chain`."""
        listing = await self._check(["iptables", "-w", "-t", table, "-S", chain])
        rules = [shlex.split(line)[2:] for line in listing.splitlines() if line.startswith(f"-A {chain} ")]
        mine = [i for i, rule in enumerate(rules) if self.comment in rule]
        if self._rules.get((table, chain)) == wanted and _on_top(rules, mine, len(wanted)):
            return
        for i in mine:
            await self._check(["iptables", "-w", "-t", table, "-D", chain, *rules[i]])
        for rule in reversed(wanted):
            await self._check(["iptables", "-w", "-t", table, "-I", chain, "1", *rule])
        self._rules[(table, chain)] = wanted
        log.info("pod_forwarding_rules", table=table, chain=chain, rules=len(wanted), subnet=self.plan.own_subnet)


def _on_top(rules: list[list[str]], mine: list[int], count: int) -> bool:
    """Whether this node's `count` rules (at positions `mine`) come before any rule not an agent's."""
    if len(mine) != count:
        return False
    last = max(mine, default=-1)
    return all(any(part.startswith(COMMENT_PREFIX) for part in rules[i]) for i in range(last + 1))


_SKIPPED = {
    "local": "the node's address is on this host: its pods are on a bridge here",
    "not_direct": "the node is not on a directly connected network: host-gw cannot reach it (needs an overlay)",
    "no_address": "the node reported no InternalIP address",
}
