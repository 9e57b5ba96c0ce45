"""Sidecars (init containers with restartPolicy Always) in the pure pod lifecycle: ordering,
restarts whatever the pod's policy, job completion, termination order and status."""

from datetime import UTC, datetime, timedelta

import pytest

from agent.pods import lifecycle
from agent.pods.lifecycle import Action, ContainerTrack, Kill, Start, StatusInputs
from agent.probes.tracker import ProbeState
from agent.runtime.base import LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_SPEC_HASH, ContainerInfo, State
from protos.corral.v1 import pod_pb2

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NOW = 100.0
R, X = State.RUNNING, State.EXITED


def pod(policy: str = "Always", *, startup_probe: bool = False) -> pod_pb2.Pod:
    """`proxy` (a sidecar), `setup` (a plain init container), `log` (a second sidecar), `main`."""
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    p.spec.restart_policy = policy
    proxy = p.spec.init_containers.add(name="proxy", image="busybox:1", restart_policy="Always")
    if startup_probe:
        proxy.startup_probe.exec.command.append("true")
    p.spec.init_containers.add(name="setup", image="busybox:1")
    p.spec.init_containers.add(name="log", image="busybox:1", restart_policy="Always")
    p.spec.containers.add(name="main", image="busybox:1")
    return p


def run(p: pod_pb2.Pod, name: str, attempt: int, state: State, exit_code: int | None = None) -> ContainerInfo:
    container = next(c for c in [*p.spec.init_containers, *p.spec.containers] if c.name == name)
    return ContainerInfo(
        id=f"{name}{attempt}",
        name=f"{name}{attempt}",
        image=container.image,
        labels={LABEL_CONTAINER: name, LABEL_ATTEMPT: str(attempt), LABEL_SPEC_HASH: lifecycle.spec_hash(container)},
        state=state,
        exit_code=exit_code,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=5) if state is X else None,
    )


Runs = list[tuple[str, int, State, int | None]]


def runs_of(p: pod_pb2.Pod, runs: Runs) -> dict[str, list[ContainerInfo]]:
    found: dict[str, list[ContainerInfo]] = {}
    for name, attempt, state, code in runs:
        found.setdefault(name, []).append(run(p, name, attempt, state, code))
    return found


def brief(actions: list[Action]) -> list[tuple[str, object]]:
    """Starts as (name, attempt), kills as ("kill", id); removals are left out."""
    out: list[tuple[str, object]] = []
    for a in actions:
        if isinstance(a, Start):
            out.append((a.container.name, a.attempt))
        elif isinstance(a, Kill):
            out.append(("kill", a.container_id))
    return out


STARTED = ContainerTrack(startup=ProbeState.SUCCESS, probed_id="proxy0")
INIT_DONE: Runs = [("proxy", 0, R, None), ("setup", 0, X, 0), ("log", 0, R, None)]


@pytest.mark.parametrize(
    ("policy", "runs", "tracks", "expected"),
    [
        pytest.param("Always", [], {}, [("proxy", 0)], id="sidecar-starts-first"),
        pytest.param("Always", [("proxy", 0, R, None)], {}, [("setup", 0)], id="init-after-sidecar-started"),
        pytest.param(
            "Always", [("proxy", 0, State.CREATED, None)], {}, [("proxy", 1)], id="created-not-running-not-started"
        ),
        pytest.param("Always", [("proxy", 0, R, None), ("setup", 0, R, None)], {}, [], id="init-runs-beside-sidecar"),
        pytest.param(
            "Always",
            [("proxy", 0, R, None), ("setup", 0, X, 0)],
            {},
            [("log", 0)],
            id="second-sidecar-after-init-completed",
        ),
        pytest.param("Always", INIT_DONE, {}, [("main", 0)], id="app-after-sidecars-and-init"),
        pytest.param("Always", [*INIT_DONE, ("main", 0, R, None)], {}, [], id="all-running-nothing-to-do"),
        pytest.param(
            "Never",
            [("proxy", 0, X, 1), ("setup", 0, R, None)],
            {},
            [("proxy", 1)],
            id="sidecar-restarts-under-never-during-init",
        ),
        pytest.param(
            "Never",
            [("proxy", 0, X, 0), ("setup", 0, X, 0), ("log", 0, R, None), ("main", 0, R, None)],
            {},
            [("proxy", 1)],
            id="sidecar-restarts-after-exit-0-under-never",
        ),
        pytest.param(
            "Never",
            [("proxy", 0, X, 1), ("setup", 0, X, 0), ("log", 0, R, None), ("main", 0, R, None)],
            {"proxy": ContainerTrack(not_before=NOW + 10)},
            [],
            id="sidecar-restart-waits-for-backoff",
        ),
        pytest.param(
            "Never",
            [*INIT_DONE, ("main", 0, X, 0)],
            {},
            [("kill", "log0"), ("kill", "proxy0")],
            id="job-done-stops-sidecars-newest-first",
        ),
        pytest.param(
            "OnFailure",
            [*INIT_DONE, ("main", 0, X, 1)],
            {},
            [("main", 1)],
            id="on-failure-app-failed-is-not-done",
        ),
        pytest.param(
            "Never",
            [("proxy", 0, X, 137), ("setup", 0, X, 0), ("log", 0, X, 137), ("main", 0, X, 0)],
            {},
            [],
            id="job-done-sidecars-not-restarted",
        ),
        pytest.param(
            "Never",
            [("proxy", 0, R, None), ("setup", 0, X, 1)],
            {},
            [("kill", "proxy0")],
            id="init-failed-for-good-stops-sidecars",
        ),
        pytest.param(
            "Always",
            [("proxy", 0, R, None), ("setup", 0, X, 0), ("log", 0, R, None), ("main", 0, R, None)],
            {"proxy": ContainerTrack(liveness=ProbeState.FAILURE, probed_id="proxy0")},
            [("kill", "proxy0")],
            id="sidecar-liveness-failure-kills",
        ),
    ],
)
def test_decide_with_sidecars(
    policy: str, runs: Runs, tracks: dict[str, ContainerTrack], expected: list[tuple[str, object]]
) -> None:
    p = pod(policy)
    assert brief(lifecycle.decide(p, runs_of(p, runs), tracks, now=NOW)) == expected


