"""The pure pod lifecycle: decide() and pod_status()."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from agent.pods import lifecycle
from agent.pods.lifecycle import ContainerTrack, Kill, Remove, SleepTarget, Start, StatusInputs
from agent.probes.target import ExecTarget, HttpTarget, InvalidTarget
from agent.probes.tracker import ProbeState
from agent.runtime.base import LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_SPEC_HASH, ContainerInfo, PortMapping, State
from protos.corral.v1 import meta_pb2, pod_pb2

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def pod(restart_policy: str = "Always", image: str = "busybox:1", probes: bool = False) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    p.spec.restart_policy = restart_policy
    c = p.spec.containers.add(name="main", image=image)
    if probes:
        c.readiness_probe.tcp_socket.port.int_val = 80
    return p


def run(
    p: pod_pb2.Pod,
    attempt: int,
    state: State,
    *,
    exit_code: int | None = None,
    stale_spec: bool = False,
    ran: float = 5.0,
) -> ContainerInfo:
    container = p.spec.containers[0]
    labels = {
        LABEL_CONTAINER: container.name,
        LABEL_ATTEMPT: str(attempt),
        LABEL_SPEC_HASH: "old" if stale_spec else lifecycle.spec_hash(container),
    }
    finished = T0 + timedelta(seconds=ran) if state is State.EXITED else None
    return ContainerInfo(
        id=f"c{attempt}",
        name=f"n{attempt}",
        image=container.image,
        labels=labels,
        state=state,
        exit_code=exit_code,
        started_at=T0,
        finished_at=finished,
        ports=[PortMapping(80, 32768)],
    )


@pytest.mark.parametrize(
    ("policy", "history", "track", "expected"),
    [
        pytest.param("Always", [], ContainerTrack(), [Start], id="nothing-yet-starts"),
        pytest.param("Always", [], ContainerTrack(not_before=200.0), [], id="start-waits-for-backoff"),
        pytest.param("Always", [(0, State.RUNNING, None)], ContainerTrack(), [], id="running-is-left-alone"),
        pytest.param("Always", [(0, State.EXITED, 0)], ContainerTrack(), [Start], id="always-restarts-success"),
        pytest.param("Always", [(0, State.EXITED, 1)], ContainerTrack(not_before=200.0), [], id="crash-loop-waits"),
        pytest.param("OnFailure", [(0, State.EXITED, 0)], ContainerTrack(), [], id="onfailure-keeps-success"),
        pytest.param("OnFailure", [(0, State.EXITED, 2)], ContainerTrack(), [Start], id="onfailure-restarts"),
        pytest.param("Never", [(0, State.EXITED, 2)], ContainerTrack(), [], id="never-restarts-nothing"),
        pytest.param(
            "Always",
            [(0, State.EXITED, 1), (1, State.EXITED, 1), (2, State.EXITED, 1)],
            ContainerTrack(),
            [Remove, Remove, Start],
            id="restart-prunes-old-runs",
        ),
        pytest.param(
            "Always",
            [(0, State.EXITED, 1), (1, State.EXITED, 1), (2, State.RUNNING, None)],
            ContainerTrack(),
            [Remove],
            id="keeps-one-previous-run",
        ),
        pytest.param(
            "Always", [(0, State.CREATED, None)], ContainerTrack(), [Remove, Start], id="never-started-is-replaced"
        ),
    ],
)
def test_decide(
    policy: str, history: list[tuple[int, State, int | None]], track: ContainerTrack, expected: list[type]
) -> None:
    p = pod(policy)
    runs = {"main": [run(p, a, s, exit_code=code) for a, s, code in history]}
    actions = lifecycle.decide(p, runs, {"main": track}, now=100.0)
    assert [type(a) for a in actions] == expected
    starts = [a for a in actions if isinstance(a, Start)]
    if starts and history:
        assert starts[0].attempt == history[-1][0] + 1


def test_changed_spec_replaces_running_container() -> None:
    p = pod()
    actions = lifecycle.decide(p, {"main": [run(p, 0, State.RUNNING, stale_spec=True)]}, {}, now=0.0)
    assert actions == [Kill("c0", "container spec changed")]


def test_failed_liveness_kills_only_the_probed_run() -> None:
    p = pod()
    latest = run(p, 0, State.RUNNING)
    failing = ContainerTrack(liveness=ProbeState.FAILURE, probed_id="c0")
    assert lifecycle.decide(p, {"main": [latest]}, {"main": failing}, now=0.0) == [Kill("c0", "liveness probe failed")]
    stale = ContainerTrack(liveness=ProbeState.FAILURE, probed_id="other")
    assert lifecycle.decide(p, {"main": [latest]}, {"main": stale}, now=0.0) == []


def test_removed_container_is_stopped() -> None:
    p = pod()
    ghost = ContainerInfo(id="g", name="g", image="x", labels={LABEL_CONTAINER: "gone"}, state=State.RUNNING)
    actions = lifecycle.decide(p, {"main": [run(p, 0, State.RUNNING)], "gone": [ghost]}, {}, now=0.0)
    assert actions == [Kill("g", "container removed from the pod spec")]


def inputs(**tracks: ContainerTrack) -> StatusInputs:
    return StatusInputs(host_ip="10.0.0.5", runtime_name="docker", now_wall=T0, now=100.0, tracks=tracks)


def test_status_running_and_ready_without_probe() -> None:
    p = pod()
    status = lifecycle.pod_status(p, {"main": [run(p, 0, State.RUNNING)]}, inputs(), pod_pb2.PodStatus())
    assert status.phase == "Running"
    cs = status.container_statuses[0]
    assert cs.ready and cs.started
    assert cs.container_id == "docker://c0"
    assert [(x.container_port, x.host_port) for x in cs.ports] == [(80, 32768)]
    assert {c.type: c.status for c in status.conditions}["Ready"] == "True"
    assert status.host_ip == "10.0.0.5"


def test_readiness_gates_ready() -> None:
    p = pod(probes=True)
    runs = {"main": [run(p, 0, State.RUNNING)]}
    not_yet = lifecycle.pod_status(p, runs, inputs(main=ContainerTrack(probed_id="c0")), pod_pb2.PodStatus())
    assert not not_yet.container_statuses[0].ready
    assert {c.type: c.status for c in not_yet.conditions}["Ready"] == "False"
    ready = lifecycle.pod_status(
        p, runs, inputs(main=ContainerTrack(probed_id="c0", readiness=ProbeState.SUCCESS)), not_yet
    )
    assert ready.container_statuses[0].ready
    ready_cond = next(c for c in ready.conditions if c.type == "Ready")
    init_cond = next(c for c in ready.conditions if c.type == "Initialized")
    assert ready_cond.status == "True"
    assert (
        init_cond.last_transition_time
        == next(c for c in not_yet.conditions if c.type == "Initialized").last_transition_time
    )


def test_crash_loop_status() -> None:
    p = pod()
    history = [run(p, 0, State.EXITED, exit_code=1), run(p, 1, State.EXITED, exit_code=1)]
    status = lifecycle.pod_status(
        p, {"main": history}, inputs(main=ContainerTrack(not_before=140.0)), pod_pb2.PodStatus(phase="Running")
    )
    cs = status.container_statuses[0]
    assert cs.state.waiting.reason == "CrashLoopBackOff"
    assert "back-off 40s" in cs.state.waiting.message
    assert cs.restart_count == 1
    assert cs.last_state.terminated.exit_code == 1
    assert status.phase == "Running"


@pytest.mark.parametrize(
    ("policy", "code", "phase"),
    [
        pytest.param("Never", 0, "Succeeded", id="never-success"),
        pytest.param("Never", 3, "Failed", id="never-failure"),
        pytest.param("OnFailure", 0, "Succeeded", id="onfailure-success"),
    ],
)
def test_finished_phases(policy: str, code: int, phase: str) -> None:
    p = pod(policy)
    status = lifecycle.pod_status(
        p, {"main": [run(p, 0, State.EXITED, exit_code=code)]}, inputs(), pod_pb2.PodStatus(phase="Running")
    )
    assert status.phase == phase
    assert status.container_statuses[0].state.terminated.exit_code == code


def test_image_error_is_waiting_and_phase_stays_pending() -> None:
    p = pod()
    track = ContainerTrack(image_error="pull access denied", image_error_reason="ImagePullBackOff")
    status = lifecycle.pod_status(p, {}, inputs(main=track), pod_pb2.PodStatus())
    assert status.phase == "Pending"
    assert status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    assert status.container_statuses[0].state.waiting.message == "pull access denied"


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        pytest.param("", "CreateContainerError", id="start-error"),
        pytest.param("CreateContainerConfigError", "CreateContainerConfigError", id="config-error"),
    ],
)
def test_start_errors_wait_with_their_reason(reason: str, shown: str) -> None:
    track = ContainerTrack(start_error="refused", start_error_reason=reason)
    status = lifecycle.pod_status(pod(), {}, inputs(main=track), pod_pb2.PodStatus())
    assert status.container_statuses[0].state.waiting.reason == shown
    assert status.container_statuses[0].state.waiting.message == "refused"


@pytest.mark.parametrize(
    ("previous", "computed", "result"),
    [
        pytest.param("Running", "Pending", "Running", id="no-going-back"),
        pytest.param("Succeeded", "Running", "Succeeded", id="finished-stays"),
        pytest.param("Pending", "Running", "Running", id="forward"),
        pytest.param("", "Pending", "Pending", id="first"),
    ],
)
def test_forward_phase(previous: str, computed: str, result: str) -> None:
    assert lifecycle.forward_phase(previous, computed) == result


# -- graceful termination ------------------------------------------------------------


def terminating(grace: int, deadline_in: float, *, recorded_grace: int | None = None) -> pod_pb2.Pod:
    """A pod deleted with `grace`, its deadline `deadline_in` seconds after T0."""
    p = pod()
    p.spec.termination_grace_period_seconds = 30
    p.metadata.deletion_timestamp.FromDatetime(T0 + timedelta(seconds=deadline_in))
    p.metadata.deletion_grace_period_seconds = grace if recorded_grace is None else recorded_grace
    return p


@pytest.mark.parametrize(
    ("grace", "deadline_in", "left"),
    [
        pytest.param(10, 10.0, 10.0, id="full-grace"),
        pytest.param(10, 4.0, 4.0, id="seen-late"),
        pytest.param(10, -3.0, 0.0, id="deadline-passed"),
        pytest.param(10, 25.0, 10.0, id="node-clock-behind-never-stretches"),
        pytest.param(0, 5.0, 0.0, id="grace-zero"),
    ],
)
def test_seconds_left(grace: int, deadline_in: float, left: float) -> None:
    assert lifecycle.seconds_left(terminating(grace, deadline_in), T0) == left


@pytest.mark.parametrize(
    ("was_ready", "drain", "grace", "stop_at", "kill_at"),
    [
        pytest.param(True, 2.0, 30, 102.0, 130.0, id="ready-drains-first"),
        pytest.param(False, 2.0, 30, 100.0, 130.0, id="not-ready-stops-at-once"),
        pytest.param(True, 0.0, 30, 100.0, 130.0, id="no-drain-configured"),
        pytest.param(True, 2.0, 1, 100.5, 101.0, id="drain-takes-at-most-half-the-grace"),
        pytest.param(True, 2.0, 0, 100.0, 100.0, id="no-time-left"),
    ],
)
def test_plan_termination_first_look(was_ready: bool, drain: float, grace: int, stop_at: float, kill_at: float) -> None:
    plan = lifecycle.plan_termination(
        terminating(grace, grace), None, was_ready=was_ready, drain=drain, now=100.0, now_wall=T0
    )
    assert plan == lifecycle.Termination(stop_at=stop_at, kill_at=kill_at)


@pytest.mark.parametrize(
    ("grace", "deadline_in", "expected"),
    [
        pytest.param(30, 30.0, lifecycle.Termination(stop_at=102.0, kill_at=130.0), id="same-deadline-keeps"),
        pytest.param(5, 5.0, lifecycle.Termination(stop_at=102.0, kill_at=105.0), id="shorter-grace"),
        pytest.param(1, 1.0, lifecycle.Termination(stop_at=101.0, kill_at=101.0), id="shorter-than-drain"),
        pytest.param(60, 60.0, lifecycle.Termination(stop_at=102.0, kill_at=130.0), id="never-later"),
    ],
)
def test_plan_termination_only_brings_times_forward(
    grace: int, deadline_in: float, expected: lifecycle.Termination
) -> None:
    first = lifecycle.Termination(stop_at=102.0, kill_at=130.0)
    plan = lifecycle.plan_termination(
        terminating(grace, deadline_in), first, was_ready=True, drain=2.0, now=100.0, now_wall=T0
    )
    assert plan == expected


def test_terminating_status_is_not_ready_and_shows_exits_not_crash_loops() -> None:
    p = terminating(30, 30.0)
    draining = lifecycle.pod_status(
        p, {"main": [run(p, 0, State.RUNNING)]}, replace(inputs(), terminating=True), pod_pb2.PodStatus(phase="Running")
    )
    assert {c.type: c.status for c in draining.conditions}["Ready"] == "False"
    assert draining.container_statuses[0].state.HasField("running")
    stopped = lifecycle.pod_status(
        p, {"main": [run(p, 0, State.EXITED, exit_code=143)]}, replace(inputs(), terminating=True), draining
    )
    assert stopped.container_statuses[0].state.terminated.exit_code == 143
    assert not stopped.container_statuses[0].state.HasField("waiting")
    assert {c.type: c.status for c in stopped.conditions}["Ready"] == "False"


def test_running_lists_every_running_run() -> None:
    p = pod()
    runs = {"main": [run(p, 0, State.EXITED, exit_code=1), run(p, 1, State.RUNNING)], "side": []}
    assert [r.id for r in lifecycle.running(runs)] == ["c1"]


# -- lifecycle hooks --------------------------------------------------------------


def hooked(handler: pod_pb2.LifecycleHandler) -> pod_pb2.Pod:
    p = pod()
    p.spec.containers[0].lifecycle.post_start.CopyFrom(handler)
    p.spec.containers[0].ports.add(name="http", container_port=80)
    return p


def test_running_container_waits_for_its_post_start_hook() -> None:
    p = hooked(pod_pb2.LifecycleHandler(exec=pod_pb2.ExecAction(command=["true"])))
    runs = {"main": [run(p, 0, State.RUNNING)]}
    pending = lifecycle.pod_status(p, runs, inputs(main=ContainerTrack(post_start_pending="c0")), pod_pb2.PodStatus())
    cs = pending.container_statuses[0]
    assert cs.state.waiting.reason == "ContainerCreating"
    assert not cs.ready and not cs.started
    assert pending.phase == "Pending"
    assert {c.type: c.status for c in pending.conditions}["Ready"] == "False"
    done = lifecycle.pod_status(p, runs, inputs(main=ContainerTrack()), pending)
    assert done.container_statuses[0].state.HasField("running") and done.container_statuses[0].ready
    assert done.phase == "Running"


def test_failed_post_start_hook_shows_until_the_restart() -> None:
    p = hooked(pod_pb2.LifecycleHandler(exec=pod_pb2.ExecAction(command=["false"])))
    track = ContainerTrack(not_before=110.0, post_start_failed="c0", post_start_error="postStart hook failed: boom")
    status = lifecycle.pod_status(
        p, {"main": [run(p, 0, State.EXITED, exit_code=143)]}, inputs(main=track), pod_pb2.PodStatus()
    )
    waiting = status.container_statuses[0].state.waiting
    assert (waiting.reason, waiting.message) == ("PostStartHookError", "postStart hook failed: boom")
    assert lifecycle.decide(p, {"main": [run(p, 0, State.EXITED, exit_code=143)]}, {"main": track}, 111.0) == [
        Start(p.spec.containers[0], 1)
    ]


def test_hooks_are_not_part_of_the_spec_hash() -> None:
    p = pod()
    before = lifecycle.spec_hash(p.spec.containers[0])
    p.spec.containers[0].lifecycle.pre_stop.sleep.seconds = 5
    assert lifecycle.spec_hash(p.spec.containers[0]) == before


@pytest.mark.parametrize(
    ("handler", "port_map", "target"),
    [
        pytest.param(
            pod_pb2.LifecycleHandler(exec=pod_pb2.ExecAction(command=["sh", "-c", "touch /x"])),
            {},
            ExecTarget(("sh", "-c", "touch /x")),
            id="exec",
        ),
        pytest.param(
            pod_pb2.LifecycleHandler(
                http_get=pod_pb2.HTTPGetAction(port=meta_pb2.IntOrString(str_val="http"), path="/drain")
            ),
            {80: 32768},
            HttpTarget("127.0.0.1", 32768, "/drain"),
            id="http-named-port-mapped",
        ),
        pytest.param(pod_pb2.LifecycleHandler(sleep=pod_pb2.SleepAction(seconds=5)), {}, SleepTarget(5.0), id="sleep"),
        pytest.param(
            pod_pb2.LifecycleHandler(tcp_socket=pod_pb2.TCPSocketAction(port=meta_pb2.IntOrString(int_val=80))),
            {},
            InvalidTarget("tcpSocket is not supported as a lifecycle handler"),
            id="tcp-socket-refused",
        ),
        pytest.param(
            pod_pb2.LifecycleHandler(),
            {},
            InvalidTarget("lifecycle hook has no action: set exec, httpGet or sleep"),
            id="no-action",
        ),
    ],
)
def test_hook_target(handler: pod_pb2.LifecycleHandler, port_map: dict[int, int], target: object) -> None:
    container = hooked(handler).spec.containers[0]
    assert lifecycle.hook_target(handler, container, host="127.0.0.1", port_map=port_map) == target


@pytest.mark.parametrize(
    ("has_hook", "grace", "runs"),
    [
        pytest.param(True, 30.0, True, id="hook-and-grace"),
        pytest.param(True, 0.0, False, id="force-stop-skips-it"),
        pytest.param(False, 30.0, False, id="no-hook"),
    ],
)
def test_runs_pre_stop(has_hook: bool, grace: float, runs: bool) -> None:
    container = pod_pb2.Container(name="main")
    if has_hook:
        container.lifecycle.pre_stop.sleep.seconds = 1
    assert lifecycle.runs_pre_stop(container, grace) is runs
    assert lifecycle.runs_pre_stop(None, grace) is False


@pytest.mark.parametrize(
    ("grace", "took", "left"),
    [
        pytest.param(30.0, 5.0, 25.0, id="hook-time-counts-against-grace"),
        pytest.param(30.0, 29.5, 2.0, id="at-least-two-seconds"),
        pytest.param(30.0, 40.0, 2.0, id="hook-ran-past-grace"),
    ],
)
def test_grace_after_pre_stop(grace: float, took: float, left: float) -> None:
    assert lifecycle.grace_after_pre_stop(grace, took) == left
