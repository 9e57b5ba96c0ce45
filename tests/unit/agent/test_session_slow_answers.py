"""A busy control plane's late answers do not end an agent's session; a broken one's do."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

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
    task = asyncio.create_task(_session()._heartbeat_calls(stub, 1))  # type: ignore[arg-type]
    await asyncio.wait_for(stub.done.wait(), 5)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stub.calls == 4


async def test_a_refused_heartbeat_ends_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    stub = _Stub([grpc.StatusCode.UNAVAILABLE], calls=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(_session()._heartbeat_calls(stub, 1), 5)  # type: ignore[arg-type]


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


class _HeartbeatCall:
    """A HeartbeatStream call: answers each request after `delays[i]` seconds (None: never);
    or fails with `error` at once, as a control plane without the method does."""

    def __init__(self, delays: list[float | None], error: grpc.StatusCode | None = None) -> None:
        self.delays = list(delays)
        self.error = error
        self.requests: list[node_service_pb2.HeartbeatRequest] = []
        self.answers: asyncio.Queue[node_service_pb2.HeartbeatResponse] = asyncio.Queue()
        self.cancelled = False

    async def write(self, request: node_service_pb2.HeartbeatRequest) -> None:
        if self.error is not None:
            raise _Error(self.error)
        self.requests.append(request)
        delay = self.delays.pop(0) if self.delays else 0.0
        if delay is not None:
            asyncio.get_running_loop().call_later(
                delay, self.answers.put_nowait, node_service_pb2.HeartbeatResponse(heartbeat_period_seconds=1)
            )

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> node_service_pb2.HeartbeatResponse:
        if self.error is not None:
            raise _Error(self.error)
        return await self.answers.get()

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class _StreamStub(_Stub):
    def __init__(self, call: _HeartbeatCall, calls: int) -> None:
        super().__init__([], calls)
        self.call = call

    def HeartbeatStream(self) -> _HeartbeatCall:
        return self.call


async def _run_until(task: asyncio.Task[None], check: Any) -> None:
    async with asyncio.timeout(5):
        while not check():
            await _real_sleep(0.001)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_heartbeats_go_on_one_stream_each_sent_once_the_last_is_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def short(delay: float, *args: object) -> None:
        slept.append(delay)
        await _real_sleep(0.001)

    monkeypatch.setattr(asyncio, "sleep", short)
    call = _HeartbeatCall([0.0, 0.05, 0.0])
    stub = _StreamStub(call, calls=100)
    task = asyncio.create_task(_session()._heartbeats(stub, 4))  # type: ignore[arg-type]
    await _run_until(task, lambda: len(call.requests) >= 3)
    assert stub.calls == 0, "no Heartbeat call beside the stream"
    assert slept[0] == 4 and slept[1:3] == [1, 1], "the period the control plane answers with is followed"
    assert call.cancelled


async def test_an_unanswered_heartbeat_is_logged_slow_and_not_followed_by_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    call = _HeartbeatCall([None])
    task = asyncio.create_task(_session()._heartbeat_stream(_StreamStub(call, 100), 0.01))  # type: ignore[arg-type]
    with capture_logs() as logs:
        await _run_until(task, lambda: sum(e["event"] == "heartbeat_slow" for e in logs) >= 2)
    assert task.done() and len(call.requests) == 1


async def test_a_control_plane_without_the_stream_gets_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    stub = _StreamStub(_HeartbeatCall([], error=grpc.StatusCode.UNIMPLEMENTED), calls=3)
    task = asyncio.create_task(_session()._heartbeats(stub, 1))  # type: ignore[arg-type]
    await asyncio.wait_for(stub.done.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert stub.calls == 3


async def test_a_heartbeat_stream_refused_otherwise_ends_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    stub = _StreamStub(_HeartbeatCall([], error=grpc.StatusCode.PERMISSION_DENIED), calls=3)
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(_session()._heartbeats(stub, 1), 5)  # type: ignore[arg-type]
    assert stub.calls == 0
