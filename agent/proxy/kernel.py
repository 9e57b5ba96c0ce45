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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

import structlog

from agent.proxy.nft_rules import Plan, plan, render
from agent.proxy.nftables import Nft, NftablesError
from agent.proxy.server import ProxyServer
from protos.corral.v1 import discovery_pb2

log = structlog.get_logger(__name__)


class KernelProxy:
    """See the module docstring; `addresses`: the proxy addresses (IPv6 ones are left out)."""

    def __init__(self, proxy: ProxyServer, table: str, addresses: Sequence[str], *, nft: Nft | None = None) -> None:
        self.proxy = proxy
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

    async def start(self) -> None:
        """Raise `NftablesUnavailable` unless nft may change the ruleset here."""
        await self.nft.check(self.table)

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self._routes = dict(routes)
        if self.fallback:
            self.proxy.update(self._routes)
            return
        self._plan = plan(self._routes)
        self._wanted = render(self._plan, self.table, self.addresses)
        self._log_conflicts(self._plan)
        self.proxy.update(self._plan.leftover)
        self._wake.set()

    def kernel_ports(self) -> dict[int, str]:
        """Listen port → Service, for the ports the kernel serves now."""
        return {} if self.fallback else self._plan.services()

    async def run(self) -> None:
        """Apply the table as routes change; delete it when cancelled."""
        try:
            while not self.fallback:
                await self._wake.wait()
                self._wake.clear()
                if self._wanted != self._applied:
                    await self._apply(self._wanted)
            await asyncio.Event().wait()  # the userspace proxy serves everything now
        finally:
            if self._applied is not None:
                with contextlib.suppress(NftablesError):
                    await self.nft.delete(self.table)
                log.info("proxy_kernel_stopped", table=self.table)

    async def _apply(self, text: str) -> None:
        try:
            await self.nft.replace(self.table, text)
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
            return
        first = self._applied is None
        self._applied = text
        (log.info if first else log.debug)(
            "proxy_kernel_applied",
            table=self.table,
            ports=len(self._plan.ports),
            rejected=sum(1 for p in self._plan.ports if not p.slots),
            userspace_services=len(self._plan.leftover),
        )

    def _log_conflicts(self, current: Plan) -> None:
        conflicts = set(current.conflicts)
        for port, loser, holder in sorted(conflicts - self._conflicts):
            log.warning(
                "proxy_port_conflict",
                port=port,
                service=loser,
                held_by=holder,
                message=f"port {port} is already used by Service {holder}; {loser} gets no proxy on it",
            )
        self._conflicts = conflicts
