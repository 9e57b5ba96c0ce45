"""The exec probe: run a command in the container; exit code 0 is a success.

The runtime enforces the timeout (it reports exit code 124 when the command ran
out of time); a runtime that does not answer within the timeout plus a short
grace is cut off here. Exceptions from the runtime become failed results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agent.probes.dial import describe_error
from agent.probes.result import ProbeResult, format_seconds, timed_out
from agent.runtime.base import ContainerRuntime

# Exit code the runtime reports when the command ran out of time.
TIMEOUT_EXIT_CODE = 124
# Extra time the runtime gets to report a timed-out command before we stop waiting.
RUNTIME_GRACE = 1.0
# Output quoted in a failure message.
OUTPUT_LIMIT = 200


async def probe_exec(
    runtime: ContainerRuntime,
    container_id: str,
    command: Sequence[str],
    *,
    timeout: float,  # noqa: ASYNC109 - the probe's own deadline is part of its contract
) -> ProbeResult:
    """Run `command` in the container; success when it exits 0."""
    if not command:
        return ProbeResult.failed("exec probe has no command")
    try:
        async with asyncio.timeout(timeout + RUNTIME_GRACE):
            result = await runtime.exec(container_id, list(command), timeout=timeout)
    except TimeoutError:
        return timed_out(timeout)
    except Exception as exc:
        return ProbeResult.failed(f"exec probe failed: {describe_error(exc)}")
    return judge_exit(result.exit_code, result.output, timeout=timeout)


def judge_exit(exit_code: int, output: bytes, *, timeout: float) -> ProbeResult:
    """The result for a command that exited with `exit_code` after printing `output`."""
    if exit_code == 0:
        return ProbeResult.ok("command exited with 0")
    message = f"command exited with {exit_code}"
    if exit_code == TIMEOUT_EXIT_CODE:
        message = f"timeout after {format_seconds(timeout)}: {message}"
    quoted = output[:OUTPUT_LIMIT].decode("utf-8", errors="replace").strip()
    return ProbeResult.failed(f"{message}: {quoted}" if quoted else message)
