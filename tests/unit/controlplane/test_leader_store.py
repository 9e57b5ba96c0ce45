"""The store a leader writes through: fenced with its term; the test-only
switches that turn fencing off or hold writes in flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from controlplane.leader.testhooks import (
    DISABLE_FENCING_ENV,
    WRITE_DELAY_FILE_ENV,
    HeldWrites,
    TestHooks,
    leader_store,
)
from controlplane.store.base import Fence
from controlplane.store.errors import FencedError
from controlplane.store.memory import MemoryStore

pytestmark = pytest.mark.timeout(30)

KEY = "/corral/leader"


async def deposed(store: MemoryStore) -> Fence:
    """A fence for a term that has since ended (the key was created again)."""
    fence = Fence(KEY, await store.create(KEY, b"old"))
    await store.delete(KEY)
    await store.create(KEY, b"new")
    return fence


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, TestHooks(), id="none"),
        pytest.param({DISABLE_FENCING_ENV: "0", WRITE_DELAY_FILE_ENV: ""}, TestHooks(), id="off"),
        pytest.param({DISABLE_FENCING_ENV: "1"}, TestHooks(disable_fencing=True), id="fencing-off"),
        pytest.param({WRITE_DELAY_FILE_ENV: "/tmp/x"}, TestHooks(write_delay_file=Path("/tmp/x")), id="delay"),
    ],
)
def test_hooks_come_from_the_environment(environ: dict[str, str], expected: TestHooks) -> None:
    assert TestHooks.from_env(environ) == expected


def test_every_hook_that_is_on_is_announced_as_an_error() -> None:
    with structlog.testing.capture_logs() as logs:
        TestHooks().announce()
        assert logs == []
        TestHooks(disable_fencing=True, write_delay_file=Path("/tmp/x")).announce()

    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("TEST_ONLY_FENCING_DISABLED", "error"),
        ("TEST_ONLY_WRITE_DELAY", "error"),
    ]


async def test_the_leader_store_is_fenced_by_default() -> None:
    store = MemoryStore()
    fence = await deposed(store)

    with pytest.raises(FencedError):
        await leader_store(store, fence, TestHooks()).create("/obj", b"")

    assert await store.get("/obj") is None


async def test_with_fencing_disabled_a_deposed_leaders_write_lands() -> None:
    store = MemoryStore()
    fence = await deposed(store)

    await leader_store(store, fence, TestHooks(disable_fencing=True)).create("/obj", b"")

    assert await store.get("/obj") is not None


async def test_a_held_write_stays_in_flight_when_its_writer_is_cancelled(tmp_path: Path) -> None:
    store = MemoryStore()
    hold = tmp_path / "hold"
    hold.touch()
    held = HeldWrites(store, hold, poll=0.01)

    with structlog.testing.capture_logs() as logs:
        writer = asyncio.create_task(held.create("/obj", b"late"))
        while not any(entry["event"] == "test_write_held" for entry in logs):
            await asyncio.sleep(0.01)
        writer.cancel()  # the writer steps down: the request is already on its way
        await asyncio.gather(writer, return_exceptions=True)
        assert await store.get("/obj") is None

        hold.unlink()
        async with asyncio.timeout(5):
            while (await store.get("/obj")) is None:
                await asyncio.sleep(0.01)

    released = next(entry for entry in logs if entry["event"] == "test_write_released")
    assert (released["key"], released["outcome"]) == ("/obj", "written")


async def test_a_held_fenced_write_is_refused_when_released_after_the_term(tmp_path: Path) -> None:
    store = MemoryStore()
    fence = Fence(KEY, await store.create(KEY, b"old"))
    hold = tmp_path / "hold"
    hold.touch()
    leader = leader_store(store, fence, TestHooks(write_delay_file=hold))

    with structlog.testing.capture_logs() as logs:
        write = asyncio.create_task(leader.create("/obj", b"stale"))
        while not any(entry["event"] == "test_write_held" for entry in logs):
            await asyncio.sleep(0.01)
        await store.delete(KEY)  # another term begins while the write is held
        await store.create(KEY, b"new")
        hold.unlink()
        with pytest.raises(FencedError):
            await asyncio.wait_for(write, 5)

    assert await store.get("/obj") is None
    released = next(entry for entry in logs if entry["event"] == "test_write_released")
    assert released["outcome"] == "FencedError"


async def test_writes_pass_straight_through_without_the_file(tmp_path: Path) -> None:
    store = MemoryStore()
    held = HeldWrites(store, tmp_path / "absent")

    revision = await held.create("/a", b"1")
    revision = await held.update("/a", b"2", expected_revision=revision)
    revision = await held.update_many([("/a", b"3", revision)])
    await held.delete("/a", expected_revision=revision)

    assert await held.get("/a") is None
