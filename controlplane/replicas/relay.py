"""The metrics relay: every replica sees every node's metrics, with no etcd write per report.

Agents spread over the replicas and each pushes its metrics to the one it
talks to. Each replica

1. announces its dialable API address under ``<prefix>/replicas/<holder>``,
   on a lease it keeps alive (the key goes when the replica does);
2. watches that prefix: the others are its peers (`sharing.Peers`);
3. batches the reports its own agents sent (`sharing.Outbox`, newest per
   node, flushed at most every `flush_every` seconds) and sends each batch to
   every peer in one `MetricsRelay.ShareReports` call over mutual TLS, with a
   control-plane certificate it issued itself from the cluster CA (the only
   identity the auth policy lets call it);
4. records the batches it receives (`MetricsRelayService`) in its
   `MetricsStore`, as its own agents' reports (already filtered to each
   node's own pods by the sender).

Best-effort: a peer that fails or times out is logged once (and once again
when it answers) and that batch is dropped for it; the agents' path only adds
to the bounded outbox and never waits. A lone replica keeps nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from datetime import datetime

import grpc
import structlog

from controlplane.auth.peer import Context
from controlplane.clock import utcnow
from controlplane.leader.lease import LeaseClock
from controlplane.metrics.store import MetricsStore
from controlplane.replicas.sharing import DEFAULT_FLUSH_EVERY, Outbox, Peers, replicas_prefix, split
from controlplane.store.base import Store
from controlplane.store.errors import AlreadyExistsError, LeaseNotFoundError, StoreError
from corral.common.pki.credentials import Credentials, channel_options
from protos.corral.v1 import metrics_pb2, metrics_pb2_grpc

log = structlog.get_logger(__name__)

CALL_TIMEOUT = 5.0
RETRY = 1.0
LIST_PAGE = 500
WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def dialable_address(listen_host: str, port: int, tls_san: list[str]) -> str:
    """The address other replicas dial: the listen host, or for a wildcard listen (0.0.0.0, ::)
    the first ``--tls-san`` name, else this machine's fully qualified name."""
    host = listen_host
    if host in WILDCARDS:
        host = tls_san[0] if tls_san else socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


