"""The pod manager: applies assignment sets, owns one worker per pod, and
batches status reports for the session.

Fencing: an assignment set older than the newest one applied is refused. The
newest set is also written to the data dir, so an agent restarted while the
control plane is away keeps running (and restarting) what it was given; the
write happens beside the workers' start, off the event loop, and sets that
arrive while one is being written are coalesced (the newest wins), so a burst
of assignments costs one or two writes, not one each.
Every applied set is authoritative: containers of this node whose pod is not
in it are stopped and removed (the runtime is scanned for them on the first
set and whenever a set drops pods, not on every set: a scale-up burst would
list the runtime's containers once per set). A pod in the set with a deletionTimestamp is
wound down by its worker (see `worker`) and stays until the control plane
deletes it; then its containers are removed like any unassigned pod's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

import structlog

from agent.pods.worker import PodWorker, WorkerSettings
from agent.runtime import base
from agent.runtime.base import ContainerInfo, ContainerRuntime, State
from agent.runtime.errors import RuntimeFailure
from protos.corral.v1 import node_service_pb2, pod_pb2

log = structlog.get_logger(__name__)

DEFAULT_RUNTIME = "docker"
ORPHAN_GRACE_SECONDS = 30.0


class PodManager:
    def __init__(self, runtimes: Mapping[str, ContainerRuntime], settings: WorkerSettings, data_dir: Path) -> None:
        self.runtimes = dict(runtimes)
        self.settings = settings
        self.state_file = data_dir / "assignments.pb"
        self.epoch = 0
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._terminating: set[str] = set()
        self._group: asyncio.TaskGroup | None = None
        self._reports: dict[str, node_service_pb2.PodStatusReport] = {}
        self._latest: dict[str, node_service_pb2.PodStatusReport] = {}
        self.reports_ready = asyncio.Event()
        self.applied = asyncio.Event()
        # The newest set not yet written to `state_file` (with its sequence number),
        # a wake-up for the writer, and the sequence number of the set on disk.
        self._unsaved: tuple[int, node_service_pb2.AssignmentSet] | None = None
        self._sequence = 0
        self._written = 0
        self._write_lock = threading.Lock()
        self._save_wanted = asyncio.Event()
        self._scanned = False

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Own the workers; resume from the saved assignment set, if any."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._write_forever(), name="assignments-writer")
                saved = self._load()
                if saved is not None:
                    log.info("assignments_resumed", epoch=saved.epoch, pods=len(saved.pods))
                    await self._apply(saved, persist=False)
                await asyncio.Event().wait()
        finally:
            self._flush()

    async def _write_forever(self) -> None:
        """Write the newest unsaved set, one write at a time; the newest wins."""
        while True:
            await self._save_wanted.wait()
            self._save_wanted.clear()
            pending = self._unsaved
            if pending is None:
                continue
            try:
                # Off the event loop: on an SD card a write can take long enough to stall the proxy.
                await asyncio.to_thread(self._write, *pending)
            except OSError as e:
                log.warning("assignments_save_failed", path=str(self.state_file), reason=e.strerror or str(e))
                continue
            if self._unsaved is pending:
                self._unsaved = None

    def _flush(self) -> None:
        """On the way out: the newest set, unless it is on disk (a write still
        running in the writer's thread is waited for, and never undone)."""
        pending, self._unsaved = self._unsaved, None
        if pending is not None:
            try:
                self._write(*pending)
            except OSError as e:
                log.warning("assignments_save_failed", path=str(self.state_file), reason=e.strerror or str(e))

    def _write(self, sequence: int, assignment: node_service_pb2.AssignmentSet) -> None:
        """Save `assignment` unless a newer set is on disk already; one write at a time."""
        with self._write_lock:
            if sequence <= self._written:
                return
            self._save(assignment)
            self._written = sequence

    def _load(self) -> node_service_pb2.AssignmentSet | None:
        try:
            data = self.state_file.read_bytes()
        except FileNotFoundError:
            return None
        saved = node_service_pb2.AssignmentSet()
        try:
            saved.ParseFromString(data)
        except Exception:  # a torn or foreign file: start empty rather than crash
            log.warning("assignments_file_unreadable", path=str(self.state_file))
            return None
        return saved

    def _save(self, assignment: node_service_pb2.AssignmentSet) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        # Owner-only: the pods carry their Secret values.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(assignment.SerializeToString())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.state_file)

    # -- assignments -----------------------------------------------------------------

    async def apply(self, assignment: node_service_pb2.AssignmentSet) -> bool:
        """Apply an authoritative set; False (and nothing done) when it is stale."""
        if assignment.epoch < self.epoch:
            log.warning("assignments_refused", epoch=assignment.epoch, newest=self.epoch)
            return False
        await self._apply(assignment, persist=True)
        return True

    async def _apply(self, assignment: node_service_pb2.AssignmentSet, *, persist: bool) -> None:
        self.epoch = assignment.epoch
        if persist:
            self._sequence += 1
            self._unsaved = (self._sequence, assignment)
            self._save_wanted.set()
        wanted = {p.metadata.uid: p for p in assignment.pods}
        for uid, pod in wanted.items():
            worker = self.workers.get(uid)
            if worker is None:
                self._start_worker(pod)
            else:
                worker.update(pod, self.epoch)
        dropped = [u for u in self.workers if u not in wanted]
        for uid in dropped:
            self._terminate_worker(uid)
        if dropped or not self._scanned:
            self._scanned = True
            await self._stop_orphans(set(wanted))
        self.applied.set()
        log.info("assignments_applied", epoch=self.epoch, pods=len(wanted))

    def runtime_for(self, pod: pod_pb2.Pod) -> ContainerRuntime | None:
        return self.runtimes.get(pod.spec.runtime_class_name or DEFAULT_RUNTIME)

    def _start_worker(self, pod: pod_pb2.Pod) -> None:
        runtime = self.runtime_for(pod)
        if runtime is None:
            self._reject(pod, f'runtime "{pod.spec.runtime_class_name or DEFAULT_RUNTIME}" is not offered '
                              f"by node {self.settings.node_name} (it offers {', '.join(self.runtimes)})")
            return
        worker = PodWorker(pod, runtime, self.settings, self.report, epoch=self.epoch)
        self.workers[pod.metadata.uid] = worker
        assert self._group is not None
        self._tasks[pod.metadata.uid] = self._group.create_task(worker.run(), name=f"pod-{pod.metadata.name}")

    def _terminate_worker(self, uid: str) -> None:
        worker = self.workers.pop(uid)
        task = self._tasks.pop(uid)
        task.cancel()
        self._latest.pop(uid, None)
        self._reports.pop(uid, None)
        assert self._group is not None
        self._terminating.add(uid)
        self._group.create_task(self._finish_terminate(uid, worker), name=f"stop-{worker.pod.metadata.name}")

    async def _finish_terminate(self, uid: str, worker: PodWorker) -> None:
        try:
            await self._guarded(worker.terminate())
        finally:
            self._terminating.discard(uid)

    def _reject(self, pod: pod_pb2.Pod, message: str) -> None:
        status = pod_pb2.PodStatus(phase="Failed", reason="UnsupportedRuntime", message=message,
                                   host_ip=self.settings.host_ip)
        self.report(pod, status)

    async def _stop_orphans(self, wanted: set[str]) -> None:
        """Stop and remove this node's containers whose pod is not assigned here."""
        selector = {base.LABEL_MANAGED: "true", base.LABEL_NODE: self.settings.node_name}
        for runtime in self.runtimes.values():
            try:
                containers = await runtime.list(selector)
            except RuntimeFailure as e:
                log.warning("orphan_scan_failed", runtime=runtime.name, error=str(e))
                continue
            for info in containers:
                uid = info.labels.get(base.LABEL_POD_UID, "")
                if uid not in wanted and uid not in self._terminating:
                    assert self._group is not None
                    self._group.create_task(self._guarded(self._remove_orphan(runtime, info)))

    async def _remove_orphan(self, runtime: ContainerRuntime, info: ContainerInfo) -> None:
        log.info("orphan_stopping", id=info.id, pod=info.labels.get(base.LABEL_POD_NAME, ""))
        if info.state is State.RUNNING:
            await runtime.stop(info.id, grace_seconds=ORPHAN_GRACE_SECONDS)
        await runtime.remove(info.id)

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None]) -> None:
        """Run cleanup work; a runtime failure is logged, never fatal to the agent."""
        try:
            await work
        except RuntimeFailure as e:
            log.warning("cleanup_failed", error=str(e))

    # -- status reports --------------------------------------------------------------

    def report(self, pod: pod_pb2.Pod, status: pod_pb2.PodStatus, *, terminated: bool = False) -> None:
        """Queue a pod's status; `terminated`: a terminating pod's containers have all stopped."""
        r = node_service_pb2.PodStatusReport(namespace=pod.metadata.namespace, name=pod.metadata.name,
                                             uid=pod.metadata.uid, status=status, terminated=terminated)
        self._reports[pod.metadata.uid] = r
        self._latest[pod.metadata.uid] = r
        self.reports_ready.set()

    def resend_all(self) -> None:
        """After a reconnect, report every pod's newest status again."""
        self._reports.update(self._latest)
        if self._reports:
            self.reports_ready.set()

    def take_reports(self) -> list[node_service_pb2.PodStatusReport]:
        reports = list(self._reports.values())
        self._reports.clear()
        self.reports_ready.clear()
        return reports

    def requeue(self, reports: list[node_service_pb2.PodStatusReport]) -> None:
        """Reports that could not be sent go back in line, unless newer ones replaced them."""
        for r in reports:
            self._reports.setdefault(r.uid, r)
        if self._reports:
            self.reports_ready.set()

    def forget(self, uids: list[str]) -> None:
        """The control plane no longer knows these pods: stop reporting them."""
        for uid in uids:
            self._latest.pop(uid, None)

    # -- logs ----------------------------------------------------------------------

    async def find_container(self, pod_uid: str, container: str, *, previous: bool
                             ) -> tuple[ContainerRuntime, ContainerInfo] | None:
        worker = self.workers.get(pod_uid)
        runtimes = [worker.runtime] if worker else list(self.runtimes.values())
        for runtime in runtimes:
            with contextlib.suppress(RuntimeFailure):
                found = await runtime.list({base.LABEL_POD_UID: pod_uid, base.LABEL_CONTAINER: container})
                found.sort(key=lambda c: int(c.labels.get(base.LABEL_ATTEMPT, "0")))
                index = -2 if previous else -1
                if len(found) >= -index:
                    return runtime, found[index]
        return None
