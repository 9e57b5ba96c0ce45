"""One serial worker per pod: observe the runtime, decide, act, report.

The decisions are `lifecycle.decide` (init containers first, one at a time,
sidecars kept running from their turn on, then the app containers); this shell lists the pod's containers,
runs due probes, turns actions into runtime calls, keeps the crash-loop and
image-pull back-offs, and hands changed statuses to the manager. It wakes on
a pod update, and otherwise every `poll_interval` seconds (sooner when a probe
or back-off is due).

Lifecycle hooks (rules in `lifecycle`): a new container's postStart hook runs
right after its start, in the step that started it (a deletion cuts it short);
a failure kills the container. Every stop the agent makes (`_stop`: a kill, a
deletion, the pod leaving the node) runs the container's preStop hook first,
once per container, with the grace period as its timeout; what the hook took
is taken off the SIGTERM's grace. A failed preStop is logged and the stop goes
on.

A pod with a deletionTimestamp is wound down instead (`_wind_down`): no more
starts, restarts or probes; Ready False; an endpoint drain if it was Ready;
SIGTERM to the app containers, then to the sidecars one at a time in reverse
order (`lifecycle.stop_order`), SIGKILL at the deletion deadline; then a status
with `terminated`, re-sent until the pod leaves the assignment set.

A deletion (a deletionTimestamp, or the pod leaving the set) also ends a start
under way at once: an image check or pull is cancelled, and no container is
created after it. A create already sent to the runtime cannot be taken back
(Docker's call runs in a thread): it is waited for, and what it made is killed
and removed at once, never left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from agent.pods import claims, downward_env, hooks, lifecycle, security_context, volumes
from agent.pods.lifecycle import Action, ContainerTrack, Kill, Remove, Start
from agent.pods.pod_volumes import PodVolumes
from agent.pods.service_env import PodNetwork
from agent.probes.result import ProbeResult
from agent.probes.runner import run_probe
from agent.probes.target import resolve_probe_target
from agent.probes.tracker import ProbeState, ProbeTracker, settings_from_proto
from agent.runtime import base
from agent.runtime.base import ContainerInfo, ContainerRuntime, ContainerSpec, PortMapping, State
from agent.runtime.errors import (
    ContainerConfigError,
    ContainerStartError,
    ImageNotFoundError,
    ImagePullError,
    RuntimeFailure,
)
from corral.common.backoff import CrashLoopBackoff
from protos import pod_dns, quantity
from protos import pods as podutil
from protos.corral.v1 import node_service_pb2, pod_pb2
from protos.wellknown import CONFIG_ERRORS, ENV_FROM

log = structlog.get_logger(__name__)

# Seconds between re-sends of a terminated pod's status, until the pod leaves the set.
TERMINATED_RESEND = 5.0
# A kill deadline only counts as brought forward by more than this (the clocks
# it is computed from move a little between two looks).
SHORTER_DEADLINE_SLACK = 0.5
# The longest a postStart hook may run (Kubernetes sets none; a deletion ends it sooner).
POST_START_TIMEOUT = 300.0
# Where volumes live when the agent names no data dir (tests): one directory per process.
DEFAULT_VOLUMES_DIR = Path(tempfile.gettempdir()) / f"corral-volumes-{os.getpid()}"
DEFAULT_STORAGE_DIR = Path(tempfile.gettempdir()) / f"corral-storage-{os.getpid()}"


class StatusSink(Protocol):
    def __call__(self, pod: pod_pb2.Pod, status: pod_pb2.PodStatus, *, terminated: bool = False) -> None: ...


PROBE_FIELDS = (("startup", "startup_probe"), ("liveness", "liveness_probe"), ("readiness", "readiness_probe"))


@dataclass(frozen=True)
class WorkerSettings:
    node_name: str
    host_ip: str
    poll_interval: float = 1.0
    backoff: CrashLoopBackoff = field(default_factory=CrashLoopBackoff)
    # Seconds a terminating pod that was Ready waits before SIGTERM, for
    # endpoints and node proxies to stop sending it connections.
    termination_drain: float = 2.0
    # Service env vars and DNS settings for a new container: (namespace, runtime name) → PodNetwork.
    pod_network: Callable[[str, str], PodNetwork] | None = None
    # Told of every probe run: its kind (liveness, readiness, startup) and whether it succeeded (metrics).
    probe_results: Callable[[str, bool], None] | None = None
    # Where pods' volumes live: <volumes_dir>/<pod uid>/<volume name>, removed with the pod (`volumes`).
    volumes_dir: Path = field(default_factory=lambda: DEFAULT_VOLUMES_DIR)
    # Where persistent volumes live (<data-dir>/storage): the only directories a claim may mount.
    storage_dir: Path = field(default_factory=lambda: DEFAULT_STORAGE_DIR)
    # The node's allocatable resources, for env resourceFieldRef of an unset limit.
    allocatable: dict[str, str] = field(default_factory=dict)


def container_name(pod: pod_pb2.Pod, container: pod_pb2.Container, attempt: int) -> str:
    m = pod.metadata
    return f"corral_{m.namespace}_{m.name}_{container.name}_{m.uid[:8]}_{attempt}"


def build_spec(
    pod: pod_pb2.Pod,
    container: pod_pb2.Container,
    attempt: int,
    *,
    node: str,
    epoch: int,
    extra_env: dict[str, str],
    network: PodNetwork | None = None,
    volumes_dir: Path | None = None,
    host_ip: str = "",
    allocatable: dict[str, str] | None = None,
) -> ContainerSpec:
    """The runtime spec of one run; the pod's own env wins over its envFrom, which wins over
    `extra_env`, which wins over `network`'s (Service variables unless enableServiceLinks is
    false; the cluster's DNS unless dnsPolicy is Default: the node's resolver)."""
    limits = container.resources.limits
    service_links = network.env if network and pod_dns.service_links(pod.spec) else {}
    cluster_dns = network is not None and pod_dns.cluster_dns(pod.spec)
    labels = {
        base.LABEL_MANAGED: "true",
        base.LABEL_POD_UID: pod.metadata.uid,
        base.LABEL_POD_NAME: pod.metadata.name,
        base.LABEL_NAMESPACE: pod.metadata.namespace,
        base.LABEL_CONTAINER: container.name,
        base.LABEL_NODE: node,
        base.LABEL_EPOCH: str(epoch),
        base.LABEL_ATTEMPT: str(attempt),
        base.LABEL_SPEC_HASH: lifecycle.spec_hash(container),
    }
    return ContainerSpec(
        name=container_name(pod, container, attempt),
        image=container.image,
        image_pull_policy=container.image_pull_policy or "IfNotPresent",
        command=list(container.command),
        args=list(container.args),
        env={
            **service_links,
            **extra_env,
            **lifecycle.env_from(pod, container.name),
            **downward_env.env_values(pod, container, downward_env.PodPlace(node, host_ip, allocatable or {})),
        },
        working_dir=container.working_dir,
        ports=[PortMapping(p.container_port, p.host_port, p.protocol or "TCP", p.host_ip) for p in container.ports],
        cpu_limit_millis=quantity.cpu_millis(limits["cpu"]) if "cpu" in limits else None,
        memory_limit_bytes=quantity.memory_bytes(limits["memory"]) if "memory" in limits else None,
        labels=labels,
        dns_servers=list(network.dns_servers) if network and cluster_dns else [],
        dns_search=list(network.dns_search) if network and cluster_dns else [],
        extra_hosts=[(name, alias.ip) for alias in pod.spec.host_aliases for name in alias.hostnames],
        hostname=podutil.hostname(pod),
        domainname=podutil.host_domain(pod),
        **security_context.spec_fields(pod, container, volumes_dir or DEFAULT_VOLUMES_DIR),
    )


class PodWorker:
    def __init__(
        self,
        pod: pod_pb2.Pod,
        runtime: ContainerRuntime,
        settings: WorkerSettings,
        sink: StatusSink,
        *,
        epoch: int,
        extra_env: dict[str, str] | None = None,
        payloads: list[node_service_pb2.VolumePayload] | None = None,
    ) -> None:
        self.pod = pod
        # Volume files to write, made volumes, sizeLimit eviction.
        self.volumes = PodVolumes(settings.volumes_dir, payloads or [])
        self.runtime = runtime
        self.settings = settings
        self.sink = sink
        self.epoch = epoch
        self.extra_env = extra_env or {}
        self.tracks: dict[str, ContainerTrack] = {}
        self.probes: dict[tuple[str, str], ProbeTracker] = {}
        self.started_at: dict[str, float] = {}
        self.exits_seen: set[str] = set()
        self.last_status = pod_pb2.PodStatus()
        self.last_status.CopyFrom(pod.status)
        self.wake = asyncio.Event()
        # Set once the pod is being deleted (a deletionTimestamp) or dropped: starts end.
        self.deleted = asyncio.Event()
        if podutil.is_terminating(pod):
            self.deleted.set()
        # A create sent to the runtime and not answered yet (see `_create`).
        self._creating: asyncio.Task[ContainerInfo] | None = None
        self._stopping = False
        self._termination: lifecycle.Termination | None = None
        self._resend_terminated_at = 0.0
        # Containers whose preStop hook has run (or is running): it runs once per container.
        self._pre_stopped: set[str] = set()
        self._clock = asyncio.get_running_loop().time

    @property
    def uid(self) -> str:
        return self.pod.metadata.uid

    def update(
        self, pod: pod_pb2.Pod, epoch: int, payloads: list[node_service_pb2.VolumePayload] | None = None
    ) -> None:
        """The pod as the newest assignment set has it. Every set carries every pod of the
        node, so a set that only adds a pod must not wake the other nine workers: a worker
        wakes only when its pod's spec, deletion or volume files changed."""
        changed = not _same_for_worker(self.pod, pod)
        self.pod = pod
        self.epoch = epoch
        if self.volumes.offer(payloads or []):  # a changed ConfigMap or Secret: rewrite the files, restart nothing
            changed = True
        if not changed:
            return
        if podutil.is_terminating(pod):
            self.deleted.set()
        for name, track in self.tracks.items():  # a Secret or ConfigMap arrived or changed: try again now
            if track.start_error_reason == "CreateContainerConfigError" and not lifecycle.config_error(pod, name):
                track.not_before = 0.0
        self.wake.set()

    async def run(self) -> None:
        log.info("pod_worker_started", pod=self.pod.metadata.name, namespace=self.pod.metadata.namespace)
        while not self._stopping:
            try:
                await self.step()
            except RuntimeFailure as e:
                log.warning("pod_step_failed", pod=self.pod.metadata.name, error=str(e))
            except Exception:  # one pod's bug must not take the agent down; it is retried
                log.exception("pod_step_crashed", pod=self.pod.metadata.name)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_wait()):
                    await self.wake.wait()

    def _next_wait(self) -> float:
        now = self._clock()
        wait = self.settings.poll_interval
        for track in self.tracks.values():
            if track.not_before > now:
                wait = min(wait, track.not_before - now)
        for (name, kind), tracker in self.probes.items():
            started = self.started_at.get(name)
            if started is not None and not _startup_done(kind, tracker):
                wait = min(wait, max(0.0, tracker.next_due_at(container_started_at=started) - now))
        if self._termination is not None and self._termination.stop_at > now:
            wait = min(wait, self._termination.stop_at - now)
        return max(wait, 0.05)

    # -- one step ------------------------------------------------------------------

    async def observe(self) -> dict[str, list[ContainerInfo]]:
        containers = await self.runtime.list({base.LABEL_POD_UID: self.uid})
        return lifecycle.runs_by_container(containers, base.LABEL_CONTAINER)

    async def step(self) -> None:
        runs = await self.observe()
        if podutil.is_terminating(self.pod):
            await self._wind_down(runs)
            return
        if self.volumes.dirty:
            await self.volumes.sync(self.pod)
        if await self.volumes.check_size_limits(self.pod, self._clock()):
            await self._evict(runs)
            return
        now = self._clock()
        self._note_exits(runs, now)
        await self._run_probes(runs, now)
        actions = lifecycle.decide(self.pod, runs, self.tracks, now)
        for action in actions:
            if self.deleted.is_set() and isinstance(action, Start):
                continue  # the pod is being deleted: nothing more starts
            await self._execute(action, runs)
        if actions:
            runs = await self.observe()
        self._report(runs, self._clock())

    async def _evict(self, runs: dict[str, list[ContainerInfo]]) -> None:
        """Stop every container (with the pod's grace period) and leave the pod Failed, reason Evicted."""
        running = lifecycle.running(runs)
        if running:
            await self._stop_in_order(running)
            runs = await self.observe()
        self._report(runs, self._clock())

    def _track(self, name: str) -> ContainerTrack:
        return self.tracks.setdefault(name, ContainerTrack())

    def _note_exits(self, runs: dict[str, list[ContainerInfo]], now: float) -> None:
        """Start a crash-loop back-off the first time each run is seen exited."""
        for name, history in runs.items():
            latest = history[-1]
            if latest.state is not State.EXITED or latest.id in self.exits_seen:
                continue
            self.exits_seen.add(latest.id)
            ran_for = 0.0
            if latest.started_at and latest.finished_at:
                ran_for = (latest.finished_at - latest.started_at).total_seconds()
            track = self._track(name)
            track.delay = self.settings.backoff.next_delay(track.delay, ran_for=ran_for)
            track.not_before = now + track.delay
            log.info(
                "container_exited",
                pod=self.pod.metadata.name,
                container=name,
                exit_code=latest.exit_code,
                restart_in=track.delay,
            )

    # -- probes ----------------------------------------------------------------------

    async def _run_probes(self, runs: dict[str, list[ContainerInfo]], now: float) -> None:
        jobs = []
        for container in [*filter(podutil.is_sidecar, self.pod.spec.init_containers), *self.pod.spec.containers]:
            history = runs.get(container.name)
            if not history or history[-1].state is not State.RUNNING:
                continue
            latest = history[-1]
            track = self._track(container.name)
            if track.post_start_pending == latest.id:
                continue  # not started until its postStart hook succeeds
            if track.probed_id != latest.id:
                self._reset_probes(container, latest, track, now)
            jobs += self._due_probes(container, latest, track, now)
        if jobs:
            await asyncio.gather(*jobs)

    def _reset_probes(
        self, container: pod_pb2.Container, latest: ContainerInfo, track: ContainerTrack, now: float
    ) -> None:
        track.probed_id = latest.id
        track.liveness = track.readiness = track.startup = ProbeState.UNKNOWN
        self.started_at[container.name] = now
        for kind, attr in PROBE_FIELDS:
            key = (container.name, kind)
            self.probes.pop(key, None)
            if container.HasField(attr):  # type: ignore[arg-type]
                self.probes[key] = ProbeTracker(settings_from_proto(getattr(container, attr)))

    def _due_probes(
        self, container: pod_pb2.Container, latest: ContainerInfo, track: ContainerTrack, now: float
    ) -> list[Coroutine[Any, Any, None]]:
        started = self.started_at[container.name]
        startup_pending = (container.name, "startup") in self.probes and track.startup is not ProbeState.SUCCESS
        jobs: list[Coroutine[Any, Any, None]] = []
        for kind, attr in PROBE_FIELDS:
            tracker = self.probes.get((container.name, kind))
            if tracker is None or (startup_pending and kind != "startup") or _startup_done(kind, tracker):
                continue
            if tracker.due(now, container_started_at=started):
                jobs.append(self._probe(container, latest, track, kind, getattr(container, attr), tracker))
        return jobs

    async def _probe(
        self,
        container: pod_pb2.Container,
        latest: ContainerInfo,
        track: ContainerTrack,
        kind: str,
        probe: pod_pb2.Probe,
        tracker: ProbeTracker,
    ) -> None:
        host, port_map = _reach(latest)
        target = resolve_probe_target(probe, container, host=host, port_map=port_map)
        result = await run_probe(target, runtime=self.runtime, container_id=latest.id, timeout=tracker.settings.timeout)
        outcome = tracker.record(result, self._clock())
        setattr(track, kind, tracker.state)
        if self.settings.probe_results is not None:
            self.settings.probe_results(kind, result.success)
        if outcome.changed:
            log.info(
                "probe_changed",
                pod=self.pod.metadata.name,
                container=container.name,
                probe=kind,
                state=tracker.state.value,
                message=result.message,
            )

    # -- actions ---------------------------------------------------------------------

    async def _execute(self, action: Action, runs: dict[str, list[ContainerInfo]]) -> None:
        if isinstance(action, Start):
            await self._start(action)
        elif isinstance(action, Kill):
            log.info("container_killing", pod=self.pod.metadata.name, id=action.container_id, reason=action.reason)
            info = next((r for history in runs.values() for r in history if r.id == action.container_id), None)
            if info is None:
                await self.runtime.stop(action.container_id, grace_seconds=self._grace())
            else:
                await self._stop(info, self._grace())
        elif isinstance(action, Remove):
            await self.runtime.remove(action.container_id)

    # -- lifecycle hooks -------------------------------------------------------------

    def _spec_of(self, info: ContainerInfo) -> pod_pb2.Container | None:
        name = info.labels.get(base.LABEL_CONTAINER, "")
        return next((c for _, c in podutil.every_container(self.pod.spec) if c.name == name), None)

    async def _run_hook(
        self,
        handler: pod_pb2.LifecycleHandler,
        container: pod_pb2.Container,
        info: ContainerInfo,
        timeout: float,  # noqa: ASYNC109 - the hook's own deadline
    ) -> ProbeResult:
        host, port_map = _reach(info)
        target = lifecycle.hook_target(handler, container, host=host, port_map=port_map)
        return await hooks.run_hook(target, runtime=self.runtime, container_id=info.id, timeout=timeout)

    async def _stop(self, info: ContainerInfo, grace: float) -> None:
        """Stop a running container: its preStop hook first (once), then SIGTERM with what is
        left of `grace`, SIGKILL after it."""
        container = self._spec_of(info)
        if container is not None and info.id not in self._pre_stopped and lifecycle.runs_pre_stop(container, grace):
            self._pre_stopped.add(info.id)
            began = self._clock()
            result = await self._run_hook(container.lifecycle.pre_stop, container, info, grace)
            took = self._clock() - began
            if result.success:
                log.info("container_pre_stop_done", pod=self.pod.metadata.name, container=container.name, took=took)
            else:
                log.warning(
                    "container_hook_failed",
                    reason="FailedPreStopHook",
                    pod=self.pod.metadata.name,
                    container=container.name,
                    message=result.message,
                )
            grace = lifecycle.grace_after_pre_stop(grace, took)
        await self.runtime.stop(info.id, grace_seconds=grace)

    async def _post_start(self, container: pod_pb2.Container, info: ContainerInfo, track: ContainerTrack) -> None:
        """Run the postStart hook of a container just started; kill the container if it fails."""
        track.post_start_pending = info.id
        with contextlib.suppress(RuntimeFailure):  # ContainerCreating until the hook is done (shown if it can be)
            self._report(await self.observe(), self._clock())
        results: list[ProbeResult] = []

        async def hook() -> None:
            results.append(await self._run_hook(container.lifecycle.post_start, container, info, POST_START_TIMEOUT))

        if not await self._unless_deleted(hook()):
            log.info("container_post_start_abandoned", pod=self.pod.metadata.name, container=container.name)
            return
        track.post_start_pending = ""
        if results[0].success:
            log.info("container_post_start_done", pod=self.pod.metadata.name, container=container.name)
            return
        track.post_start_failed = info.id
        track.post_start_error = f"postStart hook failed: {results[0].message}"
        log.warning(
            "container_hook_failed",
            reason="FailedPostStartHook",
            pod=self.pod.metadata.name,
            container=container.name,
            message=results[0].message,
        )
        await self._stop(info, self._grace())

    def _grace(self) -> float:
        """The grace period of a stop: what is left of a terminating pod's, else the pod's own."""
        if self._termination is not None:
            return max(0.0, self._termination.kill_at - self._clock())
        return float(self.pod.spec.termination_grace_period_seconds)

    async def _start(self, action: Start) -> None:
        container, track = action.container, self._track(action.container.name)
        problem = lifecycle.config_error(self.pod, container.name)
        if problem:  # an env var's Secret, ConfigMap or key is missing: CreateContainerConfigError until it is there
            track.start_error, track.start_error_reason = problem, "CreateContainerConfigError"
            self._back_off(track)
            log.warning("container_config_error", pod=self.pod.metadata.name, container=container.name, error=problem)
            return
        network = None
        if self.settings.pod_network is not None:  # the Services known now (not part of the spec hash)
            network = self.settings.pod_network(self.pod.metadata.namespace, self.runtime.name)
        spec = build_spec(
            self.pod,
            container,
            action.attempt,
            node=self.settings.node_name,
            epoch=self.epoch,
            extra_env=self.extra_env,
            network=network,
            volumes_dir=self.settings.volumes_dir,
            host_ip=self.settings.host_ip,
            allocatable=self.settings.allocatable,
        )
        try:
            if not await self._unless_deleted(self.runtime.ensure_image(spec.image, spec.image_pull_policy)):
                log.info(
                    "container_start_abandoned", pod=self.pod.metadata.name, container=container.name, stage="image"
                )
                return
        except (ImageNotFoundError, ImagePullError) as e:
            track.image_error_reason = "ImagePullBackOff" if track.image_error else "ErrImagePull"
            track.image_error = str(e)
            self._back_off(track)
            log.warning("image_unavailable", pod=self.pod.metadata.name, image=spec.image, error=str(e))
            return
        track.image_error = track.image_error_reason = ""
        try:
            if claims.has_claims(self.pod):
                await asyncio.to_thread(claims.prepare, self.pod, self.settings.storage_dir)
            if security_context.has_volumes_to_prepare(self.pod):
                spec = await asyncio.to_thread(self.volumes.prepare, self.pod, container, spec)
            info = await self._create(spec)
        except ContainerStartError as e:
            track.start_error = str(e)
            track.start_error_reason = "CreateContainerConfigError" if isinstance(e, ContainerConfigError) else ""
            self._back_off(track)
            log.warning("container_start_failed", pod=self.pod.metadata.name, container=container.name, error=str(e))
            return
        track.start_error = track.start_error_reason = ""
        if info is None:
            return
        log.info(
            "container_started",
            pod=self.pod.metadata.name,
            container=container.name,
            id=info.id,
            attempt=action.attempt,
        )
        if container.lifecycle.HasField("post_start"):
            await self._post_start(container, info, track)

    async def _unless_deleted(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work``; cancel it, and answer False, as soon as the pod is being deleted."""
        if self.deleted.is_set():
            work.close()
            return False
        task = asyncio.ensure_future(work)
        deleted = asyncio.ensure_future(self.deleted.wait())
        try:
            await asyncio.wait({task, deleted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deleted.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            return False
        task.result()  # its error, if any
        return True

    async def _create(self, spec: ContainerSpec) -> ContainerInfo | None:
        """``runtime.run(spec)``, unless the pod is being deleted; None when it is, before or
        meanwhile. A create the runtime was sent runs to its end even when this worker is
        cancelled (`terminate` waits for it); what it made after a deletion is killed and
        removed at once."""
        if self.deleted.is_set():
            log.info("container_start_abandoned", pod=self.pod.metadata.name, container=spec.name, stage="create")
            return None
        creating = self._creating = asyncio.ensure_future(self.runtime.run(spec))
        creating.add_done_callback(_retrieve)
        deleted = asyncio.ensure_future(self.deleted.wait())
        try:
            await asyncio.wait({creating, deleted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deleted.cancel()
        if not self.deleted.is_set():
            self._creating = None
            return creating.result()
        await self._discard_late(creating)
        return None

    async def _discard_late(self, creating: asyncio.Task[ContainerInfo]) -> None:
        """Wait for a create that raced the pod's deletion; kill and remove what it made."""
        try:
            info = await asyncio.shield(creating)
        except RuntimeFailure:
            return  # nothing was made
        finally:
            if self._creating is creating:
                self._creating = None
        log.info("container_start_abandoned", pod=self.pod.metadata.name, id=info.id, stage="created")
        await self.runtime.stop(info.id, grace_seconds=0)
        await self.runtime.remove(info.id)

    def _back_off(self, track: ContainerTrack) -> None:
        track.delay = self.settings.backoff.next_delay(track.delay, ran_for=0.0)
        track.not_before = self._clock() + track.delay

    # -- status -------------------------------------------------------------------------

    def _report(self, runs: dict[str, list[ContainerInfo]], now: float, *, terminated: bool = False) -> None:
        inputs = lifecycle.StatusInputs(
            host_ip=self.settings.host_ip,
            runtime_name=self.runtime.name,
            now_wall=datetime.now(UTC).replace(microsecond=0),
            now=now,
            tracks=self.tracks,
            terminating=podutil.is_terminating(self.pod),
        )
        status = lifecycle.pod_status(self.pod, runs, inputs, self.last_status)
        if self.volumes.evicted:
            status.phase, status.reason, status.message = "Failed", "Evicted", self.volumes.evicted
        resend = terminated and now >= self._resend_terminated_at
        if _comparable(status) != _comparable(self.last_status) or resend:
            self.last_status = status
            self.sink(self.pod, status, terminated=terminated)
            if terminated:
                self._resend_terminated_at = now + TERMINATED_RESEND

    # -- graceful termination -------------------------------------------------------------

    def _plan_termination(self) -> lifecycle.Termination:
        return lifecycle.plan_termination(
            self.pod,
            self._termination,
            was_ready=podutil.status_is_ready(self.last_status),
            drain=self.settings.termination_drain,
            now=self._clock(),
            now_wall=datetime.now(UTC),
        )

    async def _wind_down(self, runs: dict[str, list[ContainerInfo]]) -> None:
        """One step of a pod being deleted: drain, stop by the deadline, report terminated."""
        first = self._termination is None
        self._termination = self._plan_termination()
        now = self._clock()
        if first:
            log.info(
                "pod_termination_started",
                pod=self.pod.metadata.name,
                namespace=self.pod.metadata.namespace,
                drain=round(self._termination.stop_at - now, 3),
                grace=round(self._termination.kill_at - now, 3),
            )
        running = lifecycle.running(runs)
        self._report(runs, now)
        if running and now < self._termination.stop_at:
            return
        if running:
            await self._stop_by_deadline(running)
            runs = await self.observe()
            log.info("pod_containers_stopped", pod=self.pod.metadata.name, namespace=self.pod.metadata.namespace)
        self._report(runs, self._clock(), terminated=not lifecycle.running(runs))

    async def _stop_by_deadline(self, running: list[ContainerInfo]) -> None:
        """SIGTERM every container now, SIGKILL what still runs at the deadline.
        A deadline brought forward meanwhile (a second delete with a shorter
        grace) applies at once: the stops start again with the shorter grace."""
        assert self._termination is not None
        stops = asyncio.ensure_future(self._stop_all(running))
        try:
            while not stops.done():
                self.wake.clear()
                deadline = self._termination.kill_at
                self._termination = self._plan_termination()
                if self._termination.kill_at < deadline - SHORTER_DEADLINE_SLACK:
                    stops.cancel()
                    await asyncio.wait({stops})
                    stops = asyncio.ensure_future(self._stop_all(running))
                woken = asyncio.ensure_future(self.wake.wait())
                try:
                    await asyncio.wait({stops, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
            await stops
        finally:
            stops.cancel()

    async def _stop_all(self, running: list[ContainerInfo]) -> None:
        log.info(
            "pod_containers_stopping",
            pod=self.pod.metadata.name,
            containers=len(running),
            grace=round(self._grace(), 3),
        )
        await self._stop_in_order(running)

    async def _stop_in_order(self, running: list[ContainerInfo]) -> None:
        """Stop the containers wave by wave (`lifecycle.stop_order`: the app containers, then the
        sidecars in reverse order), each wave with what is left of the grace period."""
        for wave in lifecycle.stop_order(self.pod, running):
            grace = self._grace()
            results = await asyncio.gather(*(self._stop(c, grace) for c in wave), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    # -- termination ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True
        self.deleted.set()
        self.wake.set()

    async def terminate(self) -> None:
        """Stop every container of the pod (gracefully) and remove them, a create that was
        under way included."""
        self.stop()
        creating = self._creating
        if creating is not None:
            await self._discard_late(creating)
        containers = await self.runtime.list({base.LABEL_POD_UID: self.uid})
        running = [c for c in containers if c.state is State.RUNNING]
        await self._stop_in_order(running)
        await asyncio.gather(*(self.runtime.remove(c.id) for c in containers))
        await asyncio.to_thread(volumes.remove, self.settings.volumes_dir, self.uid)
        log.info("pod_terminated", pod=self.pod.metadata.name, containers=len(containers))


def _startup_done(kind: str, tracker: ProbeTracker) -> bool:
    """A startup probe that succeeded runs no more for this run of the container (the
    kubelet's): a later failure of its check must not kill a started container."""
    return kind == "startup" and tracker.state is ProbeState.SUCCESS


def _reach(info: ContainerInfo) -> tuple[str, dict[int, int]]:
    """Where the agent reaches a container's ports: host and container port → published port.

    A container with an address of its own (a Docker bridge's) is reached there on the container
    port, as the kubelet probes the pod IP, published or not; one in the host's network (or
    the fake runtime's) on 127.0.0.1 at the ports it published."""
    if info.ip:
        return info.ip, {}
    return "127.0.0.1", {p.container_port: p.host_port for p in info.ports if p.host_port}


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a task's error as seen: an abandoned create's is not anyone's to handle."""
    if not task.cancelled():
        task.exception()


def _comparable(status: pod_pb2.PodStatus) -> bytes:
    """A status without the CrashLoopBackOff countdown, which changes every second."""
    copy = pod_pb2.PodStatus()
    copy.CopyFrom(status)
    for cs in [*copy.init_container_statuses, *copy.container_statuses]:
        if cs.state.waiting.reason == "CrashLoopBackOff":
            cs.state.waiting.message = ""
    return copy.SerializeToString(deterministic=True)


def _same_for_worker(a: pod_pb2.Pod, b: pod_pb2.Pod) -> bool:
    """Whether a worker would act the same on ``b`` as on ``a``: same spec (resolved Secret
    and ConfigMap values included), same envFrom variables and config errors, and same
    deletion. Status and resourceVersion do not count."""
    return (
        a.spec == b.spec
        and all(a.metadata.annotations.get(k) == b.metadata.annotations.get(k) for k in (CONFIG_ERRORS, ENV_FROM))
        and a.metadata.deletion_timestamp == b.metadata.deletion_timestamp
        and a.metadata.deletion_grace_period_seconds == b.metadata.deletion_grace_period_seconds
    )
