"""Authentication and authorization of every call on the API port.

gRPC has already checked, during the TLS handshake, that the client presented
a certificate signed by the cluster CA (the port requires one). Each handler
is wrapped to refuse, before it runs:

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
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import structlog

from controlplane.auth import policy
from controlplane.auth.peer import Context, peer_of
from controlplane.auth.revocations import RevocationList
from controlplane.grpcwrap import WrappingInterceptor, rewrap
from corral.common.pki.certs import Peer, Role

log = structlog.get_logger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


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


class AuthInterceptor(WrappingInterceptor):
    def __init__(self, revocations: RevocationList, streams: StreamRegistry) -> None:
        self.revocations = revocations
        self.streams = streams

    def wrap(self, handler: grpc.RpcMethodHandler[Req, Resp], method: str) -> grpc.RpcMethodHandler[Req, Resp]:
        return rewrap(
            handler, lambda behavior: self._unary(behavior, method), lambda behavior: self._stream(behavior, method)
        )

    async def _admit(self, context: Context, method: str) -> Peer:
        peer = peer_of(context)
        if peer is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "a client certificate issued by this cluster's CA is required"
            )
            raise AssertionError("abort raises")
        if peer.identity.role is Role.NODE and self.revocations.revoked(peer.identity.name, peer.issued_at):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f'the certificate of node "{peer.identity.name}" was revoked: join again with a new token',
            )
        if not policy.allowed(method, peer.identity.role):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{peer.identity} may not call {method.lstrip('/')}")
        return peer

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[[Any, Context], Any]:
        async def unary(request: Any, context: Context) -> Any:
            await self._admit(context, method)
            return await behavior(request, context)

        return unary

    def _stream(self, behavior: Callable[..., Any], method: str) -> Callable[[Any, Context], AsyncIterator[Any]]:
        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            peer = await self._admit(context, method)
            task = asyncio.current_task()
            assert task is not None
            name = peer.identity.name
            self.streams.add(name, task)
            try:
                result = behavior(request, context)
                if hasattr(result, "__aiter__"):
                    async with contextlib.aclosing(result) as responses:
                        async for response in responses:
                            yield response
                else:
                    await result
            except asyncio.CancelledError:
                if not self.streams.closing(task):
                    raise
                task.uncancel()
                self.streams.discard(name, task)
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f'the certificate of node "{name}" was revoked: join again with a new token',
                )
            finally:
                self.streams.discard(name, task)

        return stream
