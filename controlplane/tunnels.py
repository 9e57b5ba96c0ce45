"""Agent tunnels: the agent-initiated streams the control plane uses to ask an
agent for something (container logs), since it never dials agents itself.

A log stream whose client stops reading is ended once more than
`MAX_PENDING_LOG_BYTES` wait for it: what waited is dropped, the agent is told
to stop sending, and the client gets `LogsOverflowError` after what was on its
way (memory stays bounded whatever a client does).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog

from protos.corral.v1 import node_service_pb2

log = structlog.get_logger(__name__)


# Bytes of one log stream that may wait for its client before the stream is ended.
MAX_PENDING_LOG_BYTES = 16 * 1024 * 1024


class TunnelError(Exception):
    """The node is not connected, or the agent reported an error."""


class LogsOverflowError(TunnelError):
    """The client of a log stream fell too far behind; the stream was ended."""


class _LogStream:
    """One log request's chunks waiting for its client; None marks the end, an error the failure."""

    def __init__(self) -> None:
        self.items: deque[bytes | TunnelError | None] = deque()
        self.size = 0
        self.ready = asyncio.Event()

    def put(self, item: bytes | TunnelError | None) -> None:
        self.items.append(item)
        if isinstance(item, bytes):
            self.size += len(item)
        self.ready.set()

    def fail(self, error: TunnelError) -> None:
        """Drop what waits; the client gets ``error`` next."""
        self.items.clear()
        self.size = 0
        self.put(error)

    async def get(self) -> bytes | TunnelError | None:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        item = self.items.popleft()
        if isinstance(item, bytes):
            self.size -= len(item)
        return item


@dataclass
class Tunnel:
    node: str
    outgoing: asyncio.Queue[node_service_pb2.ServerMessage] = field(default_factory=asyncio.Queue)
    # request id → the chunks waiting for that request's client.
    pending: dict[str, _LogStream] = field(default_factory=dict)
    max_pending_bytes: int = MAX_PENDING_LOG_BYTES

    def deliver(self, message: node_service_pb2.AgentMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "log_data":
            request_id = message.log_data.request_id
            stream = self.pending.get(request_id)
            if stream is not None:
                stream.put(message.log_data.data)
                if stream.size > self.max_pending_bytes:
                    self._overflow(request_id, stream)
        elif kind == "log_end":
            stream = self.pending.get(message.log_end.request_id)
            if stream is not None:
                stream.put(TunnelError(message.log_end.error) if message.log_end.error else None)

    def _overflow(self, request_id: str, stream: _LogStream) -> None:
        log.warning("logs_cut_off", node=self.node, buffered_bytes=stream.size, max_bytes=self.max_pending_bytes)
        del self.pending[request_id]  # what the agent still sends is dropped
        stream.fail(
            LogsOverflowError(
                f"log stream closed: the client fell behind by more than {self.max_pending_bytes} bytes; ask again"
            )
        )
        cancel = node_service_pb2.CancelRequest(request_id=request_id)
        self.outgoing.put_nowait(node_service_pb2.ServerMessage(cancel=cancel))

    def close(self) -> None:
        for stream in self.pending.values():
            stream.put(TunnelError(f"node {self.node} disconnected"))


class TunnelRegistry:
    def __init__(self) -> None:
        self._tunnels: dict[str, Tunnel] = {}

    def open(self, node: str) -> Tunnel:
        old = self._tunnels.get(node)
        if old is not None:
            old.close()
        tunnel = Tunnel(node)
        self._tunnels[node] = tunnel
        log.info("tunnel_opened", node=node)
        return tunnel

    def close(self, tunnel: Tunnel) -> None:
        tunnel.close()
        if self._tunnels.get(tunnel.node) is tunnel:
            del self._tunnels[tunnel.node]
            log.info("tunnel_closed", node=tunnel.node)

    async def logs(self, node: str, request: node_service_pb2.LogRequest) -> AsyncIterator[bytes]:
        """Ask the node's agent for logs and yield what it sends until it ends."""
        tunnel = self._tunnels.get(node)
        if tunnel is None:
            raise TunnelError(f"node {node} is not connected to this control plane")
        request_id = uuid.uuid4().hex
        request.request_id = request_id
        stream = _LogStream()
        tunnel.pending[request_id] = stream
        await tunnel.outgoing.put(node_service_pb2.ServerMessage(log_request=request))
        try:
            while True:
                item = await stream.get()
                if item is None:
                    return
                if isinstance(item, TunnelError):
                    raise item
                yield item
        finally:
            if tunnel.pending.pop(request_id, None) is not None and request.follow:
                cancel = node_service_pb2.CancelRequest(request_id=request_id)
                tunnel.outgoing.put_nowait(node_service_pb2.ServerMessage(cancel=cancel))
