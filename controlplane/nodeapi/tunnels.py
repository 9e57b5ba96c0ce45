"""Agent tunnels: the agent-initiated streams the control plane uses to ask an
agent for something (container logs), since it never dials agents itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog

from protos.corral.v1 import node_service_pb2

log = structlog.get_logger(__name__)


class TunnelError(Exception):
    """The node is not connected, or the agent reported an error."""


@dataclass
class Tunnel:
    node: str
    outgoing: asyncio.Queue[node_service_pb2.ServerMessage] = field(default_factory=asyncio.Queue)
    # request id → queue of chunks; None marks the end, a str an error.
    pending: dict[str, asyncio.Queue[bytes | str | None]] = field(default_factory=dict)

    def deliver(self, message: node_service_pb2.AgentMessage) -> None:
        kind = message.WhichOneof("message")
        if kind == "log_data":
            queue = self.pending.get(message.log_data.request_id)
            if queue is not None:
                queue.put_nowait(message.log_data.data)
        elif kind == "log_end":
            queue = self.pending.get(message.log_end.request_id)
            if queue is not None:
                queue.put_nowait(message.log_end.error or None)

    def close(self) -> None:
        for queue in self.pending.values():
            queue.put_nowait(f"node {self.node} disconnected")


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
        queue: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        tunnel.pending[request_id] = queue
        await tunnel.outgoing.put(node_service_pb2.ServerMessage(log_request=request))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, str):
                    raise TunnelError(item)
                yield item
        finally:
            tunnel.pending.pop(request_id, None)
            if request.follow:
                cancel = node_service_pb2.CancelRequest(request_id=request_id)
                tunnel.outgoing.put_nowait(node_service_pb2.ServerMessage(cancel=cancel))
