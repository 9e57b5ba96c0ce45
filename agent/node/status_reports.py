"""Pod status reports to the control plane.

Workers queue each pod's newest status in the `StatusOutbox`; this sends what is
queued in batches (after ``batch_delay``, so a burst of changes goes in one
message). It uses one `StreamStatus` stream per session: each batch is
written without waiting for the answer to the one before (on a busy control
plane a call per batch waits for a round trip, and a node starting ten pods
would report the tenth a second late), and the server answers the batches in
the order they were written. Batches not yet answered when the stream breaks
are queued again (a newer status of the same pod wins). A control plane
older than `StreamStatus` gets one `ReportStatus` call per batch.
"""

from __future__ import annotations

import asyncio
from collections import deque

import grpc
import structlog

from agent.pods.outbox import StatusOutbox
from protos.corral.v1 import node_service_pb2, node_service_pb2_grpc

__all__ = ["StatusReports", "StatusStreamEnded"]

log = structlog.get_logger(__name__)

Batch = list[node_service_pb2.PodStatusReport]


class StatusStreamEnded(Exception):
    """The server ended the status stream without an error (it is going away)."""


class StatusReports:
    def __init__(self, outbox: StatusOutbox, node_name: str, *, batch_delay: float) -> None:
        self.outbox = outbox
        self.node_name = node_name
        self.batch_delay = batch_delay

    async def run(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub) -> None:
        """Report until cancelled or the connection fails (the error is raised)."""
        try:
            await self._stream(stub)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            log.warning("status_stream_unsupported", reason="the control plane is older: a call per report")
        await self._calls(stub)

    async def _next_batch(self) -> tuple[Batch, node_service_pb2.ReportStatusRequest]:
        """The pod reports queued, and the request that carries them (with the volume root and
        any volume deletion outcomes)."""
        while True:
            await self.outbox.ready.wait()
            await asyncio.sleep(self.batch_delay)
            reports = self.outbox.take()
            due, results = self.outbox.take_volume_results()
            if reports or due:
                request = node_service_pb2.ReportStatusRequest(
                    node_name=self.node_name,
                    pods=reports,
                    volume_root=self.outbox.volume_root,
                    volume_deletions=results,
                )
                return reports, request

    # -- one stream per session ---------------------------------------------------------

    async def _stream(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub) -> None:
        unanswered: deque[Batch] = deque()
        call = stub.StreamStatus()

        async def write() -> None:
            # A task of ours, not a request iterator: grpc cancels an iterator's task only while
            # the call is going, and one left behind would take the next batches and lose them.
            while True:
                reports, request = await self._next_batch()
                unanswered.append(reports)
                await call.write(request)

        writer = asyncio.create_task(write(), name="status-stream-writer")
        writer.add_done_callback(lambda _: call.cancel())  # a writer that failed ends the stream too
        try:
            async for answer in call:
                unanswered.popleft()
                self.outbox.forget(answer.unknown_uids)
            raise StatusStreamEnded("the control plane ended the status stream")
        finally:
            writer.cancel()
            call.cancel()
            # Newest first: a pod's newer status, sent or still queued, is the one kept.
            for batch in reversed(unanswered):
                self.outbox.requeue(batch)
            await asyncio.wait({writer})  # a cancel of this task still ends the wait
            if not writer.cancelled():
                writer.exception()  # retrieved: the call's own error is what is raised

    # -- a call per batch (older control planes) -----------------------------------------

    async def _calls(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub) -> None:
        while True:
            reports, request = await self._next_batch()
            try:
                response = await stub.ReportStatus(request, timeout=15)
            except grpc.aio.AioRpcError:
                self.outbox.requeue(reports)
                raise
            self.outbox.forget(response.unknown_uids)
