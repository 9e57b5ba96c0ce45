"""Init containers in the pure pod lifecycle: order, failures, and the status they give."""

from datetime import UTC, datetime, timedelta

import pytest

from agent.pods import lifecycle
from agent.pods.lifecycle import ContainerTrack, Remove, Start, StatusInputs
from agent.runtime.base import LABEL_ATTEMPT, LABEL_CONTAINER, LABEL_SPEC_HASH, ContainerInfo, State
from protos.corral.v1 import pod_pb2

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
NOW = 100.0


def pod(policy: str = "Always") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = "web", "default", "uid-1"
    p.spec.restart_policy = policy
    p.spec.init_containers.add(name="fetch", image="busybox:1")
    p.spec.init_containers.add(name="migrate", image="busybox:1")
    p.spec.containers.add(name="main", image="busybox:1")
    return p


def spec_of(p: pod_pb2.Pod, name: str) -> pod_pb2.Container:
    return next(c for c in [*p.spec.init_containers, *p.spec.containers] if c.name == name)


def run(p: pod_pb2.Pod, name: str, attempt: int, state: State, exit_code: int | None = None) -> ContainerInfo:
    container = spec_of(p, name)
    return ContainerInfo(
        id=f"{name}{attempt}",
        name=f"{name}{attempt}",
        image=container.image,
        labels={
            LABEL_CONTAINER: name,
            LABEL_ATTEMPT: str(attempt),
            LABEL_SPEC_HASH: lifecycle.spec_hash(container),
        },
        state=state,
        exit_code=exit_code,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=5) if state is State.EXITED else None,
    )


# (name, attempt, state, exit code)
Runs = list[tuple[str, int, State, int | None]]
DONE: Runs = [("fetch", 0, State.EXITED, 0), ("migrate", 0, State.EXITED, 0)]


def runs_of(p: pod_pb2.Pod, runs: Runs) -> dict[str, list[ContainerInfo]]:
    found: dict[str, list[ContainerInfo]] = {}
    for name, attempt, state, code in runs:
        found.setdefault(name, []).append(run(p, name, attempt, state, code))
    return found


@pytest.mark.parametrize(
    ("policy", "runs", "not_before", "expected"),
    [
        pytest.param("Always", [], 0.0, [("fetch", 0)], id="first-init-starts-alone"),
        pytest.param("Always", [("fetch", 0, State.RUNNING, None)], 0.0, [], id="app-waits-for-running-init"),
        pytest.param("Always", [("fetch", 0, State.EXITED, 0)], 0.0, [("migrate", 0)], id="next-init-after-success"),
        pytest.param("Always", DONE, 0.0, [("main", 0)], id="app-after-every-init"),
        pytest.param("Always", [*DONE, ("main", 0, State.RUNNING, None)], 0.0, [], id="done-runs-nothing-again"),
        pytest.param(
            "Always", [("main", 0, State.RUNNING, None)], 0.0, [], id="app-run-means-init-done-even-without-its-runs"
        ),
        pytest.param(
            "Always",
            [("fetch", 0, State.EXITED, 0), ("main", 0, State.EXITED, 1)],
            0.0,
            [("main", 1)],
            id="app-restart-does-not-rerun-init",
        ),
        pytest.param(
            "Always", [("fetch", 0, State.EXITED, 1)], 0.0, [("fetch", 1)], id="failed-init-restarts-under-always"
        ),
        pytest.param(
            "OnFailure", [("fetch", 0, State.EXITED, 2)], 0.0, [("fetch", 1)], id="failed-init-restarts-on-failure"
        ),
        pytest.param("Always", [("fetch", 0, State.EXITED, 1)], 200.0, [], id="failed-init-waits-out-backoff"),
        pytest.param("Never", [("fetch", 0, State.EXITED, 1)], 0.0, [], id="failed-init-under-never-is-final"),
        pytest.param(
            "Never",
            [("fetch", 0, State.EXITED, 0), ("migrate", 0, State.EXITED, 3)],
            0.0,
            [],
            id="second-init-failed-under-never-starts-no-app",
        ),
        pytest.param("Never", DONE, 0.0, [("main", 0)], id="never-still-runs-app-after-init"),
    ],
)
def test_decide_runs_init_containers_in_order(
    policy: str, runs: Runs, not_before: float, expected: list[tuple[str, int]]
) -> None:
    p = pod(policy)
    tracks = {name: ContainerTrack(not_before=not_before) for name in ("fetch", "migrate", "main")}
    actions = lifecycle.decide(p, runs_of(p, runs), tracks, now=NOW)
    assert [(a.container.name, a.attempt) for a in actions if isinstance(a, Start)] == expected


def test_init_runs_beyond_the_previous_are_pruned() -> None:
    p = pod()
    runs = runs_of(p, [("fetch", 0, State.EXITED, 1), ("fetch", 1, State.EXITED, 1), ("fetch", 2, State.EXITED, 0)])
    assert lifecycle.decide(p, runs, {}, now=NOW) == [Remove("fetch0"), Start(spec_of(p, "migrate"), 0)]