@pytest.mark.parametrize(
    ("tracks", "expected"),
    [
        pytest.param({}, [], id="startup-probe-pending"),
        pytest.param({"proxy": ContainerTrack(startup=ProbeState.SUCCESS, probed_id="old")}, [], id="other-run"),
        pytest.param({"proxy": STARTED}, [("setup", 0)], id="startup-probe-passed"),
        pytest.param(
            {"proxy": ContainerTrack(startup=ProbeState.SUCCESS, probed_id="proxy0", post_start_pending="proxy0")},
            [],
            id="post-start-running",
        ),
    ],
)
def test_next_init_waits_for_the_sidecar_to_be_started(
    tracks: dict[str, ContainerTrack], expected: list[tuple[str, object]]
) -> None:
    p = pod(startup_probe=True)
    assert brief(lifecycle.decide(p, runs_of(p, [("proxy", 0, R, None)]), tracks, now=NOW)) == expected


def test_agent_restart_reruns_no_completed_init_and_keeps_sidecars() -> None:
    """A fresh agent (no tracks) sees the sidecars running and the app running: nothing starts
    again, even where the startup probe has not been seen to pass yet."""
    p = pod(startup_probe=True)
    runs = runs_of(p, [*INIT_DONE, ("main", 0, R, None)])
    assert lifecycle.decide(p, runs, {}, now=NOW) == []
    runs = runs_of(p, [("proxy", 0, X, 137), ("setup", 0, X, 0), ("log", 0, R, None), ("main", 0, R, None)])
    assert brief(lifecycle.decide(p, runs, {}, now=NOW)) == [("proxy", 1)]


def test_stop_order_apps_first_then_sidecars_in_reverse() -> None:
    p = pod()
    running = [run(p, n, 0, R) for n in ("proxy", "log", "main")]
    waves = lifecycle.stop_order(p, running)
    assert [[r.id for r in wave] for wave in waves] == [["main0"], ["log0"], ["proxy0"]]
    assert [[r.id for r in w] for w in lifecycle.stop_order(p, running[:1])] == [["proxy0"]]


def inputs(**tracks: ContainerTrack) -> StatusInputs:
    return StatusInputs(host_ip="10.0.0.5", runtime_name="docker", now_wall=T0, now=NOW, tracks=tracks)


def status_of(policy: str, runs: Runs, **tracks: ContainerTrack) -> pod_pb2.PodStatus:
    p = pod(policy)
    return lifecycle.pod_status(p, runs_of(p, runs), inputs(**tracks), pod_pb2.PodStatus())


def conditions(status: pod_pb2.PodStatus) -> dict[str, str]:
    return {c.type: c.status for c in status.conditions}


def test_running_sidecars_show_started_and_ready_and_count_for_pod_ready() -> None:
    status = status_of("Always", [*INIT_DONE, ("main", 0, R, None)])
    proxy, setup, log = status.init_container_statuses
    assert (proxy.started, proxy.ready, log.started, log.ready) == (True, True, True, True)
    assert setup.state.terminated.reason == "Completed"
    assert status.phase == "Running"
    assert conditions(status) == {
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
        "PodScheduled": "True",
    }


def test_an_unready_sidecar_keeps_the_pod_not_ready() -> None:
    p = pod()
    p.spec.init_containers[0].readiness_probe.exec.command.append("true")
    runs = runs_of(p, [*INIT_DONE, ("main", 0, R, None)])
    track = ContainerTrack(readiness=ProbeState.FAILURE, probed_id="proxy0")
    status = lifecycle.pod_status(p, runs, inputs(proxy=track), pod_pb2.PodStatus())
    assert not status.init_container_statuses[0].ready
    assert status.init_container_statuses[0].started
    assert status.container_statuses[0].ready
    assert conditions(status)["Ready"] == "False"


def test_pending_while_a_sidecar_is_not_started() -> None:
    status = status_of("Always", [("proxy", 0, X, 1)])
    assert status.phase == "Pending"
    assert status.init_container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    assert conditions(status)["Initialized"] == "False"


def test_crashed_sidecar_after_init_restarts_and_pod_stays_running() -> None:
    status = status_of("Never", [("proxy", 0, X, 1), ("setup", 0, X, 0), ("log", 0, R, None), ("main", 0, R, None)])
    assert status.phase == "Running"
    assert status.init_container_statuses[0].state.waiting.reason == "CrashLoopBackOff"


@pytest.mark.parametrize(
    ("code", "phase"), [pytest.param(0, "Succeeded", id="succeeded"), pytest.param(1, "Failed", id="failed")]
)
def test_job_phase_follows_the_app_containers_while_sidecars_run(code: int, phase: str) -> None:
    status = status_of("Never", [*INIT_DONE, ("main", 0, X, code)])
    assert status.phase == phase


def test_stopped_sidecars_of_a_finished_pod_show_terminated() -> None:
    status = status_of("Never", [("proxy", 0, X, 137), ("setup", 0, X, 0), ("log", 0, X, 137), ("main", 0, X, 0)])
    assert status.phase == "Succeeded"
    assert status.init_container_statuses[0].state.terminated.exit_code == 137
