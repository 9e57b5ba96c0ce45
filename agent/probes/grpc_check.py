"""The gRPC probe: grpc.health.v1.Health/Check; SERVING is a success.

As the kubelet: a plaintext connection to host:port, one Check call with the
probe's `service` (empty asks about the whole server), all within `timeout`.
Any other status, an error or running out of time is a failure, worded as
Kubernetes words it. Never raises (except `CancelledError`).
"""

from __future__ import annotations

import asyncio

import grpc

from agent.probes.dial import join_host_port
from agent.probes.result import ProbeResult, format_seconds
from protos.corral.v1 import health_pb2

CHECK_METHOD = "/grpc.health.v1.Health/Check"


async def probe_grpc(
    host: str,
    port: int,
    *,
    service: str = "",
    timeout: float,  # noqa: ASYNC109 - the probe's own deadline is part of its contract
) -> ProbeResult:
    """Ask the health service at host:port about `service` within `timeout` seconds."""
    address = join_host_port(host, port)
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            async with asyncio.timeout(timeout):
                await channel.channel_ready()
        except TimeoutError:
            return ProbeResult.failed(
                f'timeout: failed to connect service "{address}" within {format_seconds(timeout)}'
            )
        check = channel.unary_unary(
            CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            response = await check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return ProbeResult.failed(f"timeout: health rpc did not complete within {format_seconds(timeout)}")
            return ProbeResult.failed(
                f"error: health rpc probe failed: {exc.code().name}: {exc.details() or ''}".rstrip(": ")
            )
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return ProbeResult.failed(f'service unhealthy (responded with "{status}")')
    return ProbeResult.ok("service healthy")
