"""The `nft` command line, as the kernel data path uses it: replace or delete one table.

`replace(table, text)` sends one transaction to `nft -f -`: declare the
table, delete it, define it anew — atomic, so a packet meets either the old
rules or the new ones, and established connections keep their NAT under
conntrack. `delete(table)` removes it (already gone: fine). `check(table)`
proves at start that nft runs and may change the ruleset (an empty table
made and removed). No Python dependency: the CLI of Debian's `nftables`
package, run with `asyncio.create_subprocess_exec`, each call bounded by
`timeout`.

Errors::

    NftablesError                 nft did not do what was asked
    ├── NftablesUnavailable       nft is missing, not permitted (root or CAP_NET_ADMIN), or hangs: permanent
    └── NftablesRejected          nft refused the rules (a bug here, or a kernel without nf_tables parts)
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil

DEFAULT_BINARY = "nft"


class NftablesError(Exception):
    """nft did not do what was asked; the message is one line a user can act on."""


class NftablesUnavailable(NftablesError):
    """nft cannot be run here, or may not change the ruleset."""


class NftablesRejected(NftablesError):
    """nft ran and refused the rules."""


_DENIED = ("operation not permitted", "permission denied")


class Nft:
    def __init__(self, binary: str = DEFAULT_BINARY, *, timeout: float = 10.0) -> None:
        self.binary = binary
        self.timeout = timeout

    async def run(self, script: str) -> None:
        """`nft -f -` with `script` on stdin: one transaction."""
        path = shutil.which(self.binary)
        if path is None:
            raise NftablesUnavailable(f"{self.binary} not found: install the nftables package")
        try:
            process = await asyncio.create_subprocess_exec(
                path,
                "-f",
                "-",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            raise NftablesUnavailable(f"{path} cannot be run: {e.strerror or e}") from e
        try:
            async with asyncio.timeout(self.timeout):
                _, stderr = await process.communicate(script.encode())
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise NftablesUnavailable(f"{path} did not answer within {self.timeout:g} s") from None
        if process.returncode == 0:
            return
        message = " ".join(stderr.decode(errors="replace").split())[:500] or f"exit status {process.returncode}"
        if any(word in message.lower() for word in _DENIED):
            raise NftablesUnavailable(f"{path} may not change the ruleset (needs root or CAP_NET_ADMIN): {message}")
        raise NftablesRejected(f"{path} refused the rules: {message}")

    async def replace(self, table: str, text: str) -> None:
        """Make `text` (a whole `table ip <table> { … }`) the table, atomically."""
        await self.run(f"table ip {table}\ndelete table ip {table}\n{text}")

    async def delete(self, table: str) -> None:
        await self.run(f"table ip {table}\ndelete table ip {table}\n")

    async def check(self, table: str) -> None:
        """Raise unless nft runs and may change the ruleset (leaves no table behind)."""
        await self.delete(f"{table}_check")
