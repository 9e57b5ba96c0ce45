"""The kernel data path: Service ports NATed by nftables, the rest left to the userspace proxy.

A route listener like the `ProxyServer` it wraps: `update(routes)` plans the
routes (`nft_rules.plan`), hands the userspace proxy only the leftover
routes (LeastConnections, IPv6 backends) and wakes `run()`, which applies the
rendered table with `nft` whenever its text changed — the latest routes
only, however many updates came meanwhile. Stopping (`run()` cancelled)
deletes the table.

`start()` checks at start that nft may change the ruleset and raises
`NftablesUnavailable` when not: the user asked for this mode. A failure
later (nft removed, rules refused) is logged once (`proxy_kernel_failed`)
and the node falls back to the userspace proxy for every Service, for good:
the table is deleted (when nft still can) and the proxy gets all routes.

`stats()` is `ProxyServer.stats()` for the whole node: the userspace proxy's
counters of the Services (ports) it serves, plus the kernel's. Each backend
has its own counting chain in the table (`nft_rules.backend_chains`), so the
kernel counts new connections per Service (over its ports) and per backend
pod: `connections_total` and `backends`, what the metrics reports and the
HorizontalPodAutoscaler's connections metric use. Active connections,
bytes and connect failures go unseen by nft and stay 0 for kernel-served
ports. Reading the counters runs nft, so `run()` refreshes a snapshot every
`refresh_seconds` (5 s) and `stats()` returns it merged with the userspace
proxy's, at once. A replaced table counts from 0 again: the counters are
read just before each replace and carried, so the totals never go back
(connections in the moment between that read and the replace go uncounted).
A Service's carried counts are forgotten when it leaves the routes, a pod's
when it stops being one of the Service's backends — as the userspace proxy
does.

ClientIP affinity lives in the table's sets (`nft_rules`), which a replace
starts anew: just before each replace the pinned clients are read (only when
the applied table has such sets) and written into the new table with the
time they have left, for the frontends and backends that remain. A client
pinned in the moment between that read and the replace is forgotten (its
next connection is balanced anew).

After each replace the UDP flows the change left stale (`udp_flows`: flows
DNATed to a removed endpoint, flows to a frontend that had no endpoint or was
not the kernel's) are deleted from conntrack with the `conntrack` tool, as
kube-proxy does. Where conntrack is missing or not permitted, one warning
(`proxy_conntrack_unavailable`) and the flows are left to time out (a UDP
client that keeps sending stays with a removed endpoint until it pauses for
conntrack's UDP timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import structlog

from agent.network.proxy.conntrack import Conntrack, ConntrackError, ConntrackUnavailable
from agent.network.proxy.nft_rules import BackendChain, Pinned, Plan, affinity_sets, backend_chains, plan, render
from agent.network.proxy.nftables import Nft, NftablesError
from agent.network.proxy.server import ProxyServer, ServiceStats, log_new_conflicts
from agent.network.proxy.udp_flows import Flow, stale_flows
from protos.corral.v1 import discovery_pb2

log = structlog.get_logger(__name__)

REFRESH_SECONDS = 5.0


class KernelProxy:
    """See the module docstring; `addresses`: the proxy addresses (IPv6 ones are left out)."""

    def __init__(
        self,
        proxy: ProxyServer,
        table: str,
        addresses: Sequence[str],
        *,
        nft: Nft | None = None,
        refresh_seconds: float = REFRESH_SECONDS,
        node: str = "",
        reserved: Mapping[int, str] | None = None,
        conntrack: Conntrack | None = None,
    ) -> None:
        self.proxy = proxy
        self.conntrack = conntrack or Conntrack()
        self._conntrack_warned = False
        # This node's name (externalTrafficPolicy: Local keeps its backends) and the node-address
        # ports no Service takes here (`reserved.py`).
        self.node = node
        self.reserved = dict(reserved or {})
        # Told of the clusterIPs the kernel serves (kept local: `cluster_ips.py`).
        self.on_cluster_ips: Callable[[set[str]], None] | None = None
        self.table = table
        self.addresses = [a for a in dict.fromkeys(addresses) if ":" not in a]  # a `table ip`: IPv4 only
        self.nft = nft or Nft()
        self.fallback = False
        self._routes: Mapping[str, discovery_pb2.ServiceRoute] = {}
        self._plan = Plan()
        self._wanted = render(self._plan, table, self.addresses)
        self._applied: str | None = None
        self._conflicts: set[tuple[int, str, str]] = set()
        self._wake = asyncio.Event()
        self._wake.set()
        self.refresh_seconds = refresh_seconds
        # The counters: the applied table's chains and their last read packets, the counts carried
        # over replaced tables (Service → total, Service → pod → connections), and the snapshot.
        self._lock = asyncio.Lock()
        self._applied_plan = Plan()
        self._chains: dict[str, BackendChain] = {}
        self._counts: dict[str, int] = {}
        self._carried: dict[str, int] = {}
        self._carried_pods: dict[str, dict[str, int]] = {}
        self._kernel_stats: dict[str, ServiceStats] = {}
        self._read_failed = False

    async def start(self) -> None:
        """Raise `NftablesUnavailable` unless nft may change the ruleset here."""
        await self.nft.check(self.table)

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self._routes = dict(routes)
        self._snapshot()
        if self.fallback:
            self.proxy.update(self._routes)
            return
        self._plan = plan(self._routes, node=self.node, reserved=self.reserved)
        if self.on_cluster_ips is not None:
            self.on_cluster_ips({p.frontend.address for p in self._plan.ports if p.frontend.address})
        self._wanted = render(self._plan, self.table, self.addresses)
        self._log_conflicts(self._plan)
        self.proxy.update(self._plan.leftover)
        self._wake.set()

    def kernel_ports(self) -> dict[int, str]:
        """Listen port → Service, for the ports the kernel serves now."""
        return {} if self.fallback else self._plan.services()

    def stats(self) -> dict[str, ServiceStats]:
        """Every Service's counters by "namespace/name", as `ProxyServer.stats()` (see the module docstring)."""
        merged = self.proxy.stats()
        for key, kernel in self._kernel_stats.items():
            mine = merged.get(key)
            if mine is None:
                merged[key] = replace(kernel, backends=dict(kernel.backends))
                continue
            mine.connections_total += kernel.connections_total
            pods = dict(mine.backends)
            for pod, count in kernel.backends.items():
                pods[pod] = pods.get(pod, 0) + count
            mine.backends = dict(sorted(pods.items()))
        return merged

    async def run(self) -> None:
        """Apply the table as routes change, refresh the counters; delete the table when cancelled."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.refresh_seconds
        try:
            while not self.fallback:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, due - loop.time())):
                        await self._wake.wait()
                self._wake.clear()
                if self._wanted != self._applied:
                    await self._apply()
                    due = loop.time() + self.refresh_seconds
                elif loop.time() >= due:
                    await self.refresh()
                    due = loop.time() + self.refresh_seconds
            await asyncio.Event().wait()  # the userspace proxy serves everything now
        finally:
            if self._applied is not None:
                with contextlib.suppress(NftablesError):
                    await self.nft.delete(self.table)
                log.info("proxy_kernel_stopped", table=self.table)

    async def refresh(self) -> None:
        """Read the kernel's counters into the snapshot `stats()` returns."""
        async with self._lock:
            await self._read()
            self._snapshot()

    async def _read(self) -> None:
        """The applied table's counters into `_counts` (lock held); a failure keeps the last ones."""
        if self._applied is None or not self._chains:
            return
        try:
            counts = await self.nft.counters(self.table)
        except NftablesError as e:
            if not self._read_failed:
                log.warning("proxy_kernel_counters_failed", table=self.table, error=type(e).__name__, reason=str(e))
            self._read_failed = True
            return
        self._read_failed = False
        # Never less than read before: counters of one table only grow.
        self._counts = {name: max(self._counts.get(name, 0), counts.get(name, 0)) for name in self._chains}

    def _carry(self) -> None:
        """Add the last read counts to the carried ones: the table is about to start again at 0."""
        for name, count in self._counts.items():
            chain = self._chains[name]
            self._carried[chain.service] = self._carried.get(chain.service, 0) + count
            if chain.pod:
                pods = self._carried_pods.setdefault(chain.service, {})
                pods[chain.pod] = pods.get(chain.pod, 0) + count
        self._counts = {}

    def _snapshot(self) -> None:
        """Rebuild the kernel's part of `stats()`; forget carried counts of what left the routes."""
        current = {
            key: {b.pod for port in route.ports for b in port.backends if b.pod} for key, route in self._routes.items()
        }
        self._carried = {key: n for key, n in self._carried.items() if key in current}
        self._carried_pods = {
            key: {pod: n for pod, n in pods.items() if pod in current[key]}
            for key, pods in self._carried_pods.items()
            if key in current
        }
        totals = dict(self._carried)
        per_pod = {key: dict(pods) for key, pods in self._carried_pods.items()}
        for port in self._applied_plan.ports:
            if port.service in current:
                totals.setdefault(port.service, 0)
                pods = per_pod.setdefault(port.service, {})
                for pod in port.pods:
                    if pod in current[port.service]:
                        pods.setdefault(pod, 0)
        for name, count in self._counts.items():
            chain = self._chains[name]
            if chain.service not in current:
                continue
            totals[chain.service] = totals.get(chain.service, 0) + count
            if chain.pod in current[chain.service]:
                pods = per_pod.setdefault(chain.service, {})
                pods[chain.pod] = pods.get(chain.pod, 0) + count
        self._kernel_stats = {
            key: ServiceStats(connections_total=total, backends=dict(sorted(per_pod.get(key, {}).items())))
            for key, total in sorted(totals.items())
        }

    async def _apply(self) -> None:
        async with self._lock:
            text, wanted = self._wanted, self._plan  # the latest, once the lock is ours
            if text == self._applied:
                return
            await self._read()
            pinned = await self._pinned(wanted)
            try:
                await self.nft.replace(self.table, render(wanted, self.table, self.addresses, pinned=pinned))
            except NftablesError as e:
                log.error(
                    "proxy_kernel_failed",
                    table=self.table,
                    error=type(e).__name__,
                    reason=str(e),
                    message="nftables rules could not be applied; the userspace proxy serves every Service now",
                )
                self.fallback = True
                self.proxy.update(self._routes)
                if self._applied is not None:
                    with contextlib.suppress(NftablesError):
                        await self.nft.delete(self.table)
                    self._applied = None
                self._carry()
                self._chains, self._applied_plan = {}, Plan()
                self._snapshot()
                return
            self._carry()
            stale = stale_flows(self._applied_plan, wanted, self.addresses)
            self._chains, self._applied_plan = backend_chains(wanted), wanted
            self._snapshot()
            await self._clear(stale)
            first = self._applied is None
            self._applied = text
        (log.info if first else log.debug)(
            "proxy_kernel_applied",
            table=self.table,
            ports=len(wanted.ports),
            rejected=sum(1 for p in wanted.ports if not p.slots),
            userspace_services=len(wanted.leftover),
        )

    async def _pinned(self, wanted: Plan) -> Pinned:
        """The clients pinned in the applied table's affinity sets, by (frontend chain, backend) (lock held)."""
        sets = affinity_sets(self._applied_plan)
        if self._applied is None or not sets:
            return {}
        try:
            listed = await self.nft.sets(self.table)
        except NftablesError as e:
            log.warning("proxy_kernel_affinity_lost", table=self.table, error=type(e).__name__, reason=str(e))
            return {}
        timeouts = {p.chain: p.frontend.affinity_seconds for p in wanted.ports}
        pinned: dict[tuple[str, str], dict[str, int]] = {}
        for name, (timeout, clients) in listed.items():
            where = sets.get(name)
            if where is not None and timeouts.get(where[0]) == timeout:  # a changed timeout starts afresh
                pinned[where] = clients
        return pinned

    async def _clear(self, flows: Sequence[Flow]) -> None:
        """Delete the conntrack entries of stale UDP flows; without conntrack, warn once and go on."""
        for flow in flows:
            try:
                deleted = await self.conntrack.delete(flow)
            except ConntrackUnavailable as e:
                if not self._conntrack_warned:
                    log.warning(
                        "proxy_conntrack_unavailable",
                        reason=str(e),
                        message="stale UDP flows are left to time out",
                    )
                self._conntrack_warned = True
                return
            except ConntrackError as e:
                log.warning("proxy_conntrack_failed", flow=flow.describe(), reason=str(e))
                continue
            if deleted:
                log.info("proxy_udp_flows_cleared", flow=flow.describe(), entries=deleted)

    def _log_conflicts(self, current: Plan) -> None:
        conflicts = set(current.conflicts)
        log_new_conflicts(conflicts, self._conflicts)
        self._conflicts = conflicts
