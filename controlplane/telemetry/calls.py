"""What the API port's interceptor records of every call.

Each call is counted by method and final status code
(`corral_api_requests_total`), and calls with a single response are timed
(`corral_api_request_duration_seconds`). Streams (watches, assignment streams,
tunnels) live as long as their client, so they are counted when they end but
not timed; `corral_api_streams_active` shows those open now. The code is the
one the client sees: the code an `abort` set, UNKNOWN for an unhandled
exception, CANCELLED when the client went away. `controlplane/interceptor.py`
calls these around every handler.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from controlplane.telemetry.series import ControlPlaneTelemetry


class MethodCalls:
    """Records the calls of one method."""

    __slots__ = ("method", "metrics")

    def __init__(self, metrics: ControlPlaneTelemetry, method: str) -> None:
        self.metrics = metrics
        self.method = method.lstrip("/")

    def opened(self) -> None:
        self.metrics.stream_opened(self.method)

    def closed(self, code: str) -> None:
        self.metrics.stream_closed(self.method)
        self.metrics.api_request(self.method, code, None)

    def finished(self, code: str, seconds: float) -> None:
        self.metrics.api_request(self.method, code, seconds)


def status_code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The status code the call ends with."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if error is None else grpc.StatusCode.UNKNOWN.name
