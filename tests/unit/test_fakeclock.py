"""The fake loop clock: time jumps to the next timer, only once nothing is ready."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakeclock import on_fake_clock


@on_fake_clock
async def test_a_sleep_returns_at_once_after_what_was_due_ran() -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    loop.call_later(0.1, seen.append, "timer")
    loop.call_soon(seen.append, "ready")
    await asyncio.sleep(0.2)
    assert seen == ["ready", "timer"]
    assert loop.time() == 0.2


@on_fake_clock
async def test_a_timeout_fires_when_nothing_else_can_happen() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            await asyncio.Event().wait()
    assert loop.time() == 5


@on_fake_clock
async def test_a_cancelled_timer_does_not_move_the_clock() -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(1, lambda: None).cancel()
    await asyncio.sleep(3)
    assert loop.time() == 3


@on_fake_clock
async def test_fixtures_reach_a_test_on_the_fake_clock(tmp_path: Path) -> None:
    assert tmp_path.is_dir()
