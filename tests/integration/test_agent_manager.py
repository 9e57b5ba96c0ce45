"""The agent's pod manager and workers over the fake runtime: fencing,
authoritative sets, orphans, resuming after a restart, crash loops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.backoff import CrashLoopBackoff
from agent.manager import PodManager
from agent.pod_worker import WorkerSettings
from agent.runtime import base
from agent.runtime.base import ContainerSpec, State
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from protos.corral.v1 import node_service_pb2, pod_pb2

NODE = "node-1"


def settings() -> WorkerSettings:
    return WorkerSettings(node_name=NODE, host_ip="10.0.0.1", poll_interval=0.05,
                          backoff=CrashLoopBackoff(initial=0.1, cap=0.4))


def pod(name: str, image: str = "web:1", policy: str = "Always") -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace, p.metadata.uid = name, "default", f"uid-{name}"
    p.spec.node_name = NODE
    p.spec.restart_policy = policy
    p.spec.termination_grace_period_seconds = 1
    p.spec.containers.add(name="main", image=image)
    return p


def assignment(epoch: int, *pods: pod_pb2.Pod) -> node_service_pb2.AssignmentSet:
    return node_service_pb2.AssignmentSet(epoch=epoch, pods=pods)


async def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await _call(check):
            await asyncio.sleep(0.02)


async def _call(check: Callable[[], object]) -> object:
    result = check()
    if asyncio.iscoroutine(result):
        return await result
    return result


@contextlib.asynccontextmanager
async def running(manager: PodManager) -> AsyncIterator[PodManager]:
    task = asyncio.create_task(manager.run())
    await asyncio.sleep(0)
    try:
        yield manager
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def containers(runtime: FakeRuntime, uid: str) -> list[base.ContainerInfo]:
    return await runtime.list({base.LABEL_POD_UID: uid})


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime({"crash:1": FakeBehaviour(run_seconds=0.05, exit_code=1),
                        "missing:1": FakeBehaviour(missing_image=True)})


async def running_count(runtime: FakeRuntime, uid: str) -> int:
    return sum(1 for c in await containers(runtime, uid) if c.state is State.RUNNING)


async def test_older_epoch_is_refused_newer_set_is_authoritative(runtime: FakeRuntime, tmp_path: Path) -> None:
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        assert await manager.apply(assignment(5, pod("a")))
        await eventually(lambda: running_count(runtime, "uid-a"))
        assert not await manager.apply(assignment(3))
        assert await running_count(runtime, "uid-a") == 1
        assert await manager.apply(assignment(6))
        await eventually(lambda: _no_containers(runtime, "uid-a"))


async def _no_containers(runtime: FakeRuntime, uid: str) -> bool:
    return not await containers(runtime, uid)


async def test_containers_of_unknown_pods_are_stopped(runtime: FakeRuntime, tmp_path: Path) -> None:
    labels = {base.LABEL_MANAGED: "true", base.LABEL_NODE: NODE, base.LABEL_POD_UID: "stale-uid",
              base.LABEL_CONTAINER: "main"}
    stray = await runtime.run(ContainerSpec(name="stray", image="web:1", labels=labels))
    other_node = await runtime.run(ContainerSpec(
        name="elsewhere", image="web:1", labels={**labels, base.LABEL_NODE: "node-2"}))
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, pod("a")))
        await eventually(lambda: _gone(runtime, stray.id))
        assert (await runtime.inspect(other_node.id)) is not None


async def _gone(runtime: FakeRuntime, container_id: str) -> bool:
    return await runtime.inspect(container_id) is None


async def test_restarted_agent_resumes_and_adopts(runtime: FakeRuntime, tmp_path: Path) -> None:
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(7, pod("a"), pod("b")))
        await eventually(lambda: _all_running(runtime, ["uid-a", "uid-b"]))
    before = await ids(runtime, ["uid-a", "uid-b"])
    # A new manager on the same data dir, no control plane: it resumes the saved set.
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as resumed:
        await eventually(lambda: len(resumed.workers) == 2)
        assert resumed.epoch == 7
        await asyncio.sleep(0.3)
        assert await ids(runtime, ["uid-a", "uid-b"]) == before
        assert not await resumed.apply(assignment(6))


async def ids(runtime: FakeRuntime, uids: list[str]) -> list[str]:
    found: list[str] = []
    for uid in uids:
        found += [c.id for c in await containers(runtime, uid)]
    return sorted(found)


async def _all_running(runtime: FakeRuntime, uids: list[str]) -> bool:
    return all([await running_count(runtime, uid) == 1 for uid in uids])


async def test_crash_loop_is_reported(runtime: FakeRuntime, tmp_path: Path) -> None:
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, pod("c", image="crash:1")))
        seen: list[pod_pb2.PodStatus] = []

        def restarted_in_backoff() -> bool:
            seen.extend(r.status for r in manager.take_reports())
            return any(s.container_statuses and s.container_statuses[0].restart_count >= 2
                       and s.container_statuses[0].state.waiting.reason == "CrashLoopBackOff" for s in seen)

        await eventually(restarted_in_backoff)
        last = next(s for s in reversed(seen) if s.container_statuses[0].restart_count >= 2)
        assert last.container_statuses[0].last_state.terminated.exit_code == 1
        assert last.phase == "Running"
        history = await containers(runtime, "uid-c")
        assert len(history) <= 2  # the newest run and one previous, older runs removed


async def test_unknown_runtime_fails_the_pod(runtime: FakeRuntime, tmp_path: Path) -> None:
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        p = pod("p")
        p.spec.runtime_class_name = "process"
        await manager.apply(assignment(1, p))
        reports = manager.take_reports()
        assert reports[0].status.phase == "Failed"
        assert 'runtime "process" is not offered' in reports[0].status.message


async def test_missing_image_shows_err_image_pull_then_back_off(runtime: FakeRuntime, tmp_path: Path) -> None:
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, pod("m", image="missing:1")))
        reasons: list[str] = []

        def saw_back_off() -> bool:
            for r in manager.take_reports():
                reasons.append(r.status.container_statuses[0].state.waiting.reason)
            return "ImagePullBackOff" in reasons

        await eventually(saw_back_off)
        assert reasons[reasons.index("ErrImagePull")] == "ErrImagePull"
        assert reasons.index("ErrImagePull") < reasons.index("ImagePullBackOff")
        assert await containers(runtime, "uid-m") == []
