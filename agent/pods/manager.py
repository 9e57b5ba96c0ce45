"""The pod manager: applies assignment sets and owns one worker per pod.

Fencing: an assignment set older than the newest one applied is refused. The
newest set is also recorded in the assignment journal (`journal`), so an agent
restarted while the control plane is away resumes what it was given. The
workers' status reports go to the status outbox (`outbox`), which the session
sends from.

Every applied set is authoritative: containers of this node whose pod is not
in it are stopped and removed (the runtime is scanned for them on the first
set and whenever a set drops pods, not on every set: a scale-up burst would
list the runtime's containers once per set). A pod in the set with a deletionTimestamp is
wound down by its worker (see `worker`) and stays until the control plane
deletes it; then its containers are removed like any unassigned pod's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from agent.pods import claims, containers, volumes
from agent.pods.journal import AssignmentJournal
from agent.pods.outbox import StatusOutbox
from agent.pods.worker import PodWorker, WorkerSettings
from agent.runtime import base
from agent.runtime.base import ContainerInfo, ContainerRuntime, State
from agent.runtime.errors import RuntimeFailure
from protos.corral.v1 import node_service_pb2, pod_pb2
from protos.wellknown import DEFAULT_RUNTIME

log = structlog.get_logger(__name__)

ORPHAN_GRACE_SECONDS = 30.0


def without_secret_files(assignment: node_service_pb2.AssignmentSet) -> node_service_pb2.AssignmentSet:
    """The set as the journal keeps it on disk: a secret volume's files left out (withheld),
    so Secret data stays in memory and on tmpfs only. A resumed agent keeps what the tmpfs
    holds; after a reboot such a volume waits for the control plane."""
    if not any(p.secret for p in assignment.volumes):
        return assignment
    kept = node_service_pb2.AssignmentSet()
    kept.CopyFrom(assignment)
    for payload in kept.volumes:
        if payload.secret:
            del payload.files[:]
            payload.withheld = True
    return kept


class PodManager:
    def __init__(self, runtimes: Mapping[str, ContainerRuntime], settings: WorkerSettings, data_dir: Path) -> None:
        self.runtimes = dict(runtimes)
        self.settings = settings
        self.journal = AssignmentJournal(data_dir / "assignments.pb")
        self.outbox = StatusOutbox()
        self.epoch = 0
        self.workers: dict[str, PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._terminating: set[str] = set()
        self._group: asyncio.TaskGroup | None = None
        self.applied = asyncio.Event()
        self._scanned = False

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Own the workers; resume from the saved assignment set, if any."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.journal.run(), name="assignments-writer")
                saved = self.journal.load()
                if saved is not None:
                    log.info("assignments_resumed", epoch=saved.epoch, pods=len(saved.pods))
                    await self._apply(saved, persist=False)
                await asyncio.Event().wait()
        finally:
            self.journal.flush()

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
            self.journal.record(without_secret_files(assignment))
        wanted = {p.metadata.uid: p for p in assignment.pods}
        payloads: dict[str, list[node_service_pb2.VolumePayload]] = {}
        for payload in assignment.volumes:
            payloads.setdefault(payload.pod_uid, []).append(payload)
        for uid, pod in wanted.items():
            worker = self.workers.get(uid)
            if worker is None:
                self._start_worker(pod, payloads.get(uid, []))
            else:
                worker.update(pod, self.epoch, payloads.get(uid, []))
        dropped = [u for u in self.workers if u not in wanted]
        for uid in dropped:
            self._terminate_worker(uid)
        if dropped or not self._scanned:
            self._scanned = True
            await self._stop_orphans(set(wanted))
        if assignment.volume_deletions and persist:
            await self._delete_volumes(assignment.volume_deletions)
        self.applied.set()
        log.info("assignments_applied", epoch=self.epoch, pods=len(wanted))

    async def _delete_volumes(self, deletions: Iterable[node_service_pb2.VolumeDeletion]) -> None:
        """Remove released volumes' directories (a pod being deleted no longer uses them: the
        control plane releases a volume only once no pod uses its claim) and report each outcome."""
        root = self.settings.storage_dir
        for deletion in deletions:
            result = await asyncio.to_thread(claims.delete, root, deletion)
            log.info("volume_directory_deleted", volume=deletion.name, path=deletion.path, error=result.error)
            self.outbox.put_volume_result(result)

    def runtime_for(self, pod: pod_pb2.Pod) -> ContainerRuntime | None:
        return self.runtimes.get(pod.spec.runtime_class_name or DEFAULT_RUNTIME)

    def _start_worker(self, pod: pod_pb2.Pod, payloads: list[node_service_pb2.VolumePayload]) -> None:
        runtime = self.runtime_for(pod)
        if runtime is None:
            self._reject(
                pod,
                f'runtime "{pod.spec.runtime_class_name or DEFAULT_RUNTIME}" is not offered '
                f"by node {self.settings.node_name} (it offers {', '.join(self.runtimes)})",
            )
            return
        worker = PodWorker(pod, runtime, self.settings, self.outbox.put, epoch=self.epoch, payloads=payloads)
        self.workers[pod.metadata.uid] = worker
        assert self._group is not None
        self._tasks[pod.metadata.uid] = self._group.create_task(worker.run(), name=f"pod-{pod.metadata.name}")

    def _terminate_worker(self, uid: str) -> None:
        worker = self.workers.pop(uid)
        task = self._tasks.pop(uid)
        task.cancel()
        self.outbox.drop(uid)
        assert self._group is not None
        self._terminating.add(uid)
        self._group.create_task(self._finish_terminate(uid, worker), name=f"stop-{worker.pod.metadata.name}")

    async def _finish_terminate(self, uid: str, worker: PodWorker) -> None:
        try:
            await self._guarded(worker.terminate())
        finally:
            self._terminating.discard(uid)

    def _reject(self, pod: pod_pb2.Pod, message: str) -> None:
        status = pod_pb2.PodStatus(
            phase="Failed", reason="UnsupportedRuntime", message=message, host_ip=self.settings.host_ip
        )
        self.outbox.put(pod, status)

    async def _stop_orphans(self, wanted: set[str]) -> None:
        """Stop and remove this node's containers whose pod is not assigned here, and the
        volumes of pods neither assigned nor being terminated (a pod deleted while the agent
        was down: its tmpfs unmounted, its directories removed)."""
        volumes_dir = self.settings.volumes_dir
        with_volumes = await asyncio.to_thread(volumes.pods_with_volumes, volumes_dir)
        for uid in with_volumes - self._terminating - set(self.workers):  # as of now, not of the listing
            log.info("orphan_volumes_removing", pod_uid=uid)
            await asyncio.to_thread(volumes.remove, volumes_dir, uid)
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

    # -- logs ----------------------------------------------------------------------

    async def find_container(
        self, pod_uid: str, container: str, *, previous: bool
    ) -> tuple[ContainerRuntime, ContainerInfo] | None:
        """The container of a pod's logs: in its worker's runtime, or (a pod gone) in any."""
        worker = self.workers.get(pod_uid)
        runtimes = [worker.runtime] if worker else list(self.runtimes.values())
        return await containers.find_container(runtimes, pod_uid, container, previous=previous)
