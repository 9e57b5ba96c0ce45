"""Deleting a pod ends its container starts at once, and nothing of it is started
after: an image check is abandoned, a create not yet sent is never sent, and a
create that raced the deletion has what it made killed and removed. Both ways a
pod goes: marked for deletion (a deletionTimestamp), or dropped from the set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from agent.pods.manager import PodManager
from agent.runtime.base import ContainerInfo, ContainerSpec, State
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from corral.common.backoff import CrashLoopBackoff
from protos.corral.v1 import node_service_pb2, pod_pb2
from tests.integration.test_agent_manager import (
    Reports,
    assignment,
    containers,
    eventually,
    pod,
    running,
    settings,
    terminating,
)

pytestmark = pytest.mark.timeout(60)


class SlowStartRuntime(FakeRuntime):
    """A fake runtime whose image checks and creates wait for the test to let them go.

    A create, once sent, runs to its end even when its caller is cancelled, as
    the Docker runtime's call does in its thread."""

    def __init__(self, *, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.reached = asyncio.Event()  # the slow call has begun
        self.go = asyncio.Event()
        self.image_checks_cancelled = 0
        self.runs: list[str] = []
        self.stops: list[tuple[str, float]] = []

    async def ensure_image(self, image: str, pull_policy: str) -> None:
        if self.slow == "image":
            self.reached.set()
            try:
                await self.go.wait()
            except asyncio.CancelledError:
                self.image_checks_cancelled += 1
                raise
        await super().ensure_image(image, pull_policy)

    async def run(self, spec: ContainerSpec) -> ContainerInfo:
        self.runs.append(spec.name)
        if self.slow == "create":
            return await asyncio.shield(self._slow_run(spec))
        return await super().run(spec)

    async def _slow_run(self, spec: ContainerSpec) -> ContainerInfo:
        self.reached.set()
        await self.go.wait()
        return await super().run(spec)

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        self.stops.append((container_id, grace_seconds))
        await super().stop(container_id, grace_seconds=grace_seconds)


def marked(p: pod_pb2.Pod) -> node_service_pb2.AssignmentSet:
    return assignment(2, terminating(p, 30))


def dropped(p: pod_pb2.Pod) -> node_service_pb2.AssignmentSet:
    return assignment(2)


DELETIONS = [pytest.param(marked, id="deletionTimestamp"), pytest.param(dropped, id="dropped")]


def _slow_pod() -> pod_pb2.Pod:
    p = pod("slow")
    p.spec.termination_grace_period_seconds = 30
    return p


@pytest.mark.parametrize("deletion", DELETIONS)
async def test_an_image_check_under_way_is_abandoned_and_nothing_is_created(
    tmp_path: Path, deletion: Callable[[pod_pb2.Pod], node_service_pb2.AssignmentSet]
) -> None:
    runtime = SlowStartRuntime(slow="image")
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        reports = Reports(manager)
        slow = _slow_pod()
        await manager.apply(assignment(1, slow))
        await asyncio.wait_for(runtime.reached.wait(), 5)
        await manager.apply(deletion(slow))
        await eventually(lambda: runtime.image_checks_cancelled == 1)  # at once, not when the check ends
        if deletion is marked:
            await eventually(lambda: reports.saw(lambda r: r.terminated))
        runtime.go.set()
        await manager.apply(assignment(3))
        await eventually(lambda: "uid-slow" not in manager._terminating)
        assert runtime.runs == []
        assert await containers(runtime, "uid-slow") == []


@pytest.mark.parametrize("deletion", DELETIONS)
async def test_a_create_that_raced_the_deletion_is_killed_and_removed(
    tmp_path: Path, deletion: Callable[[pod_pb2.Pod], node_service_pb2.AssignmentSet]
) -> None:
    runtime = SlowStartRuntime(slow="create")
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        slow = _slow_pod()
        await manager.apply(assignment(1, slow))
        await asyncio.wait_for(runtime.reached.wait(), 5)
        await manager.apply(deletion(slow))  # in (the worker told, or cancelled) before the create answers
        runtime.go.set()  # the create now makes its container

        async def gone() -> bool:
            return await containers(runtime, "uid-slow") == []

        await eventually(lambda: runtime.stops)
        await eventually(gone)
        [(_, grace)] = runtime.stops
        assert grace == 0  # killed at once: it should never have run
        assert runtime.runs == [runtime.runs[0]]  # and nothing started after


async def test_a_restart_back_off_under_way_ends_with_the_deletion(tmp_path: Path) -> None:
    runtime = SlowStartRuntime(slow="")
    runtime.script("crash:1", FakeBehaviour(run_seconds=0.01, exit_code=1))
    long_back_off = replace(settings(), backoff=CrashLoopBackoff(initial=300.0, cap=300.0))
    async with running(PodManager({"docker": runtime}, long_back_off, tmp_path)) as manager:
        reports = Reports(manager)
        crashing = pod("crash", image="crash:1")

        async def exited() -> bool:
            return any(c.state is State.EXITED for c in await containers(runtime, "uid-crash"))

        await manager.apply(assignment(1, crashing))
        await eventually(exited)
        await manager.apply(assignment(2, terminating(crashing, 30)))
        await eventually(lambda: reports.saw(lambda r: r.terminated))  # not in 300 s
        assert len(runtime.runs) == 1
