"""Re-wrapping a gRPC method handler's behaviour, for server interceptors.

An interceptor that runs code around every call gets the handler gRPC would
run and must hand back one of the same kind (unary or streaming request and
response) with the same codec. `rewrap` does that once for every kind: calls
with a single response go through ``unary``, streaming responses through
``stream``. The control plane's servicers are all coroutines and async
generators, which is what the wrappers receive. ``request_deserializer``, when
given, replaces the handler's request parser. `WrappingInterceptor` is the
server interceptor that hands every method's handler to its ``wrap``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]
Behavior = Callable[..., Any]
UnaryWrapper = Callable[[Behavior], Callable[[Any, Context], Any]]
# A streaming response's wrapper: an async generator, or a coroutine that writes with context.write.
StreamWrapper = Callable[[Behavior], Callable[[Any, Context], AsyncIterator[Any] | Awaitable[None]]]


_UNCHANGED: Any = object()


def rewrap(
    handler: grpc.RpcMethodHandler[Req, Resp],
    unary: UnaryWrapper,
    stream: StreamWrapper,
    *,
    request_deserializer: Any = _UNCHANGED,
) -> grpc.RpcMethodHandler[Req, Resp]:
    codec: dict[str, Any] = {
        "request_deserializer": (
            handler.request_deserializer if request_deserializer is _UNCHANGED else request_deserializer
        ),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **codec)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **codec)
    return handler


class WrappingInterceptor(grpc.aio.ServerInterceptor):
    """A server interceptor that re-wraps the handler of every method it serves (``wrap``, usually with
    `rewrap`); a method no servicer has stays unknown. A method's handler is wrapped once and the
    wrapped one reused for each of its calls (while the servicer's handler stays the same): no new
    closures per call, which a stream would keep as long as it lives."""

    def __init__(self) -> None:
        # Per method served: the servicer's handler and its wrapped one (as many entries as methods).
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Req, Resp] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Req, Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            found: grpc.RpcMethodHandler[Req, Resp] = known[1]
            return found
        fresh = self.wrap(handler, method)
        self._wrapped[method] = (handler, fresh)
        return fresh

    def wrap(self, handler: grpc.RpcMethodHandler[Req, Resp], method: str) -> grpc.RpcMethodHandler[Req, Resp]:
        raise NotImplementedError
