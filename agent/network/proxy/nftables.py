"""The `nft` command line, as the kernel data path uses it: replace, read or delete one table.

`replace(table, text)` sends one transaction to `nft -f` (a private temporary file): declare the
table, delete it, define it anew — atomic, so a packet meets either the old
rules or the new ones, and established connections keep their NAT under
conntrack (a replaced table's counters start again at 0). `delete(table)`
removes it (already gone: fine). `counters(table)` reads `nft -j list table`
and sums each chain's rule counters: chain name → packets; `sets(table)` reads
the same listing's sets with timeouts: set name → (timeout, address → seconds
left). `check(table)`
proves at start that nft runs and may change the ruleset (an empty table
made and removed). No Python dependency: the CLI of Debian's `nftables`
package, run with `asyncio.create_subprocess_exec`, each call bounded by
`timeout`; its JSON is read with the stdlib.

Errors::

    NftablesError                 nft did not do what was asked
    ├── NftablesUnavailable       nft is missing, not permitted (root or CAP_NET_ADMIN), or hangs: permanent
    └── NftablesRejected          nft refused the rules (a bug here, or a kernel without nf_tables parts),
                                  or could not list the table (gone), or printed JSON not understood
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence

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
        """`nft -f <file>` with `script` in a private temporary file: one transaction.

        A file, not stdin: when nft exits before reading its input, writing to
        the closed pipe fails in the event loop (seen on uvloop under load)."""
        fd, path = tempfile.mkstemp(prefix="corral-nft-", suffix=".nft")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(script)
            await self._call(["-f", path], may="change the ruleset", refused="refused the rules")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def counters(self, table: str) -> dict[str, int]:
        """Chain name → packets counted by its rules, for every chain of `table ip <table>` with a counter."""
        out = await self._call(
            ["-j", "list", "table", "ip", table], may="read the ruleset", refused=f"could not list table {table}"
        )
        return parse_counters(out)

    async def sets(self, table: str) -> dict[str, tuple[int, dict[str, int]]]:
        """Set name → (its timeout, element → seconds until it expires), for the sets of `table ip <table>`
        with a timeout (ClientIP affinity's)."""
        out = await self._call(
            ["-j", "list", "table", "ip", table], may="read the ruleset", refused=f"could not list table {table}"
        )
        return parse_sets(out)

    async def _call(self, args: Sequence[str], *, may: str, refused: str) -> bytes:
        """Run nft with `args`; its stdout. Failures as the error tree says."""
        path = shutil.which(self.binary)
        if path is None:
            raise NftablesUnavailable(f"{self.binary} not found: install the nftables package")
        try:
            process = await asyncio.create_subprocess_exec(
                path,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:
            raise NftablesUnavailable(f"{path} cannot be run: {e.strerror or e}") from e
        try:
            async with asyncio.timeout(self.timeout):
                stdout, stderr = await process.communicate()
        except (OSError, RuntimeError) as e:  # its pipes closed under us: it died or was killed
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise NftablesRejected(f"{path} {refused}: it ended unexpectedly ({e})") from e
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise NftablesUnavailable(f"{path} did not answer within {self.timeout:g} s") from None
        if process.returncode == 0:
            return stdout
        message = " ".join(stderr.decode(errors="replace").split())[:500] or f"exit status {process.returncode}"
        if any(word in message.lower() for word in _DENIED):
            raise NftablesUnavailable(f"{path} may not {may} (needs root or CAP_NET_ADMIN): {message}")
        raise NftablesRejected(f"{path} {refused}: {message}")

    async def replace(self, table: str, text: str) -> None:
        """Make `text` (a whole `table ip <table> { … }`) the table, atomically."""
        await self.run(f"table ip {table}\ndelete table ip {table}\n{text}")

    async def delete(self, table: str) -> None:
        await self.run(f"table ip {table}\ndelete table ip {table}\n")

    async def check(self, table: str) -> None:
        """Raise unless nft runs and may change the ruleset (leaves no table behind)."""
        await self.delete(f"{table}_check")


def _items(text: bytes | str) -> list[object]:
    try:
        document = json.loads(text)
    except ValueError as e:
        raise NftablesRejected(f"nft -j printed no JSON: {e}") from e
    items = document.get("nftables") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise NftablesRejected("nft -j printed JSON without an nftables list")
    return items


def _seconds(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_sets(text: bytes | str) -> dict[str, tuple[int, dict[str, int]]]:
    """`nft -j list …` output → set name → (timeout, element → seconds left), for sets with a timeout.
    An element shown without `expires` (or with a shape not understood) is left out."""
    sets: dict[str, tuple[int, dict[str, int]]] = {}
    for item in _items(text):
        found = item.get("set") if isinstance(item, dict) else None
        if not isinstance(found, dict) or not isinstance(found.get("name"), str):
            continue
        timeout = _seconds(found.get("timeout"))
        if timeout is None:
            continue
        elements: dict[str, int] = {}
        for element in found.get("elem") or []:
            inner = element.get("elem") if isinstance(element, dict) else None
            if isinstance(inner, dict) and isinstance(inner.get("val"), str):
                left = _seconds(inner.get("expires"))
                if left is not None:
                    elements[inner["val"]] = left
        sets[found["name"]] = (timeout, elements)
    return sets


def parse_counters(text: bytes | str) -> dict[str, int]:
    """`nft -j list …` output → chain name → the packets of its rules' counters (summed)."""
    items = _items(text)
    counts: dict[str, int] = {}
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict) or not isinstance(rule.get("chain"), str):
            continue
        chain: str = rule["chain"]
        for expr in rule.get("expr") or []:
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if isinstance(counter, dict):  # a named counter's reference is a string: not ours
                packets = counter.get("packets")
                if not isinstance(packets, int) or isinstance(packets, bool):
                    raise NftablesRejected(f"nft -j printed a counter without packets in chain {chain}")
                counts[chain] = counts.get(chain, 0) + packets
    return counts
