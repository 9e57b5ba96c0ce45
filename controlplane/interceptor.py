"""The one interceptor of the API and join ports: every handler wrapped once.

Around each handler, in this order (each step as it would be as an interceptor
of its own, outermost first):

1. telemetry (`telemetry/calls.py`, when given): the call counted by its final
   code, a unary call timed, a stream counted open while it runs;
2. admission (`auth/admission.py`, when given): the caller's certificate,
   revocation and role checked before the handler runs; a stream registered by
   the caller's name while it runs, and one that `StreamRegistry.close`
   cancelled ends with UNAUTHENTICATED "revoked";
3. the request guard (`request_guard.py`, always): a request (or any message
   of a request stream) that did not parse ends the call with
   INVALID_ARGUMENT, as does an OverflowError out of the handler.

One wrapper rather than three interceptors: each layer was a coroutine or an
async generator per call (and a frame every streamed message passed through),
and each of an agent's four streams lives as long as the agent is connected.
A streaming handler's responses are written with ``context.write`` by a
coroutine rather than yielded to gRPC, which keeps the last message it was
given until the next (an agent's assignment set holds a copy of each of its
pods); the wrapper keeps none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from controlplane.auth.admission import Admission, revoked
from controlplane.grpcwrap import Context, WrappingInterceptor, rewrap
from controlplane.request_guard import Malformed, arguments, out_of_range, refuse, tolerant
from controlplane.telemetry.calls import MethodCalls, status_code
from controlplane.telemetry.series import ControlPlaneTelemetry

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class ApiInterceptor(WrappingInterceptor):
    def __init__(self, *, telemetry: ControlPlaneTelemetry | None = None, admission: Admission | None = None) -> None:
        super().__init__()
        self.telemetry = telemetry
        self.admission = admission

    def wrap(self, handler: grpc.RpcMethodHandler[Req, Resp], method: str) -> grpc.RpcMethodHandler[Req, Resp]:
        calls = MethodCalls(self.telemetry, method) if self.telemetry is not None else None
        return rewrap(
            handler,
            lambda behavior: _unary(behavior, method, calls, self.admission),
            lambda behavior: _stream(behavior, method, calls, self.admission),
            request_deserializer=tolerant(handler.request_deserializer),
        )


def _unary(
    behavior: Callable[..., Any], method: str, calls: MethodCalls | None, admission: Admission | None
) -> Callable[[Any, Context], Any]:
    async def unary(request: Any, context: Context) -> Any:
        started = time.perf_counter()
        code = "OK"
        try:
            if admission is not None:
                await admission.admit(context, method)
            if isinstance(request, Malformed):
                await refuse(context, method, request.reason)
            try:
                response = await behavior(arguments(request, context, method), context)
            except OverflowError as e:
                await out_of_range(context, method, e)
            code = status_code(context, None)
            return response
        except BaseException as e:
            code = status_code(context, e)
            raise
        finally:
            if calls is not None:
                calls.finished(code, time.perf_counter() - started)

    return unary


def _stream(
    behavior: Callable[..., Any], method: str, calls: MethodCalls | None, admission: Admission | None
) -> Callable[[Any, Context], Awaitable[None]]:
    async def stream(request: Any, context: Context) -> None:
        code = "OK"
        if calls is not None:
            calls.opened()
        task: asyncio.Task[Any] | None = None
        name = ""
        try:
            if admission is not None:
                name = (await admission.admit(context, method)).identity.name
                task = asyncio.current_task()
                assert task is not None
                admission.streams.add(name, task)
            if isinstance(request, Malformed):
                await refuse(context, method, request.reason)
            try:
                result = behavior(arguments(request, context, method), context)
                if hasattr(result, "__aiter__"):
                    async with contextlib.aclosing(result) as responses:  # closed with this stream, however it ends
                        async for response in responses:
                            await context.write(response)
                            del response  # not kept while the handler waits for its next one
                else:  # a coroutine that writes its responses with context.write
                    await result
            except OverflowError as e:
                await out_of_range(context, method, e)
            except asyncio.CancelledError:
                if admission is None or task is None or not admission.streams.closing(task):
                    raise
                task.uncancel()
                admission.streams.discard(name, task)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, revoked(name))
            code = status_code(context, None)
        except BaseException as e:
            code = status_code(context, e)
            raise
        finally:
            if admission is not None and task is not None:
                admission.streams.discard(name, task)
            if calls is not None:
                calls.closed(code)

    return stream
