"""A gRPC server interceptor that counts and times every call.

Each handler the server would run is wrapped: the call is counted by method
and final status code (`corral_api_requests_total`), and calls with a single
response are timed (`corral_api_request_duration_seconds`). Streams (watches,
assignment streams, tunnels) live as long as their client, so they are
counted when they end but not timed; `corral_api_streams_active` shows
those open now. The code is the one the client sees: the
code an `abort` set, UNKNOWN for an unhandled exception, CANCELLED when the
client went away. Methods the server does not know are left alone. The
control plane's servicers are all coroutines and async generators, which is
what the wrappers expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from controlplane.grpcwrap import WrappingInterceptor, rewrap
from controlplane.telemetry.series import ControlPlaneTelemetry

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class ApiTelemetryInterceptor(WrappingInterceptor):
    def __init__(self, metrics: ControlPlaneTelemetry) -> None:
        self.metrics = metrics

    def wrap(self, handler: grpc.RpcMethodHandler[Req, Resp], method: str) -> grpc.RpcMethodHandler[Req, Resp]:
        call = _Call(self.metrics, method.lstrip("/"))
        return rewrap(handler, lambda behavior: _timed(behavior, call), lambda behavior: _streamed(behavior, call))


class _Call:
    """Records the calls of one method."""

    def __init__(self, metrics: ControlPlaneTelemetry, method: str) -> None:
        self.metrics = metrics
        self.method = method

    def finished(self, code: str, seconds: float | None) -> None:
        self.metrics.api_request(self.method, code, seconds)


def _timed(behavior: Callable[..., Any], call: _Call) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]:
    async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            response = await behavior(request, context)
            code = _code(context, None)
            return response
        except BaseException as e:
            code = _code(context, e)
            raise
        finally:
            call.finished(code, time.perf_counter() - started)

    return timed


def _streamed(
    behavior: Callable[..., Any], call: _Call
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def streamed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        code = "OK"
        call.metrics.stream_opened(call.method)
        try:
            result = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async with contextlib.aclosing(result) as responses:  # closed with this stream, however it ends
                    async for response in responses:
                        yield response
            else:  # a coroutine that writes its responses with context.write
                await result
            code = _code(context, None)
        except BaseException as e:
            code = _code(context, e)
            raise
        finally:
            call.metrics.stream_closed(call.method)
            call.finished(code, None)

    return streamed


def _code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The status code the call ends with."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if error is None else grpc.StatusCode.UNKNOWN.name