class MetricsRelayService(metrics_pb2_grpc.MetricsRelayServicer):
    """Receives the other replicas' batches (the auth policy admits control-plane certificates only)."""

    def __init__(self, metrics: MetricsStore, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock

    async def ShareReports(
        self, request: metrics_pb2.SharedReports, context: Context
    ) -> metrics_pb2.ShareReportsResponse:
        now = self.clock()
        for report in request.reports:
            self.metrics.record(report, now=now)
        return metrics_pb2.ShareReportsResponse()


class MetricsRelay:
    """Announces this replica, follows its peers and sends them its agents' reports."""

    def __init__(
        self,
        store: Store,
        *,
        key_prefix: str,
        holder: str,
        address: str,
        credentials: Credentials,
        lease_ttl: int,
        renew: Callable[[], Credentials] | None = None,
        now: Callable[[], datetime] = utcnow,
        flush_every: float = DEFAULT_FLUSH_EVERY,
        call_timeout: float = CALL_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.prefix = replicas_prefix(key_prefix)
        self.holder = holder
        self.address = address
        self.credentials = credentials
        # Issues a fresh certificate (the server's CA signs it) once this one reaches two thirds of
        # its life, as agents renew theirs: a replica up for a year keeps its peers.
        self.renew = renew
        self.now = now
        self._renew_at = credentials.renew_at()
        self.lease_ttl = max(1, lease_ttl)
        self.call_timeout = call_timeout
        self.clock = clock
        self.peers = Peers(self.prefix, holder)
        self.outbox = Outbox(flush_every=flush_every)
        self._pending = asyncio.Event()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._failing: set[str] = set()
        self._closing: set[asyncio.Task[None]] = set()
        # Batches a peer did not take (each logged only when that peer starts failing).
        self.failed_sends = 0

    def share(self, report: metrics_pb2.MetricsReport) -> None:
        """Queue one of this replica's agents' reports for the peers (never waits)."""
        if self.peers.addresses:
            self.outbox.add(report, sharing=True)
            self._pending.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._announce())
                group.create_task(self._follow())
                group.create_task(self._flush())
        finally:
            for channel in self._channels.values():
                await channel.close()
            self._channels.clear()

    # -- announcing ----------------------------------------------------------------

    async def _announce(self) -> None:
        key = self.prefix + self.holder
        while True:
            lease: int | None = None
            try:
                sent = self.clock()
                lease = await self.store.grant_lease(self.lease_ttl)
                lease_clock = LeaseClock.granted(self.lease_ttl, sent_at=sent)
                try:
                    await self.store.create(key, self.address.encode(), lease=lease)
                except AlreadyExistsError:
                    await self.store.delete(key)  # ours, from a lease that is going
                    await self.store.create(key, self.address.encode(), lease=lease)
                log.info("replica_announced", key=key, address=self.address)
                await self._keep_alive(lease, lease_clock)
            except (StoreError, OSError) as e:
                log.warning("replica_announce_failed", error=str(e)[:200])
            finally:
                if lease is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(self.store.revoke_lease(lease)), 2.0)
            await asyncio.sleep(RETRY)

    async def _keep_alive(self, lease: int, lease_clock: LeaseClock) -> None:
        while not lease_clock.expired(self.clock()):
            await asyncio.sleep(lease_clock.wait(self.clock()))
            sent = self.clock()
            try:
                ttl = await self.store.refresh_lease(lease)
                lease_clock = lease_clock.renewed(sent_at=sent, ttl=ttl)
            except LeaseNotFoundError:
                return
            except StoreError:
                lease_clock = lease_clock.failed(now=self.clock())

    # -- following the peers -------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                items: list[tuple[str, bytes]] = []
                start_after: str | None = None
                revision: int | None = None
                while True:
                    page = await self.store.list(
                        self.prefix, limit=LIST_PAGE, start_after=start_after, revision=revision
                    )
                    revision = page.revision
                    items += [(kv.key, kv.value) for kv in page.items]
                    if not page.more or not page.items:
                        break
                    start_after = page.items[-1].key
                self.peers.reset(items)
                self._peers_changed()
                async with contextlib.aclosing(self.store.watch(self.prefix, start_revision=revision + 1)) as events:
                    async for event in events:
                        self.peers.apply(event)
                        self._peers_changed()
            except StoreError as e:
                log.warning("metrics_peers_watch_failed", error=str(e)[:200])
            await asyncio.sleep(RETRY)

    def _peers_changed(self) -> None:
        targets = set(self.peers.targets())
        if targets != set(self._channels):
            log.info("metrics_peers", peers=sorted(targets))
        for address in set(self._channels) - targets:
            channel = self._channels.pop(address)
            self._failing.discard(address)
            closing = asyncio.get_running_loop().create_task(channel.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        if not targets:
            self.outbox.reports.clear()

    # -- sending -------------------------------------------------------------------

    async def _flush(self) -> None:
        while True:
            await self._pending.wait()
            await asyncio.sleep(self.outbox.due(self.clock()))
            self._pending.clear()
            batch = self.outbox.take(self.clock())
            targets = self.peers.targets()
            if batch and targets:
                requests = [metrics_pb2.SharedReports(sender=self.holder, reports=part) for part in split(batch)]
                await asyncio.gather(*(self._send(address, requests) for address in targets))

    def _renew_if_due(self) -> None:
        """New credentials when these are due; every channel is opened again with them."""
        if self.renew is None or self.now() < self._renew_at:
            return
        self.credentials = self.renew()
        self._renew_at = self.credentials.renew_at()
        for channel in self._channels.values():
            task = asyncio.create_task(channel.close(grace=self.call_timeout))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._channels.clear()
        log.info("metrics_relay_certificate_renewed", renew_at=self._renew_at.isoformat())

    async def _send(self, address: str, requests: list[metrics_pb2.SharedReports]) -> None:
        """Each part of a batch in turn to one peer; the rest of the batch is dropped at the first failure."""
        self._renew_if_due()
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.secure_channel(
                address, self.credentials.channel_credentials(), options=channel_options()
            )
            self._channels[address] = channel
        stub = metrics_pb2_grpc.MetricsRelayStub(channel)
        try:
            for request in requests:
                await stub.ShareReports(request, timeout=self.call_timeout)
        except grpc.aio.AioRpcError as e:
            self.failed_sends += 1
            if address not in self._failing:
                self._failing.add(address)
                log.warning(
                    "metrics_peer_unreachable",
                    peer=address,
                    error=f"{e.code().name}: {(e.details() or '')[:200]}",
                    dropped=sum(len(r.reports) for r in requests),
                )
            return
        if address in self._failing:
            self._failing.discard(address)
            log.info("metrics_peer_reachable", peer=address)
