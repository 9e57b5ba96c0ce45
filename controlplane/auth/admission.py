"""Authentication and authorization of every call on the API port.

gRPC has already checked, during the TLS handshake, that the client presented
a certificate signed by the cluster CA (the port requires one). The API port's
interceptor (`controlplane/interceptor.py`) asks `Admission` before each
handler runs, which refuses:

- a certificate that is not a corral client certificate: UNAUTHENTICATED;
- a node certificate issued before the node's revocation: UNAUTHENTICATED;
- a method the identity's role may not call (`policy`): PERMISSION_DENIED.

Streams (assignments, services, tunnels, watches) are registered by the
identity's name while they run; `StreamRegistry.close(name)` cancels them, and
they end with UNAUTHENTICATED "revoked" — a revoked node is cut off at once,
not at its next call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import structlog

from controlplane.auth import policy
from controlplane.auth.peer import Context, peer_of
from controlplane.auth.revocations import RevocationList
from corral.common.pki.certs import Peer, Role

log = structlog.get_logger(__name__)


class StreamRegistry:
    """The tasks serving streams, by the node name they serve."""

    def __init__(self) -> None:
        self._tasks: dict[str, set[asyncio.Task[Any]]] = {}
        self._closed: set[asyncio.Task[Any]] = set()

    def add(self, name: str, task: asyncio.Task[Any]) -> None:
        self._tasks.setdefault(name, set()).add(task)

    def discard(self, name: str, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks.get(name)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[name]
        self._closed.discard(task)

    def closing(self, task: asyncio.Task[Any]) -> bool:
        return task in self._closed

    def count(self, name: str) -> int:
        return len(self._tasks.get(name, ()))

    def close(self, name: str) -> int:
        """Cancel every stream of ``name``; how many there were."""
        tasks = list(self._tasks.get(name, ()))
        for task in tasks:
            self._closed.add(task)
            task.cancel()
        if tasks:
            log.info("streams_closed", identity=name, streams=len(tasks))
        return len(tasks)


class Admission:
    """Who may call what on the API port, and the streams of each identity."""

    def __init__(self, revocations: RevocationList, streams: StreamRegistry) -> None:
        self.revocations = revocations
        self.streams = streams

    async def admit(self, context: Context, method: str) -> Peer:
        """The caller's identity; the call is aborted unless it may call ``method``."""
        peer = peer_of(context)
        if peer is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "a client certificate issued by this cluster's CA is required"
            )
            raise AssertionError("abort raises")
        if peer.identity.role is Role.NODE and self.revocations.revoked(peer.identity.name, peer.issued_at):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, revoked(peer.identity.name))
        if not policy.allowed(method, peer.identity.role):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{peer.identity} may not call {method.lstrip('/')}")
        return peer


def revoked(name: str) -> str:
    return f'the certificate of node "{name}" was revoked: join again with a new token'
