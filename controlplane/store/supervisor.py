"""`EtcdSupervisor`: restart the embedded etcd whenever it exits.

`corral server` without ``--etcd`` runs its etcd as a child; when that child
dies (killed, crashed, out of disk) the server restarts it on the same ports,
so its store's connection and the agents' streams come back on their own, as
after any etcd outage.

One event line per outage, saying what happened and what corral does about
it: ``embedded_etcd_exited`` (or ``embedded_etcd_disk_full``), then
``embedded_etcd_restarted`` once etcd answers again. Failed restarts back off
(`RESTARTS`, the agent's crash-loop backoff) and are logged again only when their reason changes, so a
full disk is one line until space returns.

The pure parts, the backoff and `diagnose`, takes times and etcd's output
as arguments; `EtcdSupervisor.run` is the thin async shell.
"""

from __future__ import annotations

import asyncio
import os
import signal

import structlog

from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.errors import EmbeddedEtcdError
from corral.common.backoff import CrashLoopBackoff

__all__ = ["DISK_FULL", "RESTARTS", "EtcdSupervisor", "diagnose"]

log = structlog.get_logger(__name__)

DISK_FULL = "disk full"
_NO_SPACE = "no space left on device"
# Less free space than this where etcd keeps its data is a full disk (etcd's log may not even get written).
LOW_SPACE = 8 * 2**20
_CHECK_PERIOD = 0.2  # seconds between two looks at the child


# Waits between restarts: 0.5 s, doubling after each failed restart up to 10 s; back to 0.5 s after a run
# of a minute (the agent's crash-loop backoff, with etcd's own numbers).
RESTARTS = CrashLoopBackoff(initial=0.5, cap=10.0, reset_after=60.0)


def diagnose(returncode: int | None, output: str, free_bytes: int | None = None) -> str:
    """Why etcd stopped, in a few words: the signal that killed it, else ``DISK_FULL``
    (its output says so, or its disk has less than ``LOW_SPACE`` free), else its exit code."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    if _NO_SPACE in output.lower() or (free_bytes is not None and free_bytes < LOW_SPACE):
        return DISK_FULL
    return f"exited with code {returncode}"


def _free_bytes(path: str) -> int | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class EtcdSupervisor:
    """Watches an `EmbeddedEtcd` (started) and restarts it whenever it exits."""

    def __init__(
        self, etcd: EmbeddedEtcd, policy: CrashLoopBackoff = RESTARTS, *, check_period: float = _CHECK_PERIOD
    ) -> None:
        self.etcd = etcd
        self.policy = policy
        self.check_period = check_period
        # How many times etcd was restarted, and how many restarts failed (for tests and metrics).
        self.restarts = 0
        self.failed_starts = 0

    async def run(self) -> None:
        """Until cancelled: wait for etcd to exit, then restart it (with backoff)."""
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        delay = 0.0
        while True:
            while self.etcd.running:  # noqa: ASYNC110 - a Popen child has no awaitable exit
                await asyncio.sleep(self.check_period)
            returncode = self.etcd.reap()
            if returncode is None:
                log.info("embedded_etcd_supervisor_done", reason="etcd was stopped by its owner")
                return
            reason = self._diagnose(returncode)
            delay = self.policy.next_delay(delay, ran_for=loop.time() - started_at)
            self._report(reason, delay)
            down_since = loop.time()
            delay = await self._restart(reason, delay)
            started_at = loop.time()
            self.restarts += 1
            log.warning(
                "embedded_etcd_restarted",
                message=f"embedded etcd serves again on {self.etcd.endpoint} after {loop.time() - down_since:.1f}s",
                endpoint=self.etcd.endpoint,
                pid=self.etcd.pid,
            )

    async def _restart(self, reason: str, delay: float) -> float:
        """Start etcd again, backing off while it fails; the last wait."""
        while True:
            await asyncio.sleep(delay)
            try:
                await self.etcd.start(same_ports=True)
                return delay
            except EmbeddedEtcdError as exc:
                self.failed_starts += 1
                # It exited while starting (diagnosed), or never ran (port taken, not healthy in time).
                exited = self.etcd.last_exit
                failure = self._diagnose(exited) if exited is not None else str(exc).splitlines()[0]
                delay = self.policy.next_delay(delay, ran_for=0.0)
                if failure == reason:
                    log.debug("embedded_etcd_restart_failed", reason=failure, retry_in=delay)
                else:
                    reason = failure
                    self._report(reason, delay)

    def _diagnose(self, returncode: int | None) -> str:
        return diagnose(returncode, self.etcd.last_output(), _free_bytes(str(self.etcd.data_dir)))

    def _report(self, reason: str, delay: float) -> None:
        data_dir = str(self.etcd.data_dir)
        if reason == DISK_FULL:
            free = _free_bytes(data_dir)
            log.error(
                "embedded_etcd_disk_full",
                message=f"etcd stopped: the disk holding {data_dir} is full"
                f"{'' if free is None else f' ({free // 2**20} MiB free)'}; "
                "free some space and corral restarts it (the API answers UNAVAILABLE until then)",
                data_dir=data_dir,
            )
            return
        log.error(
            "embedded_etcd_exited",
            message=f"embedded etcd {reason}; restarting it in {delay:.1f}s (log: {self.etcd.log_path})",
            reason=reason,
            restart_in=delay,
        )
