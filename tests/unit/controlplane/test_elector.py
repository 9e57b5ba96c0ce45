"""The elector's state machine over a MemoryStore whose lease clock the tests
drive: campaign, lead, lose the term (lease expiry, renewal failures, key
deleted, fenced writes, a failing leader), resign, and a standby taking over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import structlog

from controlplane.leader.elector import Elector, Term
from controlplane.store.base import Store
from controlplane.store.errors import FencedError, UnavailableError
from controlplane.store.memory import ManualClock, MemoryStore

pytestmark = pytest.mark.timeout(30)

KEY = "/corral/leader"
WAIT = 10.0


async def wait_for(check: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


class Leader:
    """A ``lead`` that records its terms and runs until cancelled (or told to fail)."""

    def __init__(self) -> None:
        self.terms: list[Term] = []
        self.cancelled: list[int] = []
        self.active: Term | None = None
        self.fail_with: BaseException | None = None
        self._fail = asyncio.Event()

    async def __call__(self, term: Term) -> None:
        self.terms.append(term)
        self.active = term
        try:
            await self._fail.wait()
            self._fail.clear()  # once: the next term runs until cancelled
            assert self.fail_with is not None
            raise self.fail_with
        except asyncio.CancelledError:
            self.cancelled.append(term.revision)
            raise
        finally:
            self.active = None

    def fail(self, error: BaseException) -> None:
        self.fail_with = error
        self._fail.set()


@contextlib.asynccontextmanager
async def running(elector: Elector, lead: Leader) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(elector.run(lead))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


@pytest.fixture
def store(clock: ManualClock) -> MemoryStore:
    return MemoryStore(clock=clock)


def elector(store: Store, holder: str = "a:1:10.0.0.1:7443", ttl: int = 2) -> Elector:
    return Elector(store, key=KEY, holder=holder, ttl=ttl, retry=0.05)


async def test_a_lone_replica_leads_with_its_keys_create_revision_as_the_term(store: MemoryStore) -> None:
    lead, e = Leader(), elector(store)
    with structlog.testing.capture_logs() as logs:
        async with running(e, lead):
            await wait_for(lambda: lead.active is not None, "leading")

            kv = await store.get(KEY)
            assert kv is not None and kv.value == b"a:1:10.0.0.1:7443"
            term = lead.terms[0]
            assert (term.key, term.revision) == (KEY, kv.create_revision)
            assert e.term == term and e.leading.is_set()
            assert term.fence.revision == kv.create_revision

    assert [entry["event"] for entry in logs if entry["event"].startswith("lead")] == [
        "leader_elected",
        "leader_resigned",
    ]
    assert await store.get(KEY) is None  # stopping resigns: the lease is revoked, the key goes


async def test_the_lease_expiring_in_the_store_ends_the_term_and_a_new_one_begins(
    store: MemoryStore, clock: ManualClock
) -> None:
    lead, e = Leader(), elector(store)
    with structlog.testing.capture_logs() as logs:
        async with running(e, lead):
            await wait_for(lambda: lead.active is not None, "first term")
            first = lead.terms[0]

            clock.advance(3)  # past the ttl: the next call to the store ends the lease
            store.expire_leases()

            await wait_for(lambda: len(lead.terms) == 2 and lead.active is not None, "second term")

    assert lead.cancelled[0] == first.revision
    assert lead.terms[1].revision > first.revision
    lost = [entry for entry in logs if entry["event"] == "leadership_lost"]
    assert lost[0]["term"] == first.revision
    assert lost[0]["reason"] in ("leader key deleted", "lease expired in etcd")


async def test_the_key_deleted_by_someone_else_ends_the_term(store: MemoryStore) -> None:
    lead, e = Leader(), elector(store)
    with structlog.testing.capture_logs() as logs:
        async with running(e, lead):
            await wait_for(lambda: lead.active is not None, "leading")
            first = lead.terms[0]

            await store.delete(KEY)

            await wait_for(lambda: len(lead.terms) == 2, "a new term")

    assert lead.cancelled[0] == first.revision
    assert any(entry["event"] == "leadership_lost" and entry["reason"] == "leader key deleted" for entry in logs)


async def test_renewals_failing_until_the_lease_may_be_gone_end_the_term(store: MemoryStore) -> None:
    unreachable = Flaky(store)
    lead, e = Leader(), elector(cast(Store, unreachable), ttl=1)
    with structlog.testing.capture_logs() as logs:
        async with running(e, lead):
            await wait_for(lambda: lead.active is not None, "leading")
            first = lead.terms[0]
            unreachable.refresh_fails = True

            await wait_for(lambda: lead.cancelled, "the term to end")

    assert lead.cancelled[0] == first.revision
    failures = [entry for entry in logs if entry["event"] == "lease_renew_failed"]
    assert len(failures) >= 2  # retried, then gave up
    lost = next(entry for entry in logs if entry["event"] == "leadership_lost")
    assert lost["reason"] == "lease expired before it could be renewed"


async def test_a_fenced_write_ends_the_term(store: MemoryStore) -> None:
    lead, e = Leader(), elector(store)
    with structlog.testing.capture_logs() as logs:
        async with running(e, lead):
            await wait_for(lambda: lead.active is not None, "leading")

            lead.fail(FencedError("/x", KEY, 5, 9))

            await wait_for(lambda: any(entry["event"] == "leadership_lost" for entry in logs), "stepping down")
            await wait_for(lambda: lead.active is not None and len(lead.terms) == 2, "leading again")

    lost = next(entry for entry in logs if entry["event"] == "leadership_lost")
    assert lost["reason"].startswith("fenced: ")


async def test_a_failing_leader_resigns_and_stands_back(store: MemoryStore) -> None:
    lead, e = Leader(), elector(store, ttl=5)
    with structlog.testing.capture_logs() as logs:
        async with running(e, lead):
            await wait_for(lambda: lead.active is not None, "leading")

            lead.fail(RuntimeError("bug"))

            await wait_for(lambda: any(entry["event"] == "leadership_lost" for entry in logs), "stepping down")
            assert await store.get(KEY) is None  # resigned: another replica may lead at once
            assert e.term is None and len(lead.terms) == 1  # and this one waits before trying again

    assert any(entry["event"] == "leader_failed" for entry in logs)


async def test_a_standby_takes_over_and_the_paused_leaders_writes_are_fenced(
    store: MemoryStore, clock: ManualClock
) -> None:
    paused = Flaky(store)
    first_lead, second_lead = Leader(), Leader()
    first = elector(cast(Store, paused), holder="a:1:10.0.0.1:7443")
    second = elector(store, holder="b:2:10.0.0.2:7443")
    with structlog.testing.capture_logs() as logs:
        async with running(first, first_lead):
            await wait_for(lambda: first_lead.active is not None, "the first to lead")
            async with running(second, second_lead):
                await wait_for(lambda: any(entry["event"] == "following" for entry in logs), "the standby")
                old_term = first_lead.terms[0]
                stale = store.fenced(old_term.fence)
                assert await stale.create("/obj/before", b"") > 0
                paused.refresh_blocks = True  # the leader stops renewing, as if stopped

                clock.advance(3)
                store.expire_leases()
                await wait_for(lambda: second_lead.active is not None, "the standby to lead")

                new_term = second_lead.terms[0]
                assert new_term.revision > old_term.revision
                with pytest.raises(FencedError):
                    await stale.create("/obj/after", b"")
                assert await store.fenced(new_term.fence).create("/obj/after", b"") > 0
                await wait_for(lambda: first_lead.cancelled, "the old leader to stop")

    following = next(entry for entry in logs if entry["event"] == "following")
    assert following["leader"] == "a:1:10.0.0.1:7443"


async def test_a_key_left_by_an_earlier_process_of_this_replica_is_taken_over_at_once(store: MemoryStore) -> None:
    await store.create(KEY, b"a:77:10.0.0.1:7443", lease=await store.grant_lease(3600))
    lead = Leader()

    with structlog.testing.capture_logs() as logs:
        async with running(elector(store, holder="a:1:10.0.0.1:7443", ttl=3600), lead):
            await wait_for(lambda: lead.active is not None, "leading")

    assert any(entry["event"] == "stale_leader_removed" for entry in logs)


async def test_a_key_held_by_another_replica_is_waited_for(store: MemoryStore) -> None:
    other = await store.grant_lease(5)
    await store.create(KEY, b"b:77:10.0.0.2:7443", lease=other)
    lead = Leader()

    with structlog.testing.capture_logs() as logs:
        async with running(elector(store, holder="a:1:10.0.0.1:7443"), lead):
            await wait_for(lambda: any(entry["event"] == "following" for entry in logs), "following")
            assert lead.active is None and await store.get(KEY) is not None

            await store.revoke_lease(other)

            await wait_for(lambda: lead.active is not None, "leading once the other resigned")

    following = next(entry for entry in logs if entry["event"] == "following")
    assert following["leader"] == "b:77:10.0.0.2:7443"


class Flaky:
    """A view of a store whose lease refreshes fail or hang on demand."""

    def __init__(self, inner: MemoryStore) -> None:
        self._inner = inner
        self.refresh_fails = False
        self.refresh_blocks = False

    async def refresh_lease(self, lease: int) -> int:
        if self.refresh_blocks:
            await asyncio.Event().wait()
        if self.refresh_fails:
            raise UnavailableError("etcd unreachable")
        return await self._inner.refresh_lease(lease)

    def __getattr__(self, name: str) -> Any:
        attribute: Callable[..., Awaitable[Any]] = getattr(self._inner, name)
        return attribute


async def test_a_cancel_racing_the_end_of_a_term_still_stops_the_elector(store: MemoryStore) -> None:
    """The term ends (key deleted) and the elector is cancelled in the same
    step: the task group reports the loss, and the cancel must not be lost."""
    lead = Leader()
    task = asyncio.create_task(elector(store).run(lead))
    await wait_for(lambda: lead.active is not None, "leading")

    await store.delete(KEY)  # wakes the key watch first
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=WAIT)

    assert task in done and task.cancelled()
    assert len(lead.terms) == 1


async def test_a_fence_hit_inside_the_leaders_own_task_group_ends_the_term_not_the_elector(
    store: MemoryStore,
) -> None:
    """As the controller manager fails: a worker raises FencedError while the
    manager's task group waits for its tasks. The elector campaigns again."""
    terms: list[Term] = []
    fence_hit = asyncio.Event()

    async def lead(term: Term) -> None:
        terms.append(term)

        async def worker() -> None:
            if len(terms) == 1:
                await fence_hit.wait()
                raise FencedError("/x", KEY, term.revision, term.revision + 1)
            await asyncio.Event().wait()

        async with asyncio.TaskGroup() as group:
            group.create_task(worker())

    task = asyncio.create_task(elector(store).run(lead))
    try:
        await wait_for(lambda: len(terms) == 1, "the first term")
        fence_hit.set()
        await wait_for(lambda: len(terms) == 2 or task.done(), "a second term")
        assert not task.done(), "the elector stopped instead of campaigning again"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
