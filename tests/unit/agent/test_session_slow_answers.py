"""A busy control plane's late answers do not end an agent's session; a broken one's do."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from agent.node.session import Session, SessionConfig
from protos.corral.v1 import node_pb2, node_service_pb2


class _Error(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name)


class _Stub:
    """Answers heartbeats with the given errors first, then normally; stops after `calls`."""

    def __init__(self, errors: list[grpc.StatusCode], calls: int) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.limit = calls
        self.done = asyncio.Event()

    async def Heartbeat(self, request: node_service_pb2.HeartbeatRequest, timeout: float) -> Any:
        self.calls += 1
        if self.calls >= self.limit:
            self.done.set()
            await asyncio.Event().wait()
        if self.errors:
            raise _Error(self.errors.pop(0))
        return node_service_pb2.HeartbeatResponse(heartbeat_period_seconds=1)


def _session() -> Session:
    config = SessionConfig(server="127.0.0.1:1", node_name="n1", labels={})
    return Session(config, object(), node_pb2.NodeStatus(), identity=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(grpc.StatusCode.DEADLINE_EXCEEDED, id="late"),
        pytest.param(grpc.StatusCode.RESOURCE_EXHAUSTED, id="store-full"),
    ],
)
async def test_a_late_heartbeat_keeps_the_session(code: grpc.StatusCode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    stub = _Stub([code, code], calls=4)
    task = asyncio.create_task(_session()._heartbeats(stub, 1))  # type: ignore[arg-type]
    await asyncio.wait_for(stub.done.wait(), 5)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stub.calls == 4


async def test_a_refused_heartbeat_ends_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    stub = _Stub([grpc.StatusCode.UNAVAILABLE], calls=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(_session()._heartbeats(stub, 1), 5)  # type: ignore[arg-type]


_real_sleep = asyncio.sleep


async def _no_sleep(delay: float, *args: object) -> None:
    await _real_sleep(0)


class _BusyRegistrar:
    """Refuses Register with `code` `refusals` times, then answers."""

    def __init__(self, code: grpc.StatusCode, refusals: int) -> None:
        self.code = code
        self.refusals = refusals
        self.calls = 0

    async def Register(self, request: node_service_pb2.RegisterRequest, timeout: float) -> Any:
        self.calls += 1
        if self.calls <= self.refusals:
            raise _Error(self.code)
        return node_service_pb2.RegisterResponse(node_uid="u1", heartbeat_period_seconds=4)


async def test_a_control_plane_busy_registering_is_asked_again_on_the_same_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def recorded(delay: float, *args: object) -> None:
        waits.append(delay)
        await _real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recorded)
    stub = _BusyRegistrar(grpc.StatusCode.RESOURCE_EXHAUSTED, refusals=3)
    response = await _session()._register(stub)  # type: ignore[arg-type]
    assert response.node_uid == "u1" and stub.calls == 4
    assert len(waits) == 3 and all(0 <= w <= 10 for w in waits), waits


async def test_a_register_refused_otherwise_ends_the_session() -> None:
    stub = _BusyRegistrar(grpc.StatusCode.PERMISSION_DENIED, refusals=1)
    with pytest.raises(grpc.aio.AioRpcError):
        await _session()._register(stub)  # type: ignore[arg-type]
    assert stub.calls == 1
