"""The assignment journal: the newest assignment set, kept in the data dir so
that an agent restarted while the control plane is away keeps running (and
restarting) what it was given.

Writes happen off the event loop (on an SD card one can take long enough to
stall the proxy), one at a time. Sets recorded while one is being written are
coalesced, the newest wins: a burst of assignments costs one or two writes, not
one each. Every recorded set has a sequence number and a write never puts an
older set over a newer one on disk, so the flush on the way out can neither
undo nor be undone by a write still under way in the writer's thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import structlog

from protos.corral.v1 import node_service_pb2

__all__ = ["AssignmentJournal"]

log = structlog.get_logger(__name__)


class AssignmentJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        # The newest set not yet written (with its sequence number), a wake-up for the
        # writer, and the sequence number of the set on disk.
        self._unsaved: tuple[int, node_service_pb2.AssignmentSet] | None = None
        self._sequence = 0
        self._written = 0
        self._write_lock = threading.Lock()
        self._save_wanted = asyncio.Event()

    def load(self) -> node_service_pb2.AssignmentSet | None:
        """The saved set; None when there is none, or it is torn or foreign."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        saved = node_service_pb2.AssignmentSet()
        try:
            saved.ParseFromString(data)
        except Exception:  # a torn or foreign file: start empty rather than crash
            log.warning("assignments_file_unreadable", path=str(self.path))
            return None
        return saved

    def record(self, assignment: node_service_pb2.AssignmentSet) -> None:
        """Have `assignment` written; it replaces any set not yet written."""
        self._sequence += 1
        self._unsaved = (self._sequence, assignment)
        self._save_wanted.set()

    async def run(self) -> None:
        """Write the newest unsaved set, one write at a time, until cancelled. A failed
        write is logged; the next set recorded (or the flush) tries again."""
        while True:
            await self._save_wanted.wait()
            self._save_wanted.clear()
            pending = self._unsaved
            if pending is None:
                continue
            try:
                await asyncio.to_thread(self._write, *pending)
            except OSError as e:
                self._failed(e)
                continue
            if self._unsaved is pending:
                self._unsaved = None

    def flush(self) -> None:
        """On the way out: the newest set, unless it is on disk (a write still
        running in the writer's thread is waited for, and never undone)."""
        pending, self._unsaved = self._unsaved, None
        if pending is not None:
            try:
                self._write(*pending)
            except OSError as e:
                self._failed(e)

    def _failed(self, e: OSError) -> None:
        log.warning("assignments_save_failed", path=str(self.path), reason=e.strerror or str(e))

    def _write(self, sequence: int, assignment: node_service_pb2.AssignmentSet) -> None:
        """Save `assignment` unless a newer set is on disk already; one write at a time."""
        with self._write_lock:
            if sequence <= self._written:
                return
            self._save(assignment)
            self._written = sequence

    def _save(self, assignment: node_service_pb2.AssignmentSet) -> None:
        tmp = self.path.with_suffix(".tmp")
        # Owner-only: the pods carry their Secret values.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(assignment.SerializeToString())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
