"""The agent reports metrics at the period the control plane hands out when it is longer than its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent.node.session import Session, SessionConfig
from protos.corral.v1 import metrics_pb2, node_pb2, node_service_pb2


def _session(own: float = 10.0) -> Session:
    config = SessionConfig(server="127.0.0.1:1", node_name="n1", labels={}, metrics_period=own)
    return Session(config, object(), node_pb2.NodeStatus(), identity=object())  # type: ignore[arg-type]


class _HeartbeatStub:
    """Answers heartbeats with the given metrics periods, then waits forever."""

    def __init__(self, periods: list[int]) -> None:
        self.periods = list(periods)
        self.done = asyncio.Event()

    async def Heartbeat(self, request: node_service_pb2.HeartbeatRequest, timeout: float) -> Any:
        if not self.periods:
            self.done.set()
            await asyncio.Event().wait()
        period = self.periods.pop(0)
        return node_service_pb2.HeartbeatResponse(heartbeat_period_seconds=1, metrics_period_seconds=period)


@pytest.mark.parametrize(
    ("own", "handed_out", "period"),
    [
        pytest.param(10.0, [30], 30.0, id="stretched"),
        pytest.param(10.0, [30, 20], 20.0, id="follows-the-newest"),
        pytest.param(10.0, [0], 10.0, id="older-control-plane"),
        pytest.param(60.0, [30], 60.0, id="own-longer"),
    ],
)
async def test_heartbeats_carry_the_metrics_period(
    own: float, handed_out: list[int], period: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    session = _session(own)
    stub = _HeartbeatStub(handed_out)
    task = asyncio.create_task(session._heartbeat_calls(stub, 1))  # type: ignore[arg-type]
    await asyncio.wait_for(stub.done.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert session.metrics_period == period


class _Sampler:
    async def collect(self) -> metrics_pb2.MetricsReport:
        return metrics_pb2.MetricsReport(node_name="n1")


class _MetricsStub:
    def __init__(self, reports: int) -> None:
        self.reports = 0
        self.limit = reports
        self.done = asyncio.Event()

    async def ReportMetrics(self, report: metrics_pb2.MetricsReport, timeout: float) -> Any:
        self.reports += 1
        if self.reports >= self.limit:
            self.done.set()
            await asyncio.Event().wait()
        return metrics_pb2.ReportMetricsResponse()


async def test_reports_wait_the_period_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record(delay: float, *args: object) -> None:
        slept.append(delay)
        await _real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", record)
    session = _session(10.0)
    session._follow_metrics_period(30)
    stub = _MetricsStub(reports=3)
    task = asyncio.create_task(session._metrics(stub, _Sampler()))  # type: ignore[arg-type]
    await asyncio.wait_for(stub.done.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(slept) == 2
    assert all(29.0 < d <= 30.0 for d in slept)


_real_sleep = asyncio.sleep


async def _no_sleep(delay: float, *args: object) -> None:
    await _real_sleep(0)
