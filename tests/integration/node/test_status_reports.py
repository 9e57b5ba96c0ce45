"""The agent's status reports on one StreamStatus stream (`agent.node.status_reports`), against fake
control planes on a real gRPC port with mutual TLS: batches written without waiting for answers,
answers' unknown pods forgotten, unanswered batches queued again when the stream breaks, the
ReportStatus fallback on a control plane without StreamStatus, and a stream the server ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import grpc
import pytest
from structlog.testing import capture_logs

from agent.node.status_reports import StatusReports, StatusStreamEnded
from agent.pods.outbox import StatusOutbox
from protos.corral.v1 import metrics_pb2, node_service_pb2, node_service_pb2_grpc, pod_pb2
from tests.pki import TestCluster, aio_channel

pytestmark = pytest.mark.timeout(30)

NODE = "node-1"
WAIT = 10.0
BATCH_DELAY = 0.01

Request = node_service_pb2.ReportStatusRequest
Response = node_service_pb2.ReportStatusResponse

# The request generator of a stream that has ended keeps taking reports from the outbox
# (see test_a_broken_stream_takes_no_more_reports).


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.namespace = "default"
    p.metadata.name = name
    p.metadata.uid = f"uid-{name}"
    return p


def phase(value: str) -> pod_pb2.PodStatus:
    return pod_pb2.PodStatus(phase=value, host_ip="127.0.0.1")


def phases(reports: Iterable[node_service_pb2.PodStatusReport]) -> dict[str, str]:
    return {r.name: r.status.phase for r in reports}


class RecordingOutbox(StatusOutbox):
    """A StatusOutbox that records `forget`."""

    def __init__(self) -> None:
        super().__init__()
        self.forgotten: list[list[str]] = []

    def forget(self, uids: Iterable[str]) -> None:
        uids = list(uids)
        self.forgotten.append(uids)
        super().forget(uids)


class FakeControlPlane(node_service_pb2_grpc.NodeServiceServicer):
    """Records ReportStatus calls; answers StreamStatus UNIMPLEMENTED (as the generated base
    does) unless a subclass serves it."""

    def __init__(self) -> None:
        self.received: list[Request] = []  # on StreamStatus streams
        self.calls: list[Request] = []  # ReportStatus

    async def ReportStatus(self, request: Request, context: Any) -> Response:
        assert request.node_name == NODE
        self.calls.append(request)
        return Response()

    async def StreamStatus(self, request_iterator: AsyncIterator[Request], context: Any) -> AsyncIterator[Response]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        yield Response()  # never: makes this a response stream

    # Not used here.

    async def Register(self, request: Any, context: Any) -> node_service_pb2.RegisterResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        return node_service_pb2.RegisterResponse()

    async def Heartbeat(self, request: Any, context: Any) -> node_service_pb2.HeartbeatResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        return node_service_pb2.HeartbeatResponse()

    async def HeartbeatStream(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        yield node_service_pb2.HeartbeatResponse()

    async def ReportMetrics(self, request: Any, context: Any) -> metrics_pb2.ReportMetricsResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        return metrics_pb2.ReportMetricsResponse()

    async def WatchAssignments(self, request: Any, context: Any) -> AsyncIterator[node_service_pb2.AssignmentSet]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        yield node_service_pb2.AssignmentSet()

    async def WatchServices(self, request: Any, context: Any) -> AsyncIterator[node_service_pb2.ServiceRoutes]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        yield node_service_pb2.ServiceRoutes()

    async def Tunnel(self, request_iterator: Any, context: Any) -> AsyncIterator[node_service_pb2.ServerMessage]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")
        yield node_service_pb2.ServerMessage()


class AnsweringControlPlane(FakeControlPlane):
    """Reads each request as it comes; answers them in order, once `answering` is set,
    with the uids of `unknown` among each request's pods."""

    def __init__(self, *, unknown: Iterable[str] = ()) -> None:
        super().__init__()
        self.unknown = set(unknown)
        self.answering = asyncio.Event()

    async def StreamStatus(self, request_iterator: AsyncIterator[Request], context: Any) -> AsyncIterator[Response]:
        pending: asyncio.Queue[Request] = asyncio.Queue()

        async def read() -> None:
            async for request in request_iterator:
                assert request.node_name == NODE
                self.received.append(request)
                pending.put_nowait(request)

        reader = asyncio.create_task(read())
        try:
            while True:
                request = await pending.get()
                await self.answering.wait()
                yield Response(unknown_uids=[r.uid for r in request.pods if r.uid in self.unknown])
        finally:
            reader.cancel()


