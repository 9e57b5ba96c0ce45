"""The rendezvous lets the callers of one window go on together, and a cancelled caller leaves the
others waiting for the window as before."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.nodeapi.rendezvous import Rendezvous

pytestmark = pytest.mark.timeout(30)


async def test_callers_of_one_window_go_on_in_the_same_loop_turn() -> None:
    gate = Rendezvous(0.5)
    order: list[str] = []

    async def caller(name: str, turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        await gate.wait()
        order.append(name)

    tasks = [asyncio.ensure_future(caller(f"c{i}", i)) for i in range(5)]
    await asyncio.sleep(0.05)
    assert order == []  # the window is still open
    await asyncio.gather(*tasks)
    assert order == [f"c{i}" for i in range(5)]


async def test_a_cancelled_caller_leaves_the_others_alone() -> None:
    gate = Rendezvous(0.2)
    first = asyncio.ensure_future(gate.wait())
    second = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    first.cancel()
    await second
    assert first.cancelled() and second.done() and not second.cancelled()


async def test_no_window_no_wait() -> None:
    gate = Rendezvous(0)
    await asyncio.wait_for(gate.wait(), timeout=1)
