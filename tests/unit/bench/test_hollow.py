"""Hollow nodes (bench/hollow.py): the share of nodes each process serves, what an
assignment set asks of a node, the status reported, and the pods' state machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from hollow import Changes, HollowPods, Phase, changes, fake_runs, hollow_pod_status, share

from protos import pods as podutil
from protos.corral.v1 import node_service_pb2, pod_pb2


def pod(uid: str, *, deleting: bool = False, init: bool = False, probe: bool = False) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.namespace, p.metadata.name, p.metadata.uid = "default", f"web-{uid}", uid
    p.spec.node_name = "n1"
    c = p.spec.containers.add(name="main", image="app:1")
    if probe:
        c.readiness_probe.tcp_socket.port.int_val = 80
    if init:
        p.spec.init_containers.add(name="setup", image="app:1")
    if deleting:
        p.metadata.deletion_timestamp.FromDatetime(datetime(2026, 12, 7, tzinfo=UTC))
    return p


def assignment(epoch: int, *pods: pod_pb2.Pod) -> node_service_pb2.AssignmentSet:
    return node_service_pb2.AssignmentSet(epoch=epoch, pods=pods)


@pytest.mark.parametrize(
    ("total", "processes", "expected"),
    [
        pytest.param(10, 1, [range(10)], id="one-process"),
        pytest.param(10, 2, [range(5), range(5, 10)], id="even"),
        pytest.param(10, 3, [range(4), range(4, 7), range(7, 10)], id="remainder-to-the-first"),
        pytest.param(2, 3, [range(1), range(1, 2), range(2, 2)], id="more-processes-than-nodes"),
        pytest.param(0, 2, [range(0), range(0)], id="no-nodes"),
    ],
)
def test_shares_cover_every_node_once(total: int, processes: int, expected: list[range]) -> None:
    got = [share(total, processes, i) for i in range(processes)]
    assert got == expected
    assert sorted(i for r in got for i in r) == list(range(total))


@pytest.mark.parametrize(("processes", "index"), [pytest.param(0, 0, id="none"), pytest.param(2, 2, id="past-end")])
def test_share_out_of_range(processes: int, index: int) -> None:
    with pytest.raises(ValueError):
        share(10, processes, index)


@pytest.mark.parametrize(
    ("known", "pods", "expected"),
    [
        pytest.param({}, [pod("a")], Changes(start=[pod("a")]), id="new-pod-starts"),
        pytest.param({"a": Phase.RUNNING}, [pod("a")], Changes(), id="known-pod-unchanged"),
        pytest.param({"a": Phase.STARTING}, [pod("a")], Changes(), id="starting-pod-not-started-twice"),
        pytest.param(
            {"a": Phase.RUNNING},
            [pod("a", deleting=True)],
            Changes(wind_down=[pod("a", deleting=True)]),
            id="deletion-winds-down",
        ),
        pytest.param(
            {"a": Phase.STARTING},
            [pod("a", deleting=True)],
            Changes(wind_down=[pod("a", deleting=True)]),
            id="deleted-while-starting",
        ),
        pytest.param({"a": Phase.TERMINATING}, [pod("a", deleting=True)], Changes(), id="winding-down-once"),
        pytest.param(
            {},
            [pod("a", deleting=True)],
            Changes(wind_down=[pod("a", deleting=True)]),
            id="new-and-deleted-never-starts",
        ),
        pytest.param({"a": Phase.RUNNING, "b": Phase.TERMINATING}, [], Changes(drop=["a", "b"]), id="left-the-set"),
    ],
)
def test_changes(known: dict[str, Phase], pods: list[pod_pb2.Pod], expected: Changes) -> None:
    assert changes(known, assignment(1, *pods)) == expected


def status_of(p: pod_pb2.Pod, *, running: bool = True) -> pod_pb2.PodStatus:
    from agent.runtime.base import ContainerInfo, State

    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    started = {}
    if running:
        started["main"] = ContainerInfo(
            id="c1", name="x", image="app:1", labels={}, state=State.RUNNING, started_at=now
        )
    runs = fake_runs(p, started, now)
    return hollow_pod_status(
        p, runs, host_ip="10.0.0.1", runtime_name="fake", now=0.0, now_wall=now, previous=pod_pb2.PodStatus()
    )


@pytest.mark.parametrize(
    ("p", "phase", "ready"),
    [
        pytest.param(pod("a"), "Running", True, id="running-ready"),
        pytest.param(pod("a", probe=True), "Running", True, id="readiness-probe-taken-as-passed"),
        pytest.param(pod("a", init=True), "Running", True, id="init-container-completed"),
        pytest.param(pod("a", deleting=True), "Running", False, id="terminating-not-ready"),
    ],
)
def test_status_as_the_agent_builds_it(p: pod_pb2.Pod, phase: str, ready: bool) -> None:
    status = status_of(p)
    assert status.phase == phase
    assert podutil.status_is_ready(status) is ready
    assert status.host_ip == "10.0.0.1"
    assert status.container_statuses[0].container_id == "fake://c1"


def test_init_container_shows_completed() -> None:
    status = status_of(pod("a", init=True))
    assert status.init_container_statuses[0].state.terminated.reason == "Completed"
    assert status.init_container_statuses[0].state.terminated.exit_code == 0


# -- the state machine, driven by assignment sets --------------------------------------


@pytest.fixture
async def node() -> AsyncIterator[HollowPods]:
    pods = HollowPods("n1", "10.0.0.1", start_delay=0.0, termination_drain=0.0)
    task = asyncio.create_task(pods.run())
    await asyncio.sleep(0)
    yield pods
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def reports(node: HollowPods) -> list[node_service_pb2.PodStatusReport]:
    async with asyncio.timeout(5):
        await node.outbox.ready.wait()
    return node.outbox.take()


async def test_assigned_pod_reported_running_once(node: HollowPods) -> None:
    assert await node.apply(assignment(5, pod("a")))
    [report] = await reports(node)
    assert (report.uid, report.status.phase, report.terminated) == ("a", "Running", False)
    assert node.pods["a"].phase is Phase.RUNNING
    assert [i.labels["io.corral.pod.uid"] for i in await node.runtime.list({})] == ["a"]
    # The next set carries it again (and another pod): only the new one is reported.
    assert await node.apply(assignment(6, pod("a"), pod("b")))
    assert [r.uid for r in await reports(node)] == ["b"]


async def test_stale_set_refused(node: HollowPods) -> None:
    assert await node.apply(assignment(5))
    assert not await node.apply(assignment(4, pod("a")))
    assert node.pods == {}


async def test_deleted_pod_not_ready_then_terminated_then_dropped(node: HollowPods) -> None:
    await node.apply(assignment(1, pod("a")))
    await reports(node)
    await node.apply(assignment(2, pod("a", deleting=True)))
    seen: list[node_service_pb2.PodStatusReport] = []
    while not any(r.terminated for r in seen):
        seen += await reports(node)
    assert not podutil.status_is_ready(seen[-1].status)
    assert seen[-1].status.container_statuses[0].state.HasField("terminated")
    await node.apply(assignment(3))
    assert node.pods == {}
    node.outbox.resend_all()
    assert node.outbox.take() == []  # dropped: never resent
    for _ in range(10):
        if not await node.runtime.list({}):
            break
        await asyncio.sleep(0.01)
    assert await node.runtime.list({}) == []