class BreakingControlPlane(FakeControlPlane):
    """Reads `batches` requests without answering any, then (once `abort` is set) fails the stream
    with UNAVAILABLE."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches = batches
        self.abort = asyncio.Event()

    async def StreamStatus(self, request_iterator: AsyncIterator[Request], context: Any) -> AsyncIterator[Response]:
        async for request in request_iterator:
            self.received.append(request)
            if len(self.received) == self.batches:
                break
        await self.abort.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the control plane is going away")
        yield Response()  # never: makes this a response stream


class EndingControlPlane(FakeControlPlane):
    """Answers the first request of each stream, then ends the stream (no error)."""

    def __init__(self) -> None:
        super().__init__()
        self.streams = 0

    async def StreamStatus(self, request_iterator: AsyncIterator[Request], context: Any) -> AsyncIterator[Response]:
        self.streams += 1
        async for request in request_iterator:
            self.received.append(request)
            yield Response()
            return


class _Handlers:
    """Stands in for a server to catch the NodeService's method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.handlers = dict(handlers)


@contextlib.asynccontextmanager
async def serving(
    fake: FakeControlPlane, *, without_stream_status: bool = False
) -> AsyncIterator[node_service_pb2_grpc.NodeServiceAsyncStub]:
    """`fake` on a TLS port (``without_stream_status``: as a control plane that predates the
    method, which it does not know at all); a stub on a channel with the node's certificate."""
    server = grpc.aio.server()
    if without_stream_status:
        caught = _Handlers()
        node_service_pb2_grpc.add_NodeServiceServicer_to_server(fake, cast(grpc.aio.Server, caught))
        del caught.handlers["StreamStatus"]
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("corral.v1.NodeService", caught.handlers),)
        )
    else:
        node_service_pb2_grpc.add_NodeServiceServicer_to_server(fake, server)
    pki = TestCluster()
    port = pki.add_port(server)
    await server.start()
    try:
        async with aio_channel(f"127.0.0.1:{port}", pki.node(NODE)) as channel:
            yield node_service_pb2_grpc.NodeServiceStub(channel)
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def reporting(
    reports: StatusReports, stub: node_service_pb2_grpc.NodeServiceAsyncStub
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(reports.run(stub))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, StatusStreamEnded):
            await task


async def eventually(check: Callable[[], bool], what: str, wait: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"gave up after {wait:g}s waiting for {what}")
        await asyncio.sleep(0.01)


async def received(fake: FakeControlPlane, count: int) -> None:
    await eventually(lambda: len(fake.received) >= count, f"{count} requests on the stream")


async def outcome(task: asyncio.Task[None]) -> None:
    """Wait (bounded) for a run to end; its error raised."""
    async with asyncio.timeout(WAIT):
        await task


# -- one stream ----------------------------------------------------------------------


async def test_batches_are_written_without_waiting_for_the_answers() -> None:
    fake = AnsweringControlPlane()  # holds every answer until `answering`
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    async with serving(fake) as stub, reporting(reports, stub) as task:
        for count, name in enumerate(["a", "b", "c"], start=1):
            outbox.put(pod(name), phase("Running"))
            await received(fake, count)
        assert outbox.forgotten == []  # not one answer yet: the 2nd and 3rd did not wait for the 1st
        fake.answering.set()
        await eventually(lambda: len(outbox.forgotten) == 3, "the three answers")
        assert not task.done()

    assert [phases(r.pods) for r in fake.received] == [{"a": "Running"}, {"b": "Running"}, {"c": "Running"}]
    assert outbox.forgotten == [[], [], []]
    assert outbox.take() == []  # all answered: nothing queued again when the run stopped


async def test_answers_unknown_uids_make_the_outbox_forget_those_pods() -> None:
    fake = AnsweringControlPlane(unknown=["uid-gone"])
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    async with serving(fake) as stub, reporting(reports, stub):
        outbox.put(pod("mine"), phase("Running"))
        await received(fake, 1)
        outbox.put(pod("gone"), phase("Running"))
        outbox.put(pod("other"), phase("Pending"))
        await received(fake, 2)
        fake.answering.set()
        await eventually(lambda: len(outbox.forgotten) == 2, "both answers")

    # Each answer goes with its own batch: the second one's unknown pod is forgotten.
    assert outbox.forgotten == [[], ["uid-gone"]]
    outbox.resend_all()  # as after a reconnect: the forgotten pod is not reported again
    assert phases(outbox.take()) == {"mine": "Running", "other": "Pending"}


