"""`Elector`: campaign for the leader key, hold it while leading, step down.

One term, as etcd sees it:

1. Campaign: wait while the key exists (watching it, re-checking at least
   every ttl), then grant a lease and create the key with it, only if absent,
   its value who holds it (this replica). Losing that race means waiting again.
2. Lead: the key's create_revision is the term (the `Fence`). ``lead(term)``
   runs beside two guards: the keep-alive (`LeaseClock` decides when to renew
   and when the lease must be presumed gone) and a watch of the key (deleted,
   or created again by someone else, means the term is over).
3. Step down at the first of: lease expired or unknown to etcd, key deleted or
   replaced, a write refused by the fence (`FencedError`), ``lead`` failing or
   returning. ``lead`` is cancelled at once; the lease is revoked (so a
   successor need not wait for it to expire); campaign again.

A replica names itself in the key (the holder) as ``host:pid:address``. A key left by an earlier
process of the same replica (same host and address, another pid: it was
killed and restarted) is deleted at once rather than waited out, so a lone
server restarted after ``kill -9`` leads again without waiting for the old
lease. Deleting it is safe whoever holds it: fencing stops its writes.

Events: ``leader_elected`` and ``leadership_lost`` (with ``term`` and the
reason), ``leader_resigned`` (shutdown), ``following`` (the leader's holder string when it changes),
``stale_leader_removed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from controlplane.apiserver import errors as api_errors
from controlplane.leader.lease import LeaseClock
from controlplane.store.base import EventType, Fence, Store
from controlplane.store.errors import (
    AlreadyExistsError,
    ConflictError,
    FencedError,
    LeaseNotFoundError,
    NotFoundError,
    StoreError,
    UnavailableError,
)

log = structlog.get_logger(__name__)

DEFAULT_TTL = 10
E = TypeVar("E", bound=BaseException)

# How long stepping down waits for the lease revoke before leaving it to expire.
RESIGN_TIMEOUT = 2.0


@dataclass(frozen=True)
class Term:
    """One replica's leadership: the key it created and when."""

    key: str
    # The key's create_revision: increases with every term, names this one.
    revision: int
    lease: int
    holder: str

    @property
    def fence(self) -> Fence:
        """The precondition every write of this term carries."""
        return Fence(self.key, self.revision)


Lead = Callable[[Term], Awaitable[None]]


def holder_for(host: str, pid: int, address: str) -> str:
    """The value a replica writes to the leader key: ``host:pid:address``."""
    return f"{host}:{pid}:{address}"


def earlier_incarnation(mine: str, theirs: str) -> bool:
    """True when ``theirs`` is this replica (same host and address) in another process."""
    my_parts, their_parts = mine.split(":", 2), theirs.split(":", 2)
    if len(my_parts) != 3 or len(their_parts) != 3:
        return False
    (my_host, my_pid, my_address), (host, pid, address) = my_parts, their_parts
    return (host, address) == (my_host, my_address) and pid != my_pid


