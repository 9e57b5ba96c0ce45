"""Requests that are not what a method takes: INVALID_ARGUMENT, never a traceback.

gRPC parses a request's bytes before any code of ours runs; bytes that do not
parse as the method's message raise inside gRPC, which logs a traceback and
answers UNKNOWN. The interceptor of both ports (`controlplane/interceptor.py`)
replaces every method's request parser by `tolerant(parser)`, so that such
bytes become a `Malformed` marker, and a marker (as a unary request, or any
message of a request stream: `Checked`) ends the call with INVALID_ARGUMENT
"malformed request: …" (`refuse`). A number too large for what it is used for
(an OverflowError out of a handler: a grace period of 2^62 seconds as a date)
ends the same way, with a warning logged rather than a traceback
(`out_of_range`). Authentication (which needs no request) answers first, for a
client that may not call at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import structlog
from google.protobuf.message import DecodeError

from controlplane.grpcwrap import Context

log = structlog.get_logger(__name__)


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


async def refuse(context: Context, method: str, reason: str) -> NoReturn:
    # Debug only: on the join port anyone can send these, as fast as they like.
    log.debug("malformed_request", method=method, reason=reason[:200])
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {reason}")
    raise AssertionError("abort raises")


async def out_of_range(context: Context, method: str, error: OverflowError) -> NoReturn:
    log.warning("request_number_out_of_range", method=method, error=str(error))
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"a number in the request is out of range: {error}")
    raise AssertionError("abort raises")


class Checked:
    """A request stream whose malformed messages end the call (an iterator object, not a generator:
    one of these lives as long as each streaming call)."""

    __slots__ = ("_context", "_method", "_requests")

    def __init__(self, requests: AsyncIterator[Any], context: Context, method: str) -> None:
        self._requests = aiter(requests)
        self._context = context
        self._method = method

    def __aiter__(self) -> Checked:
        return self

    async def __anext__(self) -> Any:
        request = await anext(self._requests)
        if isinstance(request, Malformed):
            await refuse(self._context, self._method, request.reason)
        return request


def arguments(request: Any, context: Context, method: str) -> Any:
    """A request stream with its malformed messages refused; a single request as it is."""
    return Checked(request, context, method) if hasattr(request, "__aiter__") else request
