"""Pod facts (protos/pods.py) and ownership (protos/owners.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protos import owners, pods
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2

NOW = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)


def pod(
    phase: str = "Running", *, deleting: bool = False, ready: str | None = None, ready_for: float | None = None
) -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="p", uid="p-uid"))
    p.status.phase = phase
    if deleting:
        p.metadata.deletion_timestamp.FromDatetime(NOW)
    if ready is not None:
        c = p.status.conditions.add(type="Ready", status=ready)
        if ready_for is not None:
            c.last_transition_time.FromDatetime(NOW - timedelta(seconds=ready_for))
    return p


@pytest.mark.parametrize(
    ("p", "terminal", "terminating", "active"),
    [
        pytest.param(pod("Pending"), False, False, True, id="pending"),
        pytest.param(pod("Running"), False, False, True, id="running"),
        pytest.param(pod("Unknown"), False, False, True, id="unknown"),
        pytest.param(pod("Succeeded"), True, False, False, id="succeeded"),
        pytest.param(pod("Failed"), True, False, False, id="failed"),
        pytest.param(pod("Running", deleting=True), False, True, False, id="terminating"),
        pytest.param(pod("Failed", deleting=True), True, True, False, id="failed-and-terminating"),
    ],
)
def test_activity(p: pod_pb2.Pod, terminal: bool, terminating: bool, active: bool) -> None:
    assert (pods.is_terminal(p), pods.is_terminating(p), pods.is_active(p)) == (terminal, terminating, active)


def test_is_terminating_reads_any_kind() -> None:
    rs = workloads_pb2.ReplicaSet()
    assert not pods.is_terminating(rs)
    rs.metadata.deletion_timestamp.FromDatetime(NOW)
    assert pods.is_terminating(rs)


def test_phases() -> None:
    assert set(pods.TERMINAL_PHASES) < set(pods.PHASES)
    assert len(pods.PHASES) == 5


@pytest.mark.parametrize(
    ("p", "ready"),
    [
        pytest.param(pod(), False, id="no-condition"),
        pytest.param(pod(ready="True"), True, id="ready"),
        pytest.param(pod(ready="False"), False, id="not-ready"),
        pytest.param(pod(ready="Unknown"), False, id="unknown"),
    ],
)
def test_readiness(p: pod_pb2.Pod, ready: bool) -> None:
    assert pods.is_ready(p) is ready
    assert pods.status_is_ready(p.status) is ready


@pytest.mark.parametrize(
    ("p", "min_ready", "available", "next_in"),
    [
        pytest.param(pod(ready="True", ready_for=5), 0, True, None, id="no-min-ready"),
        pytest.param(pod(ready="True", ready_for=5), 10, False, 5.0, id="not-yet"),
        pytest.param(pod(ready="True", ready_for=10), 10, True, None, id="just-now"),
        pytest.param(pod(ready="True"), 10, False, None, id="no-transition-time-never"),
        pytest.param(pod(ready="False", ready_for=60), 10, False, None, id="not-ready"),
    ],
)
def test_availability(p: pod_pb2.Pod, min_ready: int, available: bool, next_in: float | None) -> None:
    assert pods.is_available(p, min_ready, NOW) is available
    assert pods.next_available([p], min_ready, NOW) == next_in


def test_ready_since() -> None:
    assert pods.ready_since(pod(ready="True", ready_for=7)) == NOW - timedelta(seconds=7)
    assert pods.ready_since(pod(ready="False", ready_for=7)) is None


def test_owner_reference_round_trip() -> None:
    rs = workloads_pb2.ReplicaSet(metadata=meta_pb2.ObjectMeta(name="web-1", uid="rs-uid"))
    p = pod()
    assert owners.controller_ref(p) is None
    p.metadata.owner_references.append(meta_pb2.OwnerReference(kind="Other", uid="x", controller=False))
    p.metadata.owner_references.append(owners.owner_reference(rs))
    ref = owners.controller_ref(p)
    assert ref is not None and (ref.kind, ref.name, ref.uid, ref.block_owner_deletion) == (
        "ReplicaSet",
        "web-1",
        "rs-uid",
        True,
    )
    assert owners.is_controlled_by(p, "rs-uid")
    assert not owners.is_controlled_by(p, "x")


def _c(cpu: int, *, sidecar: bool = False) -> pod_pb2.Container:
    c = pod_pb2.Container(name="c", image="x:1", resources=pod_pb2.ResourceRequirements(requests={"cpu": str(cpu)}))
    if sidecar:
        c.restart_policy = "Always"
    return c


@pytest.mark.parametrize(
    ("inits", "apps", "expected"),
    [
        pytest.param([], [_c(1), _c(2)], 3, id="app-sum"),
        pytest.param([_c(5), _c(2)], [_c(1)], 5, id="largest-plain-init"),
        pytest.param([_c(1, sidecar=True)], [_c(2)], 3, id="sidecar-adds-to-apps"),
        pytest.param([_c(2, sidecar=True), _c(4)], [_c(1)], 6, id="init-plus-sidecars-before-it"),
        pytest.param([_c(4), _c(2, sidecar=True)], [_c(1)], 4, id="sidecar-after-init-not-counted-for-it"),
        pytest.param(
            [_c(1, sidecar=True), _c(3), _c(1, sidecar=True), _c(3)], [_c(1)], 5, id="each-init-with-its-sidecars"
        ),
        pytest.param([_c(1, sidecar=True), _c(1), _c(2, sidecar=True)], [_c(4)], 7, id="apps-and-sidecars-win"),
    ],
)
def test_pod_resources_follow_kubernetes_formula(
    inits: list[pod_pb2.Container], apps: list[pod_pb2.Container], expected: int
) -> None:
    """max(apps + all sidecars, for each init container: its own + the sidecars before it)."""
    spec = pod_pb2.PodSpec(init_containers=inits, containers=apps)
    got = pods.pod_resources(spec, lambda c: {"cpu": int(c.resources.requests["cpu"])}, 0)
    assert got == {"cpu": expected}


def test_is_sidecar() -> None:
    assert pods.is_sidecar(_c(1, sidecar=True))
    assert not pods.is_sidecar(_c(1))