def inputs(**tracks: ContainerTrack) -> StatusInputs:
    return StatusInputs(host_ip="10.0.0.5", runtime_name="docker", now_wall=T0, now=NOW, tracks=tracks)


def status_of(policy: str, runs: Runs, **tracks: ContainerTrack) -> pod_pb2.PodStatus:
    p = pod(policy)
    return lifecycle.pod_status(p, runs_of(p, runs), inputs(**tracks), pod_pb2.PodStatus())


def state_of(cs: pod_pb2.ContainerStatus) -> str:
    which = next(n for n in ("running", "waiting", "terminated") if cs.state.HasField(n))
    detail = {"waiting": cs.state.waiting.reason, "terminated": cs.state.terminated.reason, "running": ""}[which]
    return f"{which}:{detail}" if detail else which


@pytest.mark.parametrize(
    ("policy", "runs", "phase", "inits", "app", "initialized"),
    [
        pytest.param(
            "Always",
            [],
            "Pending",
            ["waiting:PodInitializing", "waiting:PodInitializing"],
            "waiting:PodInitializing",
            "False",
            id="not-started",
        ),
        pytest.param(
            "Always",
            [("fetch", 0, State.RUNNING, None)],
            "Pending",
            ["running", "waiting:PodInitializing"],
            "waiting:PodInitializing",
            "False",
            id="first-running",
        ),
        pytest.param(
            "Always",
            [("fetch", 0, State.EXITED, 1)],
            "Pending",
            ["waiting:CrashLoopBackOff", "waiting:PodInitializing"],
            "waiting:PodInitializing",
            "False",
            id="crash-looping",
        ),
        pytest.param(
            "Never",
            [("fetch", 0, State.EXITED, 1)],
            "Failed",
            ["terminated:Error", "waiting:PodInitializing"],
            "waiting:PodInitializing",
            "False",
            id="failed-under-never",
        ),
        pytest.param(
            "Always",
            DONE,
            "Pending",
            ["terminated:Completed", "terminated:Completed"],
            "waiting:PodInitializing",
            "True",
            id="done-app-not-created-yet",
        ),
        pytest.param(
            "Always",
            [*DONE, ("main", 0, State.RUNNING, None)],
            "Running",
            ["terminated:Completed", "terminated:Completed"],
            "running",
            "True",
            id="app-running",
        ),
        pytest.param(
            "Always",
            [("main", 0, State.RUNNING, None)],
            "Running",
            ["terminated:Completed", "terminated:Completed"],
            "running",
            "True",
            id="init-runs-gone-after-app-started",
        ),
    ],
)
def test_status_during_and_after_init(
    policy: str, runs: Runs, phase: str, inits: list[str], app: str, initialized: str
) -> None:
    status = status_of(policy, runs, fetch=ContainerTrack(not_before=140.0))
    assert status.phase == phase
    assert [state_of(cs) for cs in status.init_container_statuses] == inits
    assert [cs.name for cs in status.init_container_statuses] == ["fetch", "migrate"]
    assert state_of(status.container_statuses[0]) == app
    assert {c.type: c.status for c in status.conditions}["Initialized"] == initialized


def test_init_container_ready_only_once_completed() -> None:
    running = status_of("Always", [("fetch", 0, State.RUNNING, None)])
    assert [cs.ready for cs in running.init_container_statuses] == [False, False]
    done = status_of("Always", DONE)
    assert [cs.ready for cs in done.init_container_statuses] == [True, True]
    assert {c.type: c.status for c in done.conditions}["Ready"] == "False"


def test_not_initialized_condition_names_the_waiting_containers() -> None:
    status = status_of("Always", [("fetch", 0, State.EXITED, 0)])
    cond = next(c for c in status.conditions if c.type == "Initialized")
    assert (cond.status, cond.reason) == ("False", "ContainersNotInitialized")
    assert cond.message == "containers with incomplete status: [migrate]"


def test_crash_looping_init_counts_restarts() -> None:
    status = status_of(
        "Always", [("fetch", 0, State.EXITED, 1), ("fetch", 1, State.EXITED, 1)], fetch=ContainerTrack(not_before=120)
    )
    cs = status.init_container_statuses[0]
    assert (cs.restart_count, cs.last_state.terminated.exit_code) == (1, 1)
    assert "back-off 20s" in cs.state.waiting.message


def test_config_error_of_an_init_container_shows_on_it() -> None:
    status = status_of(
        "Always",
        [],
        fetch=ContainerTrack(start_error='secret "db" not found', start_error_reason="CreateContainerConfigError"),
    )
    assert state_of(status.init_container_statuses[0]) == "waiting:CreateContainerConfigError"
    assert status.phase == "Pending"


def test_pod_without_init_containers_keeps_container_creating() -> None:
    p = pod()
    del p.spec.init_containers[:]
    status = lifecycle.pod_status(p, {}, inputs(), pod_pb2.PodStatus())
    assert state_of(status.container_statuses[0]) == "waiting:ContainerCreating"
    assert {c.type: c.status for c in status.conditions}["Initialized"] == "True"
    assert not status.init_container_statuses
