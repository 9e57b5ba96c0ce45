"""The pod lifecycle as pure functions: what to do next, and what status to report.

`decide` compares a pod's spec with the containers the runtime has for it
and returns actions; `pod_status` turns the same observations into the
PodStatus the agent reports. Both take `now` (monotonic seconds for timers,
wall time only inside the observations), do no I/O and never raise for
anything a container does.

Rules (the kubelet's):
- Each start of a container is a new runtime container with `attempt` one
  higher; `restartCount` is the latest attempt number.
- restartPolicy Always restarts any exit, OnFailure only non-zero exits, Never
  none. Restarts wait out the crash-loop back-off (shown as CrashLoopBackOff).
- A failed liveness or startup probe kills the container; the restart policy
  then decides. Readiness only changes the Ready condition.
- A container whose spec changed (image, command, …) is replaced at once.
- The newest exited run is kept for `logs --previous`; older runs are removed.
- Phase only moves forward: Pending → Running → Succeeded | Failed.

Init containers (`init_progress`, the kubelet's rules): they run one at a
time, in spec order, each to a successful exit, before any app container
starts. A failed one is restarted (after the crash-loop back-off) unless the
pod's restartPolicy is Never, which makes the pod Failed. Init is done once
every init container's newest run exited 0, or once any app container has a
run (its exited init runs may be gone): an agent restart or a new look never
runs them again. Until then the pod is Pending, its Initialized condition
False (ContainersNotInitialized), and the containers not yet run wait as
PodInitializing; a completed init container shows terminated, ready.

Sidecars (init containers with restartPolicy Always, Kubernetes' rules): one
starts in its place among the init containers, and the next init container
waits until it is started (running, its postStart hook done, its startupProbe
passed if it has one). From then on it runs for the pod's life: restarted on
every exit (after the crash-loop back-off) whatever the pod's restartPolicy,
probed like an app container, its readiness part of the pod's Ready. Its
status is in initContainerStatuses with `started` and `ready`. Under
restartPolicy Never or OnFailure a pod whose app containers are all done
(`apps_done`) stops its sidecars, newest declared first, and its phase follows
the app containers; so does one whose init container failed for good. On
termination (`stop_order`) the app containers stop first, then the sidecars,
one at a time in reverse order of declaration, all within the grace period.

Lifecycle hooks (`hook_target`, the kubelet's rules): postStart runs right
after a container starts; until it succeeds the container shows as waiting
(ContainerCreating), is not probed and not ready; a failed hook kills the
container (event FailedPostStartHook) and the restart policy decides, the
wait shown as PostStartHookError. preStop runs before every SIGTERM the agent
sends (never on an exit of the container's own), once per container, within
the grace period, which the hook's time is taken from (`grace_after_pre_stop`).

Graceful termination (the pod has a deletionTimestamp): nothing is started or
restarted any more; `plan_termination` says when the containers get SIGTERM
(after an endpoint drain, if the pod was Ready) and when SIGKILL (the
deletion deadline); the status says Ready False and shows exits as exits,
never as a crash loop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from agent.probes.target import InvalidTarget, ProbeTarget, resolve_probe_target
from agent.probes.tracker import ProbeState
from agent.runtime.base import LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_SPEC_HASH, ContainerInfo, State
from protos.corral.v1 import pod_pb2
from protos.pods import CONTAINERS_READY, POD_INITIALIZED, POD_READY, POD_SCHEDULED, TERMINAL_PHASES, is_sidecar
from protos.wellknown import CONFIG_ERRORS, ENV_FROM

# Set by the control plane on a pod it sends (controlplane/nodeapi/configenv.py):
# CONFIG_ERRORS: JSON, container name → why its env cannot be filled in;
# ENV_FROM: JSON, container name → the variables of its envFrom.


@dataclass
class ContainerTrack:
    """What the agent remembers about one container of a pod between steps."""

    # Monotonic time before which the container must not be (re)started.
    not_before: float = 0.0
    # Current back-off delay in seconds (0: none yet).
    delay: float = 0.0
    # Set while the image cannot be had: ErrImagePull first, then ImagePullBackOff.
    image_error: str = ""
    image_error_reason: str = ""
    start_error: str = ""
    # The waiting reason of a start error ("" → CreateContainerError).
    start_error_reason: str = ""
    liveness: ProbeState = ProbeState.UNKNOWN
    readiness: ProbeState = ProbeState.UNKNOWN
    startup: ProbeState = ProbeState.UNKNOWN
    # The container id the probe states belong to (they reset with every run).
    probed_id: str = ""
    # The container whose postStart hook is running: not Running, not probed, until it succeeds.
    post_start_pending: str = ""
    # The container killed because its postStart hook failed, and why.
    post_start_failed: str = ""
    post_start_error: str = ""


@dataclass(frozen=True)
class Start:
    container: pod_pb2.Container
    attempt: int


@dataclass(frozen=True)
class Kill:
    container_id: str
    reason: str


@dataclass(frozen=True)
class Remove:
    container_id: str


Action = Start | Kill | Remove


def _per_container(pod: pod_pb2.Pod, annotation: str, container: str) -> object:
    raw = pod.metadata.annotations.get(annotation, "")
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found.get(container) if isinstance(found, dict) else None


def config_error(pod: pod_pb2.Pod, container: str) -> str:
    """Why the control plane could not complete the container's config ("" when it could):
    a Secret, ConfigMap or key its env or envFrom references is missing."""
    found = _per_container(pod, CONFIG_ERRORS, container)
    return str(found) if found else ""


def env_from(pod: pod_pb2.Pod, container: str) -> dict[str, str]:
    """The container's variables from envFrom (its env entries win over them)."""
    found = _per_container(pod, ENV_FROM, container)
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items()}