class LeadershipLost(Exception):
    """The term is over; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Elector:
    """Campaigns for ``key`` and runs ``lead`` for as long as it holds it."""

    def __init__(
        self,
        store: Store,
        *,
        key: str,
        holder: str,
        ttl: int = DEFAULT_TTL,
        retry: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if ttl < 1:
            raise ValueError(f"lease ttl must be >= 1 second, got {ttl}")
        self.store = store
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self.retry = retry
        self._clock = clock
        # The current term while this replica leads, else None.
        self.term: Term | None = None
        # Set while leading (for callers and tests to wait on).
        self.leading = asyncio.Event()
        self._leader_seen: bytes | None = None

    def now(self) -> float:
        """The event loop's clock unless one was given."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def run(self, lead: Lead) -> None:
        """Campaign, lead, step down, forever (until cancelled)."""
        while True:
            term, lease = await self._campaign()
            stepped_down_cleanly = await self._hold(term, lease, lead)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # Cancelled while the term was ending for another reason: the
                # task group reported that reason (Python 3.11 lets errors win
                # over a cancel), and the cancel is still due.
                raise asyncio.CancelledError
            if not stepped_down_cleanly:
                await asyncio.sleep(self.ttl)  # ``lead`` failed: let another replica try first

    # -- campaigning ----------------------------------------------------------

    async def _campaign(self) -> tuple[Term, LeaseClock]:
        """Until this replica holds the key: its term and lease clock."""
        while True:
            try:
                await self._wait_vacant()
                sent_at = self.now()
                lease = await self.store.grant_lease(self.ttl)
                try:
                    revision = await self.store.create(self.key, self.holder.encode(), lease=lease)
                except AlreadyExistsError:
                    await self.store.revoke_lease(lease)
                    continue
                except BaseException:
                    # The create may have landed (a lost reply): revoking takes the key with it.
                    with contextlib.suppress(StoreError):
                        await self.store.revoke_lease(lease)
                    raise
                return Term(self.key, revision, lease, self.holder), LeaseClock.granted(self.ttl, sent_at=sent_at)
            except StoreError as e:
                log.warning("campaign_failed", key=self.key, error=str(e), retry_in=self.retry)
                await asyncio.sleep(self.retry)

    async def _wait_vacant(self) -> None:
        """Return once the key is absent, or at least every ttl to try anyway."""
        current = await self.store.get(self.key)
        if current is None:
            return
        holder = current.value.decode(errors="replace")
        if earlier_incarnation(self.holder, holder):
            log.info("stale_leader_removed", leader=holder, term=current.create_revision)
            with contextlib.suppress(NotFoundError, ConflictError):  # gone or changed meanwhile: look again
                await self.store.delete(self.key, expected_revision=current.mod_revision)
            return
        if current.value != self._leader_seen:
            self._leader_seen = current.value
            log.info("following", leader=holder, term=current.create_revision)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ttl):
                events = self.store.watch(self.key, start_revision=current.mod_revision + 1)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if event.key == self.key and event.type is EventType.DELETE:
                            return

    # -- leading --------------------------------------------------------------

    async def _hold(self, term: Term, lease: LeaseClock, lead: Lead) -> bool:
        """Lead until the term ends; False when ``lead`` itself failed."""
        self.term = term
        self.leading.set()
        self._leader_seen = None
        log.info("leader_elected", term=term.revision, holder=term.holder, lease=f"{term.lease:x}", ttl=self.ttl)
        reason, clean = "cancelled", True
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._keep_alive(term, lease), name="leader-keepalive")
                group.create_task(self._watch_key(term), name="leader-watch")
                group.create_task(self._lead(term, lead), name="leader-lead")
                # Wait here, not in the group's exit, until a task ends the
                # term: then the group cancels this task and takes the cancel
                # back exactly, which `run` relies on (see there).
                await asyncio.Event().wait()
        except* LeadershipLost as lost:
            reason = "; ".join(e.reason for e in _leaves(lost, LeadershipLost))
        except* (FencedError, api_errors.FencedError) as fenced:  # the store's, or as ObjectApi raises it
            reason = f"fenced: {next(iter(_leaves(fenced, Exception)))}"
        except* Exception as failed:
            reason, clean = f"leader failed: {next(iter(_leaves(failed, Exception)))!r}", False
            log.error("leader_failed", term=term.revision, exc_info=failed)
        finally:
            self.term = None
            self.leading.clear()
            await self._resign(term)
            if reason == "cancelled":  # shutting down: a successor need not wait for the lease
                log.info("leader_resigned", term=term.revision, holder=term.holder)
            else:
                log.warning("leadership_lost", term=term.revision, holder=term.holder, reason=reason)
        return clean

    @staticmethod
    async def _lead(term: Term, lead: Lead) -> None:
        """``lead``, in a task of its own: whatever its own task groups do to
        its task's cancel count stays there."""
        await lead(term)
        raise LeadershipLost("lead returned")

    async def _keep_alive(self, term: Term, lease: LeaseClock) -> None:
        """Renew every ttl/3; raise `LeadershipLost` once the lease may be gone."""
        while True:
            await asyncio.sleep(lease.wait(self.now()))
            sent_at = self.now()
            if lease.expired(sent_at):
                raise LeadershipLost("lease expired before it could be renewed")
            try:
                async with asyncio.timeout(lease.valid_until - sent_at):
                    ttl = await self.store.refresh_lease(term.lease)
            except LeaseNotFoundError as e:
                raise LeadershipLost("lease expired in etcd") from e
            except (UnavailableError, TimeoutError) as e:
                lease = lease.failed(now=self.now())
                log.warning(
                    "lease_renew_failed",
                    term=term.revision,
                    error=str(e) or type(e).__name__,
                    valid_for=round(max(0.0, lease.valid_until - self.now()), 2),
                )
                continue
            lease = lease.renewed(sent_at=sent_at, ttl=ttl)

    async def _watch_key(self, term: Term) -> None:
        """Raise `LeadershipLost` when the key is deleted or is no longer ours."""
        start = term.revision
        while True:
            try:
                events = self.store.watch(self.key, start_revision=start)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if event.key != self.key:
                            continue
                        if event.type is EventType.DELETE:
                            raise LeadershipLost("leader key deleted")
                        if event.create_revision != term.revision:
                            raise LeadershipLost(f"leader key created again at {event.create_revision}")
                        start = event.revision + 1
                raise LeadershipLost("store closed")
            except StoreError as e:  # lost or compacted watch: look at the key itself, then watch again
                log.info("leader_watch_restart", term=term.revision, error=str(e))
                await asyncio.sleep(self.retry)
                start = await self._still_ours(term, start)

    async def _still_ours(self, term: Term, start: int) -> int:
        """Where to watch from again, if the key is still this term's."""
        try:
            current = await self.store.get(self.key)
        except UnavailableError:
            return start  # the keep-alive decides when too much time has passed
        if current is None or current.create_revision != term.revision:
            raise LeadershipLost("leader key gone while not watched")
        return current.mod_revision + 1

    async def _resign(self, term: Term) -> None:
        """Revoke the lease (deleting the key if still ours); best effort, bounded."""
        try:
            async with asyncio.timeout(RESIGN_TIMEOUT):
                await self.store.revoke_lease(term.lease)
        except (StoreError, TimeoutError) as e:
            log.info("resign_failed", term=term.revision, error=str(e) or type(e).__name__)


def _leaves(group: BaseExceptionGroup[BaseException], kind: type[E]) -> list[E]:
    """The exceptions of ``kind`` in a (nested) exception group."""
    found: list[E] = []
    for item in group.exceptions:
        if isinstance(item, BaseExceptionGroup):
            found.extend(_leaves(item, kind))
        elif isinstance(item, kind):
            found.append(item)
    return found
