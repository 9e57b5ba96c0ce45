"""Ending a proxy process the agent started (nginx or Caddy)."""

from __future__ import annotations

import asyncio
import contextlib


async def end(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace` seconds; returns once it has."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
