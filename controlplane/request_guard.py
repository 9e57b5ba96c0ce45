"""Requests that are not what a method takes: INVALID_ARGUMENT, never a traceback.

gRPC parses a request's bytes before any code of ours runs; bytes that do not
parse as the method's message raise inside gRPC, which logs a traceback and
answers UNKNOWN. `RequestGuard` wraps every method's request parser so that
such bytes become a `Malformed` marker, and every handler so that a marker (as
a unary request, or any message of a request stream) ends the call with
INVALID_ARGUMENT "malformed request: …". A number too large for what it is
used for (an OverflowError out of a handler: a grace period of 2^62 seconds
as a date) ends the same way, with a warning logged rather than a traceback.

Installed last among a server's interceptors, so that authentication (which
needs no request) still answers first for a client that may not call at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError

from controlplane.grpcwrap import Context, WrappingInterceptor, rewrap

log = structlog.get_logger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


@dataclass(frozen=True)
class Malformed:
    """What a request's bytes parse to when they are not the method's message."""

    reason: str


def tolerant(parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``parse`` that answers `Malformed` instead of raising on bytes it cannot parse."""
    if parse is None:
        return None

    def parse_or_mark(raw: bytes) -> Any:
        try:
            return parse(raw)
        except (DecodeError, ValueError, TypeError) as e:
            return Malformed(str(e) or type(e).__name__)

    return parse_or_mark


async def _refuse(context: Context, method: str, reason: str) -> NoReturn:
    # Debug only: on the join port anyone can send these, as fast as they like.
    log.debug("malformed_request", method=method, reason=reason[:200])
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {reason}")
    raise AssertionError("abort raises")


async def _out_of_range(context: Context, method: str, error: OverflowError) -> NoReturn:
    log.warning("request_number_out_of_range", method=method, error=str(error))
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a number in the request is out of range: {error}")
    raise AssertionError("abort raises")


async def _checked(requests: AsyncIterator[Any], context: Context, method: str) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Malformed):
            await _refuse(context, method, request.reason)
        yield request


def _arguments(request: Any, context: Context, method: str) -> Any:
    """A request stream with its malformed messages refused; a single request as it is."""
    return _checked(request, context, method) if hasattr(request, "__aiter__") else request


class RequestGuard(WrappingInterceptor):
    def wrap(self, handler: grpc.RpcMethodHandler[Req, Resp], method: str) -> grpc.RpcMethodHandler[Req, Resp]:
        return rewrap(
            handler,
            lambda behavior: _unary(behavior, method),
            lambda behavior: _stream(behavior, method),
            request_deserializer=tolerant(handler.request_deserializer),
        )


def _unary(behavior: Callable[..., Any], method: str) -> Callable[[Any, Context], Any]:
    async def unary(request: Any, context: Context) -> Any:
        if isinstance(request, Malformed):
            await _refuse(context, method, request.reason)
        try:
            return await behavior(_arguments(request, context, method), context)
        except OverflowError as e:
            await _out_of_range(context, method, e)

    return unary


def _stream(behavior: Callable[..., Any], method: str) -> Callable[[Any, Context], AsyncIterator[Any]]:
    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        if isinstance(request, Malformed):
            await _refuse(context, method, request.reason)
        try:
            result = behavior(_arguments(request, context, method), context)
            if hasattr(result, "__aiter__"):
                async with contextlib.aclosing(result) as responses:
                    async for response in responses:
                        yield response
            else:
                await result
        except OverflowError as e:
            await _out_of_range(context, method, e)

    return stream
