"""Run one probe against its resolved target: the I/O shell around the probes.

`run_probe` dispatches on the `ProbeTarget` and always returns a `ProbeResult`:
anything a probe raises (other than `CancelledError`, which must propagate so
the agent can stop) becomes a failed result here.
"""

from __future__ import annotations

from agent.probes.dial import describe_error
from agent.probes.exec import probe_exec
from agent.probes.grpc_check import probe_grpc
from agent.probes.http import probe_http
from agent.probes.result import ProbeResult
from agent.probes.target import ExecTarget, GrpcTarget, HttpTarget, InvalidTarget, ProbeTarget, TcpTarget
from agent.probes.tcp import probe_tcp
from agent.runtime.base import ContainerRuntime


async def run_probe(
    target: ProbeTarget,
    *,
    runtime: ContainerRuntime,
    container_id: str,
    timeout: float,  # noqa: ASYNC109 - the probe's own deadline is part of its contract
) -> ProbeResult:
    """The result of probing `target` once, within `timeout` seconds."""
    try:
        return await _dispatch(target, runtime=runtime, container_id=container_id, timeout=timeout)
    except Exception as exc:
        return ProbeResult.failed(f"probe failed: {type(exc).__name__}: {describe_error(exc)}")


async def _dispatch(
    target: ProbeTarget,
    *,
    runtime: ContainerRuntime,
    container_id: str,
    timeout: float,  # noqa: ASYNC109 - the probe's own deadline is part of its contract
) -> ProbeResult:
    match target:
        case HttpTarget(host=host, port=port, path=path, scheme=scheme, headers=headers):
            return await probe_http(host, port, path, scheme=scheme, headers=headers, timeout=timeout)
        case TcpTarget(host=host, port=port):
            return await probe_tcp(host, port, timeout=timeout)
        case GrpcTarget(host=host, port=port, service=service):
            return await probe_grpc(host, port, service=service, timeout=timeout)
        case ExecTarget(command=command):
            return await probe_exec(runtime, container_id, list(command), timeout=timeout)
        case InvalidTarget(message=message):
            return ProbeResult.failed(message)
