"""The TCP socket probe: success when a connection to host:port opens.

The connection is closed at once; nothing is sent. Never raises (except
`CancelledError`): refusals, unreachable hosts, failed lookups and timeouts
are failed `ProbeResult`s.
"""

from __future__ import annotations

import asyncio

from agent.probes.dial import dial_error, join_host_port
from agent.probes.result import ProbeResult, timed_out


async def probe_tcp(
    host: str,
    port: int,
    *,
    timeout: float,  # noqa: ASYNC109 - the probe's own deadline is part of its contract
) -> ProbeResult:
    """Open and close a TCP connection to host:port within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(asyncio.Protocol, host, port)
    except TimeoutError:
        return timed_out(timeout)
    except Exception as exc:
        return ProbeResult.failed(dial_error(host, port, exc))
    transport.close()
    return ProbeResult.ok(f"dial tcp {join_host_port(host, port)}: connected")
