"""A rendezvous: callers that arrive within `window` seconds of the first go on
together, in one turn of the event loop.

The store's group commit (`controlplane.store.group_commit`) puts the writes
issued in one loop turn into one transaction. Heartbeats do not come in
together — a thousand nodes every 4 s is one every 4 ms — so each Lease
renewal used to be an etcd transaction of its own. Renewals that wait here
first are written together: each is still a compare-and-swap on its own key,
and a conflict fails only its own caller. The wait is bounded by the window,
never by the others; a cancelled caller leaves the others alone.
"""

from __future__ import annotations

import asyncio


class Rendezvous:
    def __init__(self, window: float) -> None:
        self.window = window
        self._gate: asyncio.Event | None = None

    async def wait(self) -> None:
        """Return with every other caller of the current window (at once when the window is 0)."""
        if self.window <= 0:
            return
        gate = self._gate
        if gate is None:
            gate = self._gate = asyncio.Event()
            asyncio.get_running_loop().call_later(self.window, self._open, gate)
        await gate.wait()

    def _open(self, gate: asyncio.Event) -> None:
        if self._gate is gate:
            self._gate = None
        gate.set()
