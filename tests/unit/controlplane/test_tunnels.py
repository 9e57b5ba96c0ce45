"""Log streams over an agent's tunnel: a client that stops reading is cut off
once more than the bound waits for it, and the agent is told to stop sending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import pytest

from controlplane.tunnels import LogsOverflowError, Tunnel, TunnelRegistry
from protos.corral.v1 import node_service_pb2

pytestmark = pytest.mark.timeout(30)


def data(request_id: str, chunk: bytes) -> node_service_pb2.AgentMessage:
    return node_service_pb2.AgentMessage(log_data=node_service_pb2.LogData(request_id=request_id, data=chunk))


@dataclass
class Opened:
    tunnel: Tunnel
    logs: AsyncGenerator[bytes, None]
    reading: asyncio.Task[list[bytes]]  # the first read, under way
    request_id: str


async def _opened() -> Opened:
    registry = TunnelRegistry()
    tunnel = registry.open("n1")
    tunnel.max_pending_bytes = 1000
    logs = registry.logs("n1", node_service_pb2.LogRequest(follow=True))
    assert isinstance(logs, AsyncGenerator)

    async def read_first() -> list[bytes]:
        return [await anext(logs)]

    reading = asyncio.ensure_future(read_first())
    asked = await asyncio.wait_for(tunnel.outgoing.get(), 5)
    return Opened(tunnel, logs, reading, asked.log_request.request_id)


async def test_a_log_client_that_stops_reading_is_cut_off_and_the_agent_told() -> None:
    opened = await _opened()
    tunnel, logs, reading, request_id = opened.tunnel, opened.logs, opened.reading, opened.request_id
    for _ in range(3):  # 1,800 bytes, none read: over the bound
        tunnel.deliver(data(request_id, b"x" * 600))
    cancel = tunnel.outgoing.get_nowait()
    assert cancel.cancel.request_id == request_id
    assert request_id not in tunnel.pending  # what follows is dropped
    tunnel.deliver(data(request_id, b"y" * 600))
    with pytest.raises(LogsOverflowError, match="fell behind by more than 1000 bytes"):
        await asyncio.wait_for(reading, 5)
    await logs.aclose()
    assert tunnel.outgoing.empty()  # cancelled once


async def test_a_log_client_that_keeps_up_gets_everything() -> None:
    opened = await _opened()
    tunnel, logs, reading, request_id = opened.tunnel, opened.logs, opened.reading, opened.request_id
    tunnel.deliver(data(request_id, b"x" * 600))
    assert await asyncio.wait_for(reading, 5) == [b"x" * 600]
    for i in range(5):  # 3,000 bytes in all, read as they come
        tunnel.deliver(data(request_id, bytes([i]) * 600))
        assert await asyncio.wait_for(anext(logs), 5) == bytes([i]) * 600
    await logs.aclose()
