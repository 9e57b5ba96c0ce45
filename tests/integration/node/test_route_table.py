"""The route table fed by the session's WatchServices stream, against a fake
control plane on a real gRPC port; and the table saved in the data dir."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from structlog.testing import capture_logs

from agent.network.routes import ServiceTable
from agent.node.session import Session, SessionConfig
from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from corral.common.backoff import ExponentialBackoff
from protos.corral.v1 import discovery_pb2, metrics_pb2, node_pb2, node_service_pb2, node_service_pb2_grpc
from tests.pki import TestCluster, node_identity

pytestmark = pytest.mark.timeout(30)

NODE = "node-1"
WAIT = 10.0


def route(name: str, port: int = 80) -> discovery_pb2.ServiceRoute:
    return discovery_pb2.ServiceRoute(
        namespace="default", name=name, ports=[discovery_pb2.RoutePort(name="http", protocol="TCP", port=port)]
    )


class FakeControlPlane(node_service_pb2_grpc.NodeServiceServicer):
    """Registers and heartbeats anyone; each WatchServices stream plays the next script from `streams`."""

    def __init__(self, *, services: bool = True) -> None:
        self.services = services
        self.streams: asyncio.Queue[list[node_service_pb2.ServiceRoutes | asyncio.Event]] = asyncio.Queue()
        self.registrations = 0
        self.heartbeats = 0

    async def Register(self, request: Any, context: Any) -> node_service_pb2.RegisterResponse:
        self.registrations += 1
        return node_service_pb2.RegisterResponse(node_uid="uid-1", heartbeat_period_seconds=1)

    async def Heartbeat(self, request: Any, context: Any) -> node_service_pb2.HeartbeatResponse:
        self.heartbeats += 1
        return node_service_pb2.HeartbeatResponse(heartbeat_period_seconds=1)

    async def HeartbeatStream(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for _ in request_iterator:
            self.heartbeats += 1
            yield node_service_pb2.HeartbeatResponse(heartbeat_period_seconds=1)

    async def WatchAssignments(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield node_service_pb2.AssignmentSet()

    async def ReportStatus(self, request: Any, context: Any) -> node_service_pb2.ReportStatusResponse:
        return node_service_pb2.ReportStatusResponse()

    async def StreamStatus(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        # An older control plane: the agent falls back to ReportStatus.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        yield node_service_pb2.ReportStatusResponse()

    async def Tunnel(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield node_service_pb2.ServerMessage()

    async def ReportMetrics(self, request: Any, context: Any) -> metrics_pb2.ReportMetricsResponse:
        return metrics_pb2.ReportMetricsResponse()

    async def WatchServices(
        self,
        request: Any,
        context: Any,
    ) -> AsyncIterator[node_service_pb2.ServiceRoutes]:
        if not self.services:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        script = await self.streams.get()
        for step in script:
            if isinstance(step, asyncio.Event):
                await step.wait()
            else:
                yield step


class Recorder:
    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self.seen.append(sorted(routes))


async def eventually(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"gave up after {WAIT:g}s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def session_with(fake: FakeControlPlane, table: ServiceTable, tmp_path: Path) -> AsyncIterator[Session]:
    server = grpc.aio.server()
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(fake, server)
    pki = TestCluster()
    port = pki.add_port(server, "127.0.0.1:0")
    await server.start()
    manager = PodManager({}, WorkerSettings(node_name=NODE, host_ip="127.0.0.1"), tmp_path)
    config = SessionConfig(
        server=f"127.0.0.1:{port}", node_name=NODE, labels={}, backoff=ExponentialBackoff(initial=0.01, cap=0.05)
    )
    session = Session(
        config, manager, node_pb2.NodeStatus(), services=table, identity=node_identity(pki.node(NODE), tmp_path)
    )
    task = asyncio.create_task(session.run())
    try:
        yield session
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop(None)


async def test_snapshot_deltas_and_a_reconnect_snapshot(tmp_path: Path) -> None:
    recorder = Recorder()
    table = ServiceTable([recorder])
    fake = FakeControlPlane()
    second_snapshot = asyncio.Event()
    fake.streams.put_nowait(
        [
            node_service_pb2.ServiceRoutes(full=True, upserts=[route("web"), route("db")]),
            node_service_pb2.ServiceRoutes(upserts=[route("api")], removed=["default/db"]),
        ]
    )  # ... and the stream ends: the session reconnects
    fake.streams.put_nowait([second_snapshot, node_service_pb2.ServiceRoutes(full=True, upserts=[route("web", 81)])])
    async with session_with(fake, table, tmp_path):
        with capture_logs() as logs:
            await eventually(lambda: fake.registrations == 2, "the reconnect")
            # Disconnected and back, but no snapshot yet: the last table still stands.
            assert sorted(table.routes) == ["default/api", "default/web"]
            second_snapshot.set()
            await eventually(lambda: list(table.routes) == ["default/web"], "the new snapshot applied")

    assert table.routes["default/web"].ports[0].port == 81
    assert recorder.seen == [["default/db", "default/web"], ["default/api", "default/web"], ["default/web"]]
    assert any(e["event"] == "session_lost" and "services stream ended" in e["error"] for e in logs)


async def test_a_control_plane_without_services_keeps_the_session(tmp_path: Path) -> None:
    table = ServiceTable()
    fake = FakeControlPlane(services=False)
    with capture_logs() as logs:
        async with session_with(fake, table, tmp_path):
            await eventually(lambda: any(e["event"] == "services_unsupported" for e in logs), "the warning")
            heartbeats = fake.heartbeats
            await eventually(lambda: fake.heartbeats > heartbeats, "a heartbeat after it")

    assert fake.registrations == 1
    assert not [e for e in logs if e["event"] == "session_lost"]


async def test_the_table_is_saved_and_resumed(tmp_path: Path) -> None:
    state = tmp_path / "services.pb"
    table = ServiceTable(state_file=state, save_interval=0.01)
    task = asyncio.create_task(table.run())
    try:
        table.apply(node_service_pb2.ServiceRoutes(full=True, upserts=[route("web"), route("db")]))
        await eventually(state.exists, "the table saved")
        table.apply(node_service_pb2.ServiceRoutes(removed=["default/db"]))
        await eventually(lambda: _saved(state) == ["default/web"], "the change saved")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    recorder = Recorder()
    resumed = ServiceTable([recorder], state_file=state)
    resumed.resume()

    assert list(resumed.routes) == ["default/web"]
    assert recorder.seen == [["default/web"]]


async def test_an_unreadable_saved_table_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "services.pb"
    state.write_bytes(b"\xff\xff not a protobuf")
    table = ServiceTable(state_file=state)
    with capture_logs() as logs:
        table.resume()

    assert dict(table.routes) == {}
    assert [e["event"] for e in logs] == ["services_file_unreadable"]


def _saved(state: Path) -> list[str]:
    message = node_service_pb2.ServiceRoutes()
    message.ParseFromString(state.read_bytes())
    return sorted(f"{r.namespace}/{r.name}" for r in message.upserts)
