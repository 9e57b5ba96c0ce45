"""The agent's connection to the control plane. The agent only dials out.

Every session is mutual TLS with the node's certificate (`agent.node.credentials`).
One session = register, then seven loops under one TaskGroup: heartbeats, the
assignment stream, status reports, the tunnel (logs), resource metrics (a
`MetricsReport` every `metrics_period` seconds) and the Service routes
(into the route table the node proxy and DNS server read; on a reconnect its
first message, a full snapshot, replaces the table, which stays as it was
while the control plane is away), and the certificate's renewal at two thirds
of its lifetime. When any of them fails the others are
cancelled and the agent reconnects with jittered exponential back-off capped
at 10 s. Pods keep running meanwhile (the manager and its workers do not
depend on the session), and every status is reported again once the session
is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog

from agent.network.routes import ServiceTable
from agent.node.credentials import CredentialsError, NodeCredentials
from agent.node.metrics import MetricsSampler
from agent.node.status_reports import StatusReports, StatusStreamEnded
from agent.pods.outbox import StatusOutbox
from agent.runtime.base import ContainerInfo, ContainerRuntime
from agent.runtime.errors import RuntimeFailure
from corral.common.backoff import ExponentialBackoff
from corral.common.pki.credentials import channel_options
from protos.corral.v1 import node_pb2, node_service_pb2, node_service_pb2_grpc

log = structlog.get_logger(__name__)

CHANNEL_OPTIONS = [
    # Detect a half-open connection in about 9 s, well inside the node grace period.
    ("grpc.keepalive_time_ms", 6_000),
    ("grpc.keepalive_timeout_ms", 3_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]
LOG_CHUNK = 32 * 1024
# Answers of a control plane that is up but busy: the call is given up, the session is kept.
# Times Register is asked again on one connection while the control plane is busy registering.
REGISTER_BUSY_TRIES = 30
SLOW_ANSWERS = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})


async def _unless_failed(watched: asyncio.Future[None], step: Awaitable[Any], within: float | None) -> bool:
    """Await `step` (True), or until `within` seconds pass (False); if `watched` ends first, its
    error is raised (a heartbeat stream's reader: the stream failed or ended)."""
    waiter = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({waiter, watched}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if watched in done:
        watched.result()
        raise SessionLost("heartbeat stream ended")
    return waiter in done


def _first_line(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details() or ''}"[:200]
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


async def register_once(
    server: str, identity: NodeCredentials, request: node_service_pb2.RegisterRequest
) -> node_service_pb2.RegisterResponse:
    """One registration on its own channel, at `server` (one of a comma-separated list, in turn by
    the caller): before the sessions start, for the pod subnet (`agent.node.pod_cidr`)."""
    credentials = await identity.current()
    async with grpc.aio.secure_channel(
        server, credentials.channel_credentials(), options=[*CHANNEL_OPTIONS, *channel_options()]
    ) as channel:
        response: node_service_pb2.RegisterResponse = await node_service_pb2_grpc.NodeServiceStub(channel).Register(
            request, timeout=15
        )
        return response


class AssignedPods(Protocol):
    """What a session needs of the pods side: `agent.pods.manager.PodManager`, or the
    benchmarks' hollow nodes (`bench/hollow.py`), which speak the same protocol."""

    outbox: StatusOutbox

    async def apply(self, assignment: node_service_pb2.AssignmentSet) -> bool: ...

    async def find_container(
        self, pod_uid: str, container: str, *, previous: bool
    ) -> tuple[ContainerRuntime, ContainerInfo] | None: ...


class SessionLost(Exception):
    """The control plane ended a stream or refused us; reconnect."""


@dataclass
class SessionConfig:
    # The control plane's host:port, or several replicas' comma-separated: the first session
    # dials the replica `first_server` picks for this node (so a fleet spreads evenly over the
    # replicas), and each later one the next in turn, so a dead replica is left at once.
    server: str
    node_name: str
    labels: dict[str, str]
    report_batch_delay: float = 0.05
    # Seconds between resource metrics reports, at least: the control plane may hand out a
    # longer period on a large cluster (`metrics_period_seconds`), which the agent then follows.
    metrics_period: float = 10.0
    backoff: ExponentialBackoff = field(default_factory=lambda: ExponentialBackoff(initial=0.5, cap=10.0))


def first_server(node_name: str, servers: int) -> int:
    """The index of the replica a node dials first: a stable hash of its name, so every agent
    keeps its replica across restarts and a fleet splits about evenly over the replicas."""
    if servers <= 1:
        return 0
    digest = hashlib.blake2b(node_name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % servers


class Session:
    def __init__(
        self,
        config: SessionConfig,
        manager: AssignedPods,
        status: node_pb2.NodeStatus,
        *,
        identity: NodeCredentials,
        services: ServiceTable | None = None,
        metrics: MetricsSampler | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.manager = manager
        self.status = status
        self.services = services
        self.metrics = metrics
        self.connected = asyncio.Event()
        self._rng = random.Random()
        self._was_established = False
        self._servers = [s.strip() for s in config.server.split(",") if s.strip()] or [config.server]
        # The pod subnet the node's pod network uses (sent at registration), and who hears the
        # control plane's answer (`agent.node.pod_cidr`).
        self.pod_cidr = ""
        self.on_pod_cidr: Callable[[str], None] | None = None
        self._sessions = first_server(config.node_name, len(self._servers))
        # Seconds between metrics reports now: the longer of ours and the control plane's.
        self.metrics_period = config.metrics_period

    async def run(self) -> None:
        attempt = 0
        while True:
            errors: list[str] = []
            try:
                await self._session()
            except* (grpc.aio.AioRpcError, SessionLost, StatusStreamEnded, OSError, CredentialsError) as group:
                errors = [_first_line(e) for e in group.exceptions]
            self.connected.clear()
            if self._was_established:
                attempt = 0
            self._was_established = False
            delay = self.config.backoff.next_delay(attempt, self._rng)
            attempt = min(attempt + 1, 20)
            log.warning("session_lost", server=self.config.server, error="; ".join(errors), retry_in=round(delay, 2))
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        server = self._servers[self._sessions % len(self._servers)]
        self._sessions += 1
        credentials = await self.identity.current()
        async with grpc.aio.secure_channel(
            server, credentials.channel_credentials(), options=[*CHANNEL_OPTIONS, *channel_options()]
        ) as channel:
            stub = node_service_pb2_grpc.NodeServiceStub(channel)
            response = await self._register(stub)
            period = max(1, response.heartbeat_period_seconds)
            self._follow_metrics_period(response.metrics_period_seconds)
            log.info("session_established", server=server, node=self.config.node_name, heartbeat=period)
            self.connected.set()
            self._was_established = True
            self.manager.outbox.resend_all()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._heartbeats(stub, period))
                group.create_task(self._assignments(stub))
                group.create_task(self._reports(stub))
                group.create_task(self._tunnel(stub))
                group.create_task(self.identity.renew_forever(channel))
                if self.services is not None:
                    group.create_task(self._services(stub, self.services))
                if self.metrics is not None:
                    group.create_task(self._metrics(stub, self.metrics))

    async def _register(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub) -> node_service_pb2.RegisterResponse:
        request = node_service_pb2.RegisterRequest(
            node_name=self.config.node_name, labels=self.config.labels, status=self.status, pod_cidr=self.pod_cidr
        )
        for attempt in range(REGISTER_BUSY_TRIES):
            try:
                response: node_service_pb2.RegisterResponse = await stub.Register(request, timeout=15)
                break
            except grpc.aio.AioRpcError as e:
                if e.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED or attempt == REGISTER_BUSY_TRIES - 1:
                    raise
                # A control plane busy registering other nodes: ask again on this connection
                # (no new TLS handshake) after a jittered back-off, as a fleet restarting at once
                # would otherwise come back in step.
                delay = self.config.backoff.next_delay(attempt, self._rng)
                log.info("register_busy", server=self.config.server, retry_in=round(delay, 2))
                await asyncio.sleep(delay)
        if self.on_pod_cidr is not None:
            self.on_pod_cidr(response.pod_cidr)
        return response

    async def _heartbeats(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub, period: float) -> None:
        """A heartbeat every period, on the session's heartbeat stream; a call each on a control
        plane without it. One the control plane is too busy to answer in time is not a lost
        session: the streams are up (keepalives watch the connection), and dropping them all to
        register again would add a busy control plane the work of a reconnecting node."""
        try:
            await self._heartbeat_stream(stub, period)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            log.warning("heartbeat_stream_unsupported", reason="the control plane is older: a call per heartbeat")
        await self._heartbeat_calls(stub, period)

    async def _heartbeat_stream(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub, period: float) -> None:
        """One request every period, the next only once the last is answered (a control plane
        behind on them gets no pile of renewals to write)."""
        request = node_service_pb2.HeartbeatRequest(node_name=self.config.node_name)
        call = stub.HeartbeatStream()
        answered = asyncio.Event()
        periods = [period]

        async def read() -> None:
            async for response in call:
                periods[0] = max(1, response.heartbeat_period_seconds)
                self._follow_metrics_period(response.metrics_period_seconds)
                answered.set()
            raise SessionLost("heartbeat stream ended")

        reader = asyncio.ensure_future(read())
        try:
            while True:
                await _unless_failed(reader, asyncio.sleep(periods[0]), None)
                answered.clear()
                await call.write(request)
                while not await _unless_failed(reader, answered.wait(), periods[0] * 2):
                    log.warning("heartbeat_slow", server=self.config.server, error="no answer within two periods")
        finally:
            reader.cancel()
            call.cancel()

    async def _heartbeat_calls(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                response = await stub.Heartbeat(
                    node_service_pb2.HeartbeatRequest(node_name=self.config.node_name), timeout=period * 2
                )
            except grpc.aio.AioRpcError as e:
                if e.code() not in SLOW_ANSWERS:
                    raise
                log.warning("heartbeat_slow", server=self.config.server, error=_first_line(e))
                continue
            period = max(1, response.heartbeat_period_seconds)
            self._follow_metrics_period(response.metrics_period_seconds)

    def _follow_metrics_period(self, handed_out: int) -> None:
        """Report metrics at the control plane's period when it is longer than ours (an older
        control plane hands out none: 0)."""
        period = max(self.config.metrics_period, float(handed_out))
        if period != self.metrics_period:
            log.info("metrics_period_changed", node=self.config.node_name, period=period)
        self.metrics_period = period

    async def _assignments(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub) -> None:
        request = node_service_pb2.AssignmentsRequest(node_name=self.config.node_name)
        async for assignment in stub.WatchAssignments(request):
            await self.manager.apply(assignment)
        raise SessionLost("assignment stream ended")

    async def _services(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub, table: ServiceTable) -> None:
        request = node_service_pb2.ServicesRequest(node_name=self.config.node_name)
        try:
            async for routes in stub.WatchServices(request):
                table.apply(routes)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            # An older control plane: run without Services rather than reconnect forever.
            log.warning("services_unsupported", server=self.config.server, error=_first_line(e))
            return
        raise SessionLost("services stream ended")

    async def _metrics(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub, sampler: MetricsSampler) -> None:
        """A metrics report at once (the sampler has kept the last samples across sessions), then every period."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            report = await sampler.collect()
            try:
                await stub.ReportMetrics(report, timeout=max(15.0, self.metrics_period))
            except grpc.aio.AioRpcError as e:
                if e.code() in SLOW_ANSWERS:
                    # Metrics are best-effort: the next report replaces this one.
                    log.warning("metrics_report_slow", server=self.config.server, error=_first_line(e))
                    await asyncio.sleep(max(0.0, started + self.metrics_period - loop.time()))
                    continue
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                # An older control plane: run without metrics rather than reconnect forever.
                log.warning("metrics_unsupported", server=self.config.server, error=_first_line(e))
                return
            # The period as it is now: a heartbeat's answer may have changed it meanwhile.
            await asyncio.sleep(max(0.0, started + self.metrics_period - loop.time()))

    async def _reports(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub) -> None:
        reports = StatusReports(self.manager.outbox, self.config.node_name, batch_delay=self.config.report_batch_delay)
        await reports.run(stub)

    async def _tunnel(self, stub: node_service_pb2_grpc.NodeServiceAsyncStub) -> None:
        outgoing: asyncio.Queue[node_service_pb2.AgentMessage] = asyncio.Queue()
        outgoing.put_nowait(
            node_service_pb2.AgentMessage(hello=node_service_pb2.TunnelHello(node_name=self.config.node_name))
        )

        async def messages() -> AsyncIterator[node_service_pb2.AgentMessage]:
            while True:
                yield await outgoing.get()

        streams: dict[str, asyncio.Task[None]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                async for message in stub.Tunnel(messages()):
                    kind = message.WhichOneof("message")
                    if kind == "log_request":
                        req = message.log_request
                        streams[req.request_id] = group.create_task(self._send_logs(req, outgoing))
                    elif kind == "cancel":
                        task = streams.pop(message.cancel.request_id, None)
                        if task is not None:
                            task.cancel()
                raise SessionLost("tunnel ended")
        finally:
            for task in streams.values():
                task.cancel()

    async def _send_logs(
        self, req: node_service_pb2.LogRequest, outgoing: asyncio.Queue[node_service_pb2.AgentMessage]
    ) -> None:
        error = ""
        try:
            found = await self.manager.find_container(req.pod_uid, req.container, previous=req.previous)
            if found is None:
                which = "previous terminated container" if req.previous else "container"
                error = f'{which} "{req.container}" in pod "{req.pod_name}" not found'
            else:
                runtime, info = found
                tail = req.tail_lines if req.tail_lines > 0 else None
                async for chunk in runtime.logs(info.id, tail=tail, follow=req.follow):
                    for start in range(0, len(chunk), LOG_CHUNK):
                        outgoing.put_nowait(
                            node_service_pb2.AgentMessage(
                                log_data=node_service_pb2.LogData(
                                    request_id=req.request_id, data=chunk[start : start + LOG_CHUNK]
                                )
                            )
                        )
        except RuntimeFailure as e:
            error = str(e)
        finally:
            with contextlib.suppress(Exception):
                outgoing.put_nowait(
                    node_service_pb2.AgentMessage(
                        log_end=node_service_pb2.LogEnd(request_id=req.request_id, error=error)
                    )
                )
