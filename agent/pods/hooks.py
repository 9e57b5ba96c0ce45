"""Run one lifecycle hook: the I/O shell around `lifecycle.hook_target`.

exec and httpGet run through the probes' runner (one implementation, the same
messages); `sleep` waits. Like the probes, the result is a value: anything
a hook does wrong is a failed `ProbeResult`, never an exception (except
`CancelledError`).
"""

from __future__ import annotations

import asyncio

from agent.pods.lifecycle import HookTarget, SleepTarget
from agent.probes.result import ProbeResult, format_seconds, timed_out
from agent.probes.runner import run_probe
from agent.runtime.base import ContainerRuntime


async def run_hook(
    target: HookTarget,
    *,
    runtime: ContainerRuntime,
    container_id: str,
    timeout: float,  # noqa: ASYNC109 - the hook's own deadline is part of its contract
) -> ProbeResult:
    """The result of running the hook once, within `timeout` seconds."""
    if isinstance(target, SleepTarget):
        if target.seconds > timeout:
            await asyncio.sleep(timeout)
            return timed_out(timeout)
        await asyncio.sleep(target.seconds)
        return ProbeResult.ok(f"slept {format_seconds(target.seconds)}")
    return await run_probe(target, runtime=runtime, container_id=container_id, timeout=timeout)