async def test_a_broken_stream_queues_the_unanswered_batches_again() -> None:
    fake = BreakingControlPlane(batches=2)
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    async with serving(fake) as stub, reporting(reports, stub) as task:
        outbox.put(pod("a"), phase("Pending"))
        outbox.put(pod("b"), phase("Pending"))
        await received(fake, 1)
        outbox.put(pod("a"), phase("Running"))
        outbox.put(pod("c"), phase("Pending"))
        await received(fake, 2)
        # What is queued from now on stays queued (the batch delay outlasts the test) ...
        reports.batch_delay = 60
        outbox.put(pod("b"), phase("Running"))
        # ... while the stream breaks, its two batches unanswered.
        fake.abort.set()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await outcome(task)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        queued = outbox.take()

    assert [phases(r.pods) for r in fake.received] == [
        {"a": "Pending", "b": "Pending"},
        {"a": "Running", "c": "Pending"},
    ]
    # Each pod's newest status: a's from the 2nd batch (not the 1st's), b's queued one (not the
    # 1st batch's), c's from the 2nd batch.
    assert phases(queued) == {"a": "Running", "b": "Running", "c": "Pending"}
    assert len(queued) == 3
    assert outbox.forgotten == []


async def test_a_broken_stream_takes_no_more_reports() -> None:
    """After the run has raised, the unanswered batches wait in the outbox for the next stream
    (the session's next connection) — nothing of the broken stream takes them."""
    fake = BreakingControlPlane(batches=1)
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    async with serving(fake) as stub, reporting(reports, stub) as task:
        outbox.put(pod("a"), phase("Running"))
        await received(fake, 1)
        fake.abort.set()
        with pytest.raises(grpc.aio.AioRpcError):
            await outcome(task)
        outbox.put(pod("b"), phase("Running"))  # a status change while reconnecting
        await asyncio.sleep(30 * BATCH_DELAY)  # the session's reconnect backoff is longer still
        queued = outbox.take()

    assert phases(queued) == {"a": "Running", "b": "Running"}


async def test_a_stream_the_server_ends_raises_status_stream_ended() -> None:
    fake = EndingControlPlane()
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    async with serving(fake) as stub, reporting(reports, stub) as task:
        outbox.put(pod("a"), phase("Running"))
        with pytest.raises(StatusStreamEnded):
            await outcome(task)

    assert [phases(r.pods) for r in fake.received] == [{"a": "Running"}]
    assert outbox.forgotten == [[]]  # the one batch was answered ...
    assert outbox.take() == []  # ... so nothing is queued again


async def test_after_the_server_ends_a_stream_the_next_one_gets_the_resent_reports() -> None:
    """As the session does: the stream ends (the control plane going away), the session connects
    again, resends every pod's newest status and reports on a new stream."""
    fake = EndingControlPlane()
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    async with serving(fake) as stub:
        outbox.put(pod("a"), phase("Running"))
        async with reporting(reports, stub) as first:
            with pytest.raises(StatusStreamEnded):
                await outcome(first)
        outbox.resend_all()
        async with reporting(reports, stub) as second:
            await eventually(lambda: len(fake.received) == 2, "the resent report on the second stream", wait=2)
            with pytest.raises(StatusStreamEnded):
                await outcome(second)

    assert fake.streams == 2
    assert [phases(r.pods) for r in fake.received] == [{"a": "Running"}, {"a": "Running"}]


# -- a control plane without StreamStatus ---------------------------------------------


@pytest.mark.parametrize("without_stream_status", [False, True], ids=["unimplemented", "unknown-method"])
async def test_without_stream_status_reports_go_by_report_status(without_stream_status: bool) -> None:
    fake = FakeControlPlane()
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    with capture_logs() as logs:
        async with serving(fake, without_stream_status=without_stream_status) as stub, reporting(reports, stub) as task:
            await eventually(lambda: any(e["event"] == "status_stream_unsupported" for e in logs), "the warning")
            outbox.put(pod("a"), phase("Running"))
            # (b after a has been taken: that every batch after the fallback arrives is the next test)
            await asyncio.sleep(30 * BATCH_DELAY)
            outbox.put(pod("b"), phase("Running"))
            await eventually(lambda: any("b" in phases(c.pods) for c in fake.calls), "b by ReportStatus")
            assert not task.done()

    assert fake.received == []
    warnings = [e for e in logs if e["event"] == "status_stream_unsupported"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"


@pytest.mark.parametrize("without_stream_status", [False, True], ids=["unimplemented", "unknown-method"])
async def test_without_stream_status_every_batch_goes_by_report_status(without_stream_status: bool) -> None:
    """Including the first: on a session's start, the resend of every pod's status."""
    fake = FakeControlPlane()
    outbox = RecordingOutbox()
    reports = StatusReports(outbox, NODE, batch_delay=BATCH_DELAY)
    outbox.put(pod("a"), phase("Running"))
    outbox.put(pod("b"), phase("Pending"))
    async with serving(fake, without_stream_status=without_stream_status) as stub, reporting(reports, stub):
        await eventually(lambda: bool(fake.calls), "a ReportStatus call", wait=2)
        outbox.put(pod("b"), phase("Running"))
        await eventually(lambda: len(fake.calls) == 2, "a second ReportStatus call", wait=2)

    assert [phases(c.pods) for c in fake.calls] == [{"a": "Running", "b": "Pending"}, {"b": "Running"}]
