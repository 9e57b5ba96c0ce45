"""`corral get pods`: the READY, STATUS and RESTARTS columns as kubectl shows them, init containers
and sidecars included."""

from datetime import UTC, datetime

import pytest

from corral.cli import printers
from protos.corral.v1 import pod_pb2

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def waiting(name: str, reason: str, restarts: int = 0) -> pod_pb2.ContainerStatus:
    s = pod_pb2.ContainerStatus(name=name, ready=False, restart_count=restarts)
    s.state.waiting.reason = reason
    return s


def running(name: str, ready: bool = True) -> pod_pb2.ContainerStatus:
    s = pod_pb2.ContainerStatus(name=name, ready=ready, restart_count=0)
    s.state.running.SetInParent()
    return s


def terminated(name: str, code: int, reason: str = "", signal: int = 0) -> pod_pb2.ContainerStatus:
    s = pod_pb2.ContainerStatus(name=name, ready=code == 0, restart_count=0)
    s.state.terminated.exit_code, s.state.terminated.reason, s.state.terminated.signal = code, reason, signal
    return s


def pod(
    phase: str, inits: list[pod_pb2.ContainerStatus], apps: list[pod_pb2.ContainerStatus], n_inits: int = 2
) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = "web"
    p.metadata.creation_timestamp.FromDatetime(NOW)
    for i in range(n_inits):
        p.spec.init_containers.add(name=f"init{i}")
    p.spec.containers.add(name="main")
    p.status.phase = phase
    p.status.init_container_statuses.extend(inits)
    p.status.container_statuses.extend(apps)
    return p


DONE = [terminated("init0", 0, "Completed"), terminated("init1", 0, "Completed")]
INITIALIZING = waiting("main", "PodInitializing")


@pytest.mark.parametrize(
    ("p", "ready", "status", "restarts"),
    [
        pytest.param(
            pod("Pending", [waiting("init0", "PodInitializing"), waiting("init1", "PodInitializing")], [INITIALIZING]),
            "0/1",
            "Init:0/2",
            "0",
            id="not-started",
        ),
        pytest.param(
            pod("Pending", [terminated("init0", 0, "Completed"), running("init1", False)], [INITIALIZING]),
            "0/1",
            "Init:1/2",
            "0",
            id="second-running",
        ),
        pytest.param(
            pod(
                "Pending",
                [waiting("init0", "CrashLoopBackOff", 3), waiting("init1", "PodInitializing")],
                [INITIALIZING],
            ),
            "0/1",
            "Init:CrashLoopBackOff",
            "3",
            id="crash-loop",
        ),
        pytest.param(
            pod("Failed", [terminated("init0", 1, "Error"), waiting("init1", "PodInitializing")], [INITIALIZING]),
            "0/1",
            "Init:Error",
            "0",
            id="error",
        ),
        pytest.param(
            pod("Pending", [terminated("init0", 137, signal=9)], [INITIALIZING], n_inits=1),
            "0/1",
            "Init:Signal:9",
            "0",
            id="signal-without-reason",
        ),
        pytest.param(
            pod("Pending", [terminated("init0", 3)], [INITIALIZING], n_inits=1),
            "0/1",
            "Init:ExitCode:3",
            "0",
            id="exit-code-without-reason",
        ),
        pytest.param(
            pod("Pending", [waiting("init0", "CreateContainerConfigError")], [INITIALIZING], n_inits=1),
            "0/1",
            "Init:CreateContainerConfigError",
            "0",
            id="config-error",
        ),
        pytest.param(pod("Pending", DONE, [INITIALIZING]), "0/1", "PodInitializing", "0", id="done-app-not-created"),
        pytest.param(pod("Running", DONE, [running("main")]), "1/1", "Running", "0", id="running"),
        pytest.param(pod("Pending", [], [], n_inits=0), "0/1", "Pending", "0", id="no-init-containers"),
    ],
)
def test_pod_status_column(p: pod_pb2.Pod, ready: str, status: str, restarts: str) -> None:
    assert printers.pod_row(p, NOW, wide=False)[:3] == [ready, status, restarts]


def sidecar_pod(
    phase: str, inits: list[pod_pb2.ContainerStatus], apps: list[pod_pb2.ContainerStatus], *, initialized: bool = False
) -> pod_pb2.Pod:
    """A pod with a sidecar (`proxy`), then a plain init container (`setup`), then `main`."""
    p = pod(phase, inits, apps, n_inits=0)
    p.spec.init_containers.add(name="proxy", restart_policy="Always")
    p.spec.init_containers.add(name="setup")
    if initialized:
        p.status.conditions.add(type="Initialized", status="True")
    return p


def started(s: pod_pb2.ContainerStatus, restarts: int = 0) -> pod_pb2.ContainerStatus:
    s.started, s.restart_count = True, restarts
    return s


@pytest.mark.parametrize(
    ("p", "ready", "status", "restarts"),
    [
        pytest.param(
            sidecar_pod("Pending", [waiting("proxy", "PodInitializing"), waiting("setup", "PodInitializing")], []),
            "0/2",
            "Init:0/2",
            "0",
            id="sidecar-not-started",
        ),
        pytest.param(
            sidecar_pod("Pending", [started(running("proxy")), running("setup", False)], [INITIALIZING]),
            "1/2",
            "Init:1/2",
            "0",
            id="sidecar-started-init-running",
        ),
        pytest.param(
            sidecar_pod(
                "Running",
                [started(running("proxy")), terminated("setup", 0, "Completed")],
                [running("main")],
                initialized=True,
            ),
            "2/2",
            "Running",
            "0",
            id="sidecar-and-app-ready",
        ),
        pytest.param(
            sidecar_pod(
                "Running",
                [started(running("proxy", ready=False), 2), terminated("setup", 0, "Completed")],
                [running("main")],
                initialized=True,
            ),
            "1/2",
            "Running",
            "2",
            id="sidecar-not-ready-restarts-count",
        ),
        pytest.param(
            sidecar_pod(
                "Running",
                [waiting("proxy", "CrashLoopBackOff", 1), terminated("setup", 0, "Completed")],
                [running("main")],
                initialized=True,
            ),
            "1/2",
            "Running",
            "1",
            id="sidecar-crashing-after-init",
        ),
    ],
)
def test_pod_row_with_a_sidecar(p: pod_pb2.Pod, ready: str, status: str, restarts: str) -> None:
    assert printers.pod_row(p, NOW, wide=False)[:3] == [ready, status, restarts]
