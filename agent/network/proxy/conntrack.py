"""The `conntrack` command line, as the kernel data path uses it: delete stale UDP flows.

`delete(flow)` runs `conntrack -D -p udp --orig-dst <address> --orig-port-dst
<port>` (with `--reply-src <backend> --reply-port-src <port>` for the flows
DNATed to one backend) and answers how many entries went. No Python
dependency: the CLI of Debian's `conntrack` package, run with
`asyncio.create_subprocess_exec`, bounded by `timeout`.

Errors::

    ConntrackError                the entries could not be deleted
    ├── ConntrackUnavailable      conntrack is missing, not permitted, or hangs: the caller logs and goes on
    └── ConntrackFailed           conntrack ran and failed
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil

from agent.network.proxy.udp_flows import Flow

DEFAULT_BINARY = "conntrack"
_DELETED = re.compile(rb"(\d+) flow entries have been deleted")
_DENIED = ("operation not permitted", "permission denied")


class ConntrackError(Exception):
    """The entries could not be deleted; the message is one line a user can act on."""


class ConntrackUnavailable(ConntrackError):
    """conntrack cannot be run here, or may not change the table."""


class ConntrackFailed(ConntrackError):
    """conntrack ran and failed."""


def command(flow: Flow) -> list[str]:
    """The arguments that delete `flow`'s entries."""
    args = ["-D", "-p", "udp", "--orig-dst", flow.address, "--orig-port-dst", str(flow.port)]
    if flow.backend is not None:
        args += ["--reply-src", flow.backend[0], "--reply-port-src", str(flow.backend[1])]
    return args


class Conntrack:
    def __init__(self, binary: str = DEFAULT_BINARY, *, timeout: float = 10.0) -> None:
        self.binary = binary
        self.timeout = timeout

    async def delete(self, flow: Flow) -> int:
        """Delete the entries of `flow`; how many there were (none: 0, not an error)."""
        path = shutil.which(self.binary)
        if path is None:
            raise ConntrackUnavailable(f"{self.binary} not found: install the conntrack package")
        try:
            process = await asyncio.create_subprocess_exec(
                path,
                *command(flow),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            raise ConntrackUnavailable(f"{path} cannot be run: {e.strerror or e}") from e
        try:
            async with asyncio.timeout(self.timeout):
                _, stderr = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise ConntrackUnavailable(f"{path} did not answer within {self.timeout:g} s") from None
        deleted = _DELETED.search(stderr)
        if deleted is not None:  # it exits 1 when it deleted none
            return int(deleted.group(1))
        message = " ".join(stderr.decode(errors="replace").split())[:500] or f"exit status {process.returncode}"
        if any(word in message.lower() for word in _DENIED):
            raise ConntrackUnavailable(f"{path} may not delete entries (needs root or CAP_NET_ADMIN): {message}")
        raise ConntrackFailed(f"{path} {' '.join(command(flow))} failed: {message}")