def spec_hash(container: pod_pb2.Container) -> str:
    """A short stable hash of what a running container was made from."""
    relevant = pod_pb2.Container()
    relevant.CopyFrom(container)
    # Values from Secrets are not part of it: a changed Secret reaches the next start, without a restart.
    for env in relevant.env:
        if env.HasField("value_from"):
            env.value = ""
    # Probes, hooks and pull policy do not need a new container when they change.
    for name in ("liveness_probe", "readiness_probe", "startup_probe", "lifecycle"):
        relevant.ClearField(name)
    relevant.image_pull_policy = ""
    return hashlib.sha256(relevant.SerializeToString(deterministic=True)).hexdigest()[:16]


def attempt_of(info: ContainerInfo) -> int:
    try:
        return int(info.labels.get(LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def runs_by_container(containers: Sequence[ContainerInfo], label: str) -> dict[str, list[ContainerInfo]]:
    """Group a pod's runtime containers by container name, oldest attempt first."""
    grouped: dict[str, list[ContainerInfo]] = {}
    for info in containers:
        grouped.setdefault(info.labels.get(label, ""), []).append(info)
    for runs in grouped.values():
        runs.sort(key=attempt_of)
    return grouped


def should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def init_restart_policy(pod: pod_pb2.Pod) -> str:
    """How an init container is restarted: on failure only (it runs to completion), never
    under the pod's restartPolicy Never."""
    return "Never" if pod.spec.restart_policy == "Never" else "OnFailure"


def completed(history: Sequence[ContainerInfo]) -> bool:
    """Whether an init container is done: its newest run exited 0."""
    return bool(history) and history[-1].state is State.EXITED and history[-1].exit_code == 0


def started(container: pod_pb2.Container, latest: ContainerInfo | None, track: ContainerTrack) -> bool:
    """Kubernetes' "started": the run is running, its postStart hook is done and its startupProbe
    (if it has one) has passed."""
    if latest is None or latest.state is not State.RUNNING or track.post_start_pending == latest.id:
        return False
    return not container.HasField("startup_probe") or (
        track.probed_id == latest.id and track.startup is ProbeState.SUCCESS
    )


@dataclass(frozen=True)
class InitProgress:
    """Where a pod's init containers are."""

    # Every init container completed or started (or an app container has run): the app containers may run.
    done: bool
    # The init container waited on now (None when done, or when one failed under restartPolicy Never).
    current: pod_pb2.Container | None = None
    # The sidecars reached so far, in order: they are kept running.
    sidecars: tuple[pod_pb2.Container, ...] = ()
    # An init container failed under restartPolicy Never: the pod is Failed.
    failed: bool = False


def init_progress(
    pod: pod_pb2.Pod, runs: Mapping[str, Sequence[ContainerInfo]], tracks: Mapping[str, ContainerTrack] | None = None
) -> InitProgress:
    """The first init container not completed (a sidecar: not started), in order; done when there
    is none, or when any app container has a run (the kubelet's rule: init never runs again after
    that). A sidecar that a later init container has run after counts as passed (it is restarted,
    but nothing waits for it again)."""
    tracks = tracks or {}
    inits = list(pod.spec.init_containers)
    every_sidecar = tuple(c for c in inits if is_sidecar(c))
    if not inits or any(runs.get(c.name) for c in pod.spec.containers):
        return InitProgress(done=True, sidecars=every_sidecar)
    reached: list[pod_pb2.Container] = []
    for i, container in enumerate(inits):
        history = runs.get(container.name, [])
        if is_sidecar(container):
            reached.append(container)
            latest = history[-1] if history else None
            if any(runs.get(c.name) for c in inits[i + 1 :]):
                continue
            if started(container, latest, tracks.get(container.name, ContainerTrack())):
                continue
            return InitProgress(done=False, current=container, sidecars=tuple(reached))
        if completed(history):
            continue
        if history and history[-1].state is State.EXITED and pod.spec.restart_policy == "Never":
            return InitProgress(done=False, sidecars=tuple(reached), failed=True)
        return InitProgress(done=False, current=container, sidecars=tuple(reached))
    return InitProgress(done=True, sidecars=every_sidecar)


def apps_done(pod: pod_pb2.Pod, runs: Mapping[str, Sequence[ContainerInfo]]) -> bool:
    """Under restartPolicy Never or OnFailure: every app container's newest run exited for good
    (nothing restarts it), so the pod is finished and its sidecars stop."""
    if pod.spec.restart_policy == "Always" or not pod.spec.containers:
        return False
    for container in pod.spec.containers:
        history = runs.get(container.name, [])
        latest = history[-1] if history else None
        if latest is None or latest.state is not State.EXITED:
            return False
        if latest.labels.get(LABEL_SPEC_HASH, "") != spec_hash(container):
            return False
        if should_restart(pod.spec.restart_policy, latest.exit_code):
            return False
    return True


def decide(
    pod: pod_pb2.Pod,
    runs: Mapping[str, list[ContainerInfo]],
    tracks: Mapping[str, ContainerTrack],
    now: float,
) -> list[Action]:
    """The next actions for a pod that should be running on this node: its init containers
    one at a time while init is under way (the sidecars reached kept running), its app
    containers after; the sidecars stopped, newest declared first, once the pod is finished."""
    actions: list[Action] = []
    progress = init_progress(pod, runs, tracks)
    finished = progress.failed or (progress.done and apps_done(pod, runs))
    keep = set() if finished else {c.name for c in progress.sidecars}
    wanted = {c.name for c in pod.spec.containers} | {c.name for c in pod.spec.init_containers}
    for container in pod.spec.init_containers:
        history = runs.get(container.name, [])
        track = tracks.get(container.name, ContainerTrack())
        if container.name in keep:
            actions += _decide_container(container, history, track, now, "Always")
        elif progress.current is not None and container.name == progress.current.name:
            actions += _decide_container(container, history, track, now, init_restart_policy(pod))
        else:  # done, not yet due, or failed for good: only old runs go
            actions += [Remove(r.id) for r in history[:-2] if r.state is not State.RUNNING]
    for container in pod.spec.containers if progress.done else ():
        history = runs.get(container.name, [])
        track = tracks.get(container.name, ContainerTrack())
        actions += _decide_container(container, history, track, now, pod.spec.restart_policy)
    if finished:
        why = "an init container failed" if progress.failed else "the pod's app containers completed"
        for container in reversed(progress.sidecars):
            actions += [Kill(r.id, why) for r in runs.get(container.name, []) if r.state is State.RUNNING]
    for name, history in runs.items():
        if name not in wanted:
            actions += [Kill(r.id, "container removed from the pod spec") for r in history if r.state is State.RUNNING]
            actions += [Remove(r.id) for r in history if r.state is not State.RUNNING]
    return actions


def _decide_container(
    container: pod_pb2.Container,
    history: list[ContainerInfo],
    track: ContainerTrack,
    now: float,
    policy: str,
) -> list[Action]:
    actions: list[Action] = [Remove(r.id) for r in history[:-2] if r.state is not State.RUNNING]
    latest = history[-1] if history else None
    if latest is None:
        return actions + ([Start(container, 0)] if now >= track.not_before else [])
    if latest.state is State.RUNNING:
        if latest.labels.get(LABEL_SPEC_HASH, "") != spec_hash(container):
            return [*actions, Kill(latest.id, "container spec changed")]
        if track.probed_id == latest.id and ProbeState.FAILURE in (track.liveness, track.startup):
            probe = "startup" if track.startup is ProbeState.FAILURE else "liveness"
            return [*actions, Kill(latest.id, f"{probe} probe failed")]
        return actions
    if latest.state is State.CREATED:
        return [*actions, Remove(latest.id), Start(container, attempt_of(latest) + 1)]
    changed = latest.labels.get(LABEL_SPEC_HASH, "") != spec_hash(container)
    if changed or (should_restart(policy, latest.exit_code) and now >= track.not_before):
        # Keep only the run being replaced as "previous".
        older = [Remove(r.id) for r in history[:-1]] if len(history) > 1 else []
        return [*older, Start(container, attempt_of(latest) + 1)]
    return actions


# -- status ----------------------------------------------------------------------

PHASE_ORDER = {"": 0, "Pending": 1, "Running": 2, "Succeeded": 3, "Failed": 3}


@dataclass(frozen=True)
class StatusInputs:
    """Everything `pod_status` needs besides the pod and its runs."""

    host_ip: str
    runtime_name: str
    # Wall-clock time, as a datetime, for condition transitions.
    now_wall: datetime
    # Monotonic now, to say how long a back-off still waits.
    now: float
    tracks: Mapping[str, ContainerTrack] = field(default_factory=dict)
    # The pod is being deleted: not Ready, and exited containers stay exited.
    terminating: bool = False


def _timestamp(target: Timestamp, value: datetime | None) -> None:
    if value is not None:
        target.FromDatetime(value)


def _terminated(info: ContainerInfo, runtime: str) -> pod_pb2.ContainerStateTerminated:
    t = pod_pb2.ContainerStateTerminated(
        exit_code=info.exit_code or 0,
        reason=info.reason or ("Completed" if info.exit_code == 0 else "Error"),
        message=info.message,
        container_id=f"{runtime}://{info.id}",
    )
    _timestamp(t.started_at, info.started_at)
    _timestamp(t.finished_at, info.finished_at)
    return t


@dataclass(frozen=True)
class _Kind:
    """What differs between init and app containers in their status."""

    # The restart policy their exits follow.
    policy: str
    # The waiting reason of one not created yet.
    not_yet: str = "ContainerCreating"
    init: bool = False


def container_status(
    pod: pod_pb2.Pod,
    container: pod_pb2.Container,
    history: list[ContainerInfo],
    track: ContainerTrack,
    inputs: StatusInputs,
    kind: _Kind | None = None,
) -> pod_pb2.ContainerStatus:
    kind = kind or _Kind(pod.spec.restart_policy)
    status = pod_pb2.ContainerStatus(
        name=container.name, image=container.image, ready=False, restart_count=0, started=False
    )
    latest = history[-1] if history else None
    if latest is not None:
        status.restart_count = attempt_of(latest)
        status.container_id = f"{inputs.runtime_name}://{latest.id}"
        status.ip = latest.ip
        status.ports.extend(
            pod_pb2.ContainerPort(
                container_port=p.container_port, host_port=p.host_port, protocol=p.protocol, host_ip=p.host_ip
            )
            for p in latest.ports
        )
    previous = next((r for r in reversed(history[:-1]) if r.state is State.EXITED), None)
    if previous is not None:
        status.last_state.terminated.CopyFrom(_terminated(previous, inputs.runtime_name))
    _fill_state(status, pod, container, latest, track, inputs, kind)
    if kind.init:  # the kubelet's: ready once it exited 0, never while it runs
        status.ready = status.state.terminated.exit_code == 0 and status.state.HasField("terminated")
    return status


def _fill_state(
    status: pod_pb2.ContainerStatus,
    pod: pod_pb2.Pod,
    container: pod_pb2.Container,
    latest: ContainerInfo | None,
    track: ContainerTrack,
    inputs: StatusInputs,
    kind: _Kind,
) -> None:
    waiting = status.state.waiting
    if track.image_error:
        waiting.reason, waiting.message = track.image_error_reason or "ErrImagePull", track.image_error
        return
    if latest is None:
        waiting.reason = (track.start_error_reason or "CreateContainerError") if track.start_error else kind.not_yet
        waiting.message = track.start_error
        return
    if latest.state is State.RUNNING and track.post_start_pending == latest.id:
        waiting.reason = "ContainerCreating"
        return
    if latest.state is State.RUNNING:
        _timestamp(status.state.running.started_at, latest.started_at)
        probed = track.probed_id == latest.id
        status.started = started(container, latest, track)
        ready_probe_ok = not container.HasField("readiness_probe") or (probed and track.readiness is ProbeState.SUCCESS)
        status.ready = status.started and ready_probe_ok
        return
    if (
        latest.state is State.EXITED
        and not inputs.terminating
        and should_restart(kind.policy, latest.exit_code)
        and latest.labels.get(LABEL_SPEC_HASH, "") == spec_hash(container)
    ):
        wait = max(0, round(track.not_before - inputs.now))
        waiting.reason = "CrashLoopBackOff"
        waiting.message = f"back-off {wait}s restarting failed container={container.name} pod={pod.metadata.name}"
        if track.post_start_failed == latest.id:
            waiting.reason, waiting.message = "PostStartHookError", track.post_start_error
        status.last_state.terminated.CopyFrom(_terminated(latest, inputs.runtime_name))
        return
    status.state.terminated.CopyFrom(_terminated(latest, inputs.runtime_name))


def pod_phase(
    pod: pod_pb2.Pod,
    statuses: Sequence[pod_pb2.ContainerStatus],
    init_statuses: Sequence[pod_pb2.ContainerStatus] = (),
    *,
    init_done: bool = True,
) -> str:
    """Kubernetes' phase rules, before the forward-only adjustment: Failed when an init
    container failed under restartPolicy Never, Pending while any is not completed (a sidecar:
    not started, which `init_done` says); sidecars count for nothing after that."""
    pending_init = failed_init = 0
    sidecars = {c.name for c in pod.spec.init_containers if is_sidecar(c)}
    for st in init_statuses:
        if st.name in sidecars:
            continue
        state = _state_name(st)
        if state == "terminated":
            failed_init += st.state.terminated.exit_code != 0
        elif state == "waiting" and st.last_state.HasField("terminated"):
            failed_init += st.last_state.terminated.exit_code != 0
        else:
            pending_init += 1
    if failed_init and pod.spec.restart_policy == "Never":
        return "Failed"
    if pending_init or failed_init or not init_done:
        return "Pending"
    states = [_state_name(s) for s in statuses]
    if any(
        s == "waiting" and not st.restart_count and not st.last_state.HasField("terminated")
        for s, st in zip(states, statuses, strict=True)
    ):
        return "Pending"
    if any(s in ("running", "waiting") for s in states):
        return "Running"
    failed = any(st.state.terminated.exit_code != 0 for st in statuses)
    return "Failed" if failed else "Succeeded"


def _state_name(status: pod_pb2.ContainerStatus) -> str:
    for name in ("running", "terminated", "waiting"):
        if status.state.HasField(name):
            return name
    return "waiting"


def forward_phase(previous: str, computed: str) -> str:
    """Phases never move backwards; a finished pod stays finished."""
    if PHASE_ORDER.get(previous, 0) > PHASE_ORDER.get(computed, 0):
        return previous
    if previous in TERMINAL_PHASES:
        return previous
    return computed


def pod_status(
    pod: pod_pb2.Pod, runs: Mapping[str, list[ContainerInfo]], inputs: StatusInputs, previous: pod_pb2.PodStatus
) -> pod_pb2.PodStatus:
    """The status to report for `pod`, keeping transition times that did not change."""
    status = pod_pb2.PodStatus(host_ip=inputs.host_ip)
    has_init = bool(pod.spec.init_containers)
    app = _Kind(pod.spec.restart_policy, not_yet="PodInitializing" if has_init else "ContainerCreating")
    init = _Kind(init_restart_policy(pod), not_yet="PodInitializing", init=True)
    statuses = [
        container_status(pod, c, runs.get(c.name, []), inputs.tracks.get(c.name, ContainerTrack()), inputs, app)
        for c in pod.spec.containers
    ]
    progress = init_progress(pod, runs, inputs.tracks)
    init_done = progress.done
    # A finished pod's sidecars were stopped for good: their exits show as exits.
    finished = progress.failed or (init_done and apps_done(pod, runs))
    sidecar = _Kind("Never" if finished else "Always", not_yet="PodInitializing")
    init_statuses = [
        _init_status(pod, c, runs.get(c.name, []), inputs, sidecar if is_sidecar(c) else init, init_done)
        for c in pod.spec.init_containers
    ]
    status.init_container_statuses.extend(init_statuses)
    status.container_statuses.extend(statuses)
    status.phase = forward_phase(previous.phase, pod_phase(pod, statuses, init_statuses, init_done=init_done))
    status.pod_ip = _pod_ip(pod, runs) or inputs.host_ip
    status.pod_ips.add(ip=status.pod_ip)
    if previous.HasField("start_time"):
        status.start_time.CopyFrom(previous.start_time)
    else:
        _timestamp(status.start_time, inputs.now_wall)
    sidecar_statuses = [s for c, s in zip(pod.spec.init_containers, init_statuses, strict=True) if is_sidecar(c)]
    ready = (
        bool(statuses)
        and all(s.ready for s in [*statuses, *sidecar_statuses])
        and status.phase == "Running"
        and not inputs.terminating
    )
    waiting_for = [s.name for s in init_statuses if not (s.ready or s.started)]
    initialized = init_done
    for kind, value in ((POD_INITIALIZED, initialized), (CONTAINERS_READY, ready), (POD_READY, ready)):
        _set_condition(status, previous, kind, value, inputs.now_wall)
    if not initialized:
        cond = status.conditions[0]
        cond.reason = "ContainersNotInitialized"
        cond.message = f"containers with incomplete status: [{' '.join(waiting_for)}]"
    _set_condition(status, previous, POD_SCHEDULED, True, inputs.now_wall)
    return status


def _init_status(
    pod: pod_pb2.Pod,
    container: pod_pb2.Container,
    history: list[ContainerInfo],
    inputs: StatusInputs,
    kind: _Kind,
    init_done: bool,
) -> pod_pb2.ContainerStatus:
    """An init container's status; once init is done, one whose runs are gone shows as completed."""
    track = inputs.tracks.get(container.name, ContainerTrack())
    status = container_status(pod, container, history, track, inputs, kind)
    if init_done and not history and not kind.init:
        return status
    if init_done and not history:
        status.state.Clear()
        status.state.terminated.reason = "Completed"
        status.ready = True
    return status


def _set_condition(
    status: pod_pb2.PodStatus, previous: pod_pb2.PodStatus, kind: str, value: bool, now_wall: datetime
) -> None:
    text = "True" if value else "False"
    cond = status.conditions.add(type=kind, status=text)
    old = next((c for c in previous.conditions if c.type == kind), None)
    if old is not None and old.status == text:
        cond.last_transition_time.CopyFrom(old.last_transition_time)
    else:
        _timestamp(cond.last_transition_time, now_wall)


# -- graceful termination ---------------------------------------------------------


@dataclass(frozen=True)
class Termination:
    """When a terminating pod's containers are stopped, in monotonic seconds."""

    # End of the endpoint drain: SIGTERM.
    stop_at: float
    # The deletion deadline: SIGKILL for what still runs.
    kill_at: float


def seconds_left(pod: pod_pb2.Pod, now_wall: datetime) -> float:
    """Seconds until the pod's deletion deadline: never below 0, and never more
    than its grace period (a node clock behind the control plane's does not
    stretch it)."""
    grace = (
        pod.metadata.deletion_grace_period_seconds
        if pod.metadata.HasField("deletion_grace_period_seconds")
        else pod.spec.termination_grace_period_seconds
    )
    deadline = pod.metadata.deletion_timestamp.ToDatetime(tzinfo=UTC)
    return max(0.0, min(float(grace), (deadline - now_wall).total_seconds()))


def plan_termination(
    pod: pod_pb2.Pod, previous: Termination | None, *, was_ready: bool, drain: float, now: float, now_wall: datetime
) -> Termination:
    """The stop and kill times of a terminating pod, first seen or seen again.

    A pod that was Ready waits `drain` seconds before SIGTERM, so Service
    endpoints and node proxies stop sending it new connections first (a
    preStop sleep); the drain takes at most half the time left, so the
    containers always get the other half to exit. A later look only ever
    brings the times forward (a second delete with a shorter grace).
    """
    left = seconds_left(pod, now_wall)
    kill_at = now + left
    if previous is None:
        wait = min(max(drain, 0.0), left / 2) if was_ready else 0.0
        return Termination(stop_at=now + wait, kill_at=kill_at)
    kill_at = min(previous.kill_at, kill_at)
    return Termination(stop_at=min(previous.stop_at, kill_at), kill_at=kill_at)


def stop_order(pod: pod_pb2.Pod, running: Sequence[ContainerInfo]) -> list[list[ContainerInfo]]:
    """The waves a pod's running containers stop in (Kubernetes'): the app containers (and any
    other) together first, then the sidecars one at a time, in reverse order of declaration."""
    sidecars = [c.name for c in pod.spec.init_containers if is_sidecar(c)]
    first = [r for r in running if r.labels.get(LABEL_CONTAINER, "") not in sidecars]
    waves = [first] if first else []
    for name in reversed(sidecars):
        wave = [r for r in running if r.labels.get(LABEL_CONTAINER, "") == name]
        if wave:
            waves.append(wave)
    return waves


def running(runs: Mapping[str, list[ContainerInfo]]) -> list[ContainerInfo]:
    """Every run still running (normally at most the latest of each container)."""
    return [r for history in runs.values() for r in history if r.state is State.RUNNING]


# -- lifecycle hooks ----------------------------------------------------------------

# The least grace a container gets for its SIGTERM after a preStop hook (the kubelet's).
MIN_GRACE_AFTER_PRE_STOP = 2.0


@dataclass(frozen=True)
class SleepTarget:
    """A `sleep` hook handler: wait this many seconds."""

    seconds: float


HookTarget = ProbeTarget | SleepTarget


def hook_target(
    handler: pod_pb2.LifecycleHandler,
    container: pod_pb2.Container,
    *,
    host: str,
    port_map: Mapping[int, int],
) -> HookTarget:
    """What a hook does: exec and httpGet resolve as the probes' actions do (one implementation)."""
    if handler.HasField("sleep"):
        return SleepTarget(float(max(0, handler.sleep.seconds)))
    if handler.HasField("tcp_socket"):
        return InvalidTarget("tcpSocket is not supported as a lifecycle handler")
    if not (handler.HasField("exec") or handler.HasField("http_get")):
        return InvalidTarget("lifecycle hook has no action: set exec, httpGet or sleep")
    probe = pod_pb2.Probe()
    if handler.HasField("exec"):
        probe.exec.CopyFrom(handler.exec)
    else:
        probe.http_get.CopyFrom(handler.http_get)
    return resolve_probe_target(probe, container, host=host, port_map=port_map)


def runs_pre_stop(container: pod_pb2.Container | None, grace: float) -> bool:
    """Whether a stop runs the container's preStop hook first: it has one and the stop has a
    grace period (a stop without one, a force delete, skips it, as in the kubelet)."""
    return container is not None and container.lifecycle.HasField("pre_stop") and grace > 0


def grace_after_pre_stop(grace: float, hook_took: float) -> float:
    """The SIGTERM's grace period after a preStop hook that took `hook_took` of `grace` seconds:
    what is left, but at least MIN_GRACE_AFTER_PRE_STOP."""
    return max(grace - hook_took, MIN_GRACE_AFTER_PRE_STOP)


def _pod_ip(pod: pod_pb2.Pod, runs: Mapping[str, Sequence[ContainerInfo]]) -> str:
    """The pod's address: its first app container's (each Docker container has its own address
    on the pod network), else any container's; "" when none has one (the host's network)."""
    apps = [c.name for c in pod.spec.containers]
    order = apps + [name for name in runs if name not in apps]
    for name in order:
        run = runs.get(name)
        if run and run[-1].ip:
            return run[-1].ip
    return ""
