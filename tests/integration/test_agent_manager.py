"""The agent's pod manager and workers over the fake runtime: fencing,
authoritative sets, orphans, resuming after a restart, crash loops, graceful
termination of pods being deleted."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.pods import pod_volumes, worker
from agent.pods import volumes as node_volumes
from agent.pods.manager import PodManager
from agent.pods.worker import WorkerSettings
from agent.runtime import base
from agent.runtime.base import ContainerSpec, State
from agent.runtime.fake import FakeBehaviour, FakeRuntime
from corral.common.backoff import CrashLoopBackoff
from protos.corral.v1 import node_service_pb2, pod_pb2

NODE = "node-1"


def settings() -> WorkerSettings:
    return WorkerSettings(
        node_name=NODE, host_ip="10.0.0.1", poll_interval=0.05, backoff=CrashLoopBackoff(initial=0.1, cap=0.4)
    )


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
    return FakeRuntime(
        {"crash:1": FakeBehaviour(run_seconds=0.05, exit_code=1), "missing:1": FakeBehaviour(missing_image=True)}
    )


async def no_running(runtime: FakeRuntime, uid: str) -> bool:
    return await running_count(runtime, uid) == 0


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
    labels = {
        base.LABEL_MANAGED: "true",
        base.LABEL_NODE: NODE,
        base.LABEL_POD_UID: "stale-uid",
        base.LABEL_CONTAINER: "main",
    }
    stray = await runtime.run(ContainerSpec(name="stray", image="web:1", labels=labels))
    other_node = await runtime.run(
        ContainerSpec(name="elsewhere", image="web:1", labels={**labels, base.LABEL_NODE: "node-2"})
    )
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
            seen.extend(r.status for r in manager.outbox.take())
            return any(
                s.container_statuses
                and s.container_statuses[0].restart_count >= 2
                and s.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
                for s in seen
            )

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
        reports = manager.outbox.take()
        assert reports[0].status.phase == "Failed"
        assert 'runtime "process" is not offered' in reports[0].status.message


async def test_missing_image_shows_err_image_pull_then_back_off(runtime: FakeRuntime, tmp_path: Path) -> None:
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, pod("m", image="missing:1")))
        reasons: list[str] = []

        def saw_back_off() -> bool:
            for r in manager.outbox.take():
                reasons.append(r.status.container_statuses[0].state.waiting.reason)
            return "ImagePullBackOff" in reasons

        await eventually(saw_back_off)
        assert reasons[reasons.index("ErrImagePull")] == "ErrImagePull"
        assert reasons.index("ErrImagePull") < reasons.index("ImagePullBackOff")
        assert await containers(runtime, "uid-m") == []


# -- graceful termination ------------------------------------------------------------


class StopRecordingRuntime(FakeRuntime):
    """A fake runtime whose containers take their whole grace period to stop
    (a process that ignores SIGTERM until killed), recording each stop's grace."""

    def __init__(self, *, slow: bool = False) -> None:
        super().__init__()
        self.slow = slow
        self.stops: list[float] = []

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        self.stops.append(grace_seconds)
        if self.slow:
            await asyncio.sleep(grace_seconds)
        await super().stop(container_id, grace_seconds=grace_seconds)


def terminating(p: pod_pb2.Pod, grace: int) -> pod_pb2.Pod:
    """`p` as a delete with `grace` seconds marks it."""
    marked = pod_pb2.Pod()
    marked.CopyFrom(p)
    marked.metadata.deletion_timestamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=grace))
    marked.metadata.deletion_grace_period_seconds = grace
    return marked


def ready_condition(status: pod_pb2.PodStatus) -> str:
    return next((c.status for c in status.conditions if c.type == "Ready"), "")


class Reports:
    """Every report the manager queues, in order."""

    def __init__(self, manager: PodManager) -> None:
        self.manager = manager
        self.seen: list[node_service_pb2.PodStatusReport] = []

    def saw(self, check: Callable[[node_service_pb2.PodStatusReport], bool]) -> bool:
        self.seen.extend(self.manager.outbox.take())
        return any(check(r) for r in self.seen)


async def test_terminating_pod_is_drained_stopped_and_reported_terminated(tmp_path: Path) -> None:
    runtime = StopRecordingRuntime()
    drained = replace(settings(), termination_drain=0.3)
    async with running(PodManager({"docker": runtime}, drained, tmp_path)) as manager:
        reports = Reports(manager)
        web = pod("web")
        web.spec.termination_grace_period_seconds = 30
        await manager.apply(assignment(1, web))
        await eventually(lambda: reports.saw(lambda r: ready_condition(r.status) == "True"))
        first = (await containers(runtime, "uid-web"))[0]

        await manager.apply(assignment(2, terminating(web, 5)))
        await eventually(lambda: reports.saw(lambda r: r.terminated))
        draining = [r for r in reports.seen if ready_condition(r.status) == "False" and not r.terminated]
        assert draining, "Ready turned False before the containers were stopped"
        assert draining[0].status.container_statuses[0].state.HasField("running")
        assert len(runtime.stops) == 1 and 3.0 < runtime.stops[0] <= 5.0 - 0.3
        final = next(r for r in reports.seen if r.terminated)
        assert ready_condition(final.status) == "False"
        assert final.status.container_statuses[0].state.terminated.exit_code == 143
        after = await containers(runtime, "uid-web")
        assert [(c.id, c.state) for c in after] == [(first.id, State.EXITED)], "never restarted while terminating"

        await manager.apply(assignment(3))
        await eventually(lambda: _no_containers(runtime, "uid-web"))


async def test_terminated_status_is_resent_until_the_pod_leaves_the_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "TERMINATED_RESEND", 0.1)
    runtime = StopRecordingRuntime()
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, terminating(pod("gone"), 5)))
        await eventually(lambda: any(r.terminated for r in manager.outbox.take()))
        manager.outbox.forget(["uid-gone"])  # the control plane did not take it (it lost a race, say)
        await eventually(lambda: any(r.terminated for r in manager.outbox.take()))
        await manager.apply(assignment(2))
        assert "uid-gone" not in manager.workers  # its worker, which re-sends, is gone with it


async def test_pod_assigned_already_terminating_is_never_started(tmp_path: Path) -> None:
    runtime = StopRecordingRuntime()
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        reports = Reports(manager)
        await manager.apply(assignment(1, terminating(pod("late"), 30)))
        await eventually(lambda: reports.saw(lambda r: r.terminated))
        assert await containers(runtime, "uid-late") == []
        assert runtime.stops == []


async def test_a_shorter_grace_applies_to_a_stop_under_way(tmp_path: Path) -> None:
    runtime = StopRecordingRuntime(slow=True)
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        reports = Reports(manager)
        slow = pod("slow")
        slow.spec.termination_grace_period_seconds = 60
        await manager.apply(assignment(1, slow))
        await eventually(lambda: running_count(runtime, "uid-slow"))
        await manager.apply(assignment(2, terminating(slow, 60)))
        await eventually(lambda: runtime.stops)
        assert runtime.stops[0] > 30
        await manager.apply(assignment(3, terminating(slow, 1)))
        await eventually(lambda: reports.saw(lambda r: r.terminated))
        assert len(runtime.stops) == 2 and runtime.stops[1] <= 1.0


async def test_a_burst_of_sets_is_written_coalesced_newest_last(
    runtime: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = PodManager({"docker": runtime}, settings(), tmp_path)
    written: list[int] = []
    save = manager.journal._save

    def slow_save(a: node_service_pb2.AssignmentSet) -> None:
        written.append(a.epoch)
        save(a)
        time.sleep(0.05)  # a slow card: sets keep arriving meanwhile

    monkeypatch.setattr(manager.journal, "_save", slow_save)
    async with running(manager):
        for epoch in range(1, 21):
            await manager.apply(assignment(epoch, *[pod(f"p{i}") for i in range(epoch % 4)]))
            await asyncio.sleep(0.005)
        await eventually(lambda: written and written[-1] == 20)
    assert written == sorted(written) and len(written) < 20  # in order, and coalesced
    saved = node_service_pb2.AssignmentSet()
    saved.ParseFromString((tmp_path / "assignments.pb").read_bytes())
    assert saved.epoch == 20


async def test_newest_set_is_written_on_the_way_out(runtime: FakeRuntime, tmp_path: Path) -> None:
    manager = PodManager({"docker": runtime}, settings(), tmp_path)
    async with running(manager):
        await manager.apply(assignment(3, pod("a")))
    saved = node_service_pb2.AssignmentSet()
    saved.ParseFromString((tmp_path / "assignments.pb").read_bytes())
    assert saved.epoch == 3 and [p.metadata.name for p in saved.pods] == ["a"]


async def test_runtime_scanned_for_orphans_on_the_first_set_and_when_pods_leave(
    runtime: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[dict[str, str]] = []
    list_containers = runtime.list

    async def counted(selector: dict[str, str]) -> list[base.ContainerInfo]:
        if base.LABEL_NODE in selector and base.LABEL_POD_UID not in selector:
            scans.append(selector)
        return await list_containers(selector)

    monkeypatch.setattr(runtime, "list", counted)
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, pod("a")))
        assert len(scans) == 1
        await manager.apply(assignment(2, pod("a"), pod("b")))
        await manager.apply(assignment(3, pod("a"), pod("b"), pod("c")))
        assert len(scans) == 1  # growing sets: no scan
        await manager.apply(assignment(4, pod("a")))
        assert len(scans) == 2  # b and c left: scan for their leftovers


# -- volumes -------------------------------------------------------------------------


class MountCheckingRuntime(FakeRuntime):
    """Records, for each container it runs, which of its mounts' host directories exist then."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[str, dict[str, bool]]] = []

    async def run(self, spec: ContainerSpec) -> base.ContainerInfo:
        self.runs.append((spec.name, {m.target: Path(m.source).is_dir() for m in spec.mounts if m.source}))
        return await super().run(spec)


async def test_a_pod_with_a_disk_empty_dir_gets_its_directory_before_it_starts(tmp_path: Path) -> None:
    runtime = MountCheckingRuntime()
    volumes = tmp_path / "volumes"
    with_volumes = pod("scratchy")
    with_volumes.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    with_volumes.spec.volumes.add(name="shm").empty_dir.medium = "Memory"
    with_volumes.spec.containers[0].volume_mounts.add(name="scratch", mount_path="/scratch")
    with_volumes.spec.containers[0].volume_mounts.add(name="shm", mount_path="/dev/shm")
    async with running(PodManager({"docker": runtime}, replace(settings(), volumes_dir=volumes), tmp_path)) as manager:
        await manager.apply(assignment(1, with_volumes, pod("plain")))
        await eventually(lambda: running_count(runtime, "uid-scratchy"))
        await eventually(lambda: running_count(runtime, "uid-plain"))
    try:
        assert (volumes / "uid-scratchy" / "scratch").is_dir()
        shm = node_volumes.volume_dir(volumes, "uid-scratchy", with_volumes.spec.volumes[1])
        # A tmpfs the agent mounts (as root), else a directory under /dev/shm: never the node's disk.
        assert os.path.ismount(shm) if os.geteuid() == 0 else str(shm).startswith("/dev/shm/")
        assert not (volumes / "uid-plain").exists()
        mounts = {name.split("_")[2]: found for name, found in runtime.runs}
        assert mounts == {"scratchy": {"/scratch": True, "/dev/shm": True}, "plain": {}}
    finally:
        node_volumes.remove(volumes, "uid-scratchy")
    assert not shm.exists() and not (volumes / "uid-scratchy").exists()


async def test_changed_volume_files_are_rewritten_in_place_without_a_restart(tmp_path: Path) -> None:
    """A configMap volume waits for its files, gets them before the start, and a changed
    payload rewrites them while the container runs on (no new attempt); the journal on
    disk never holds a secret volume's files."""
    runtime = MountCheckingRuntime()
    volumes = tmp_path / "volumes"
    web = pod("web")
    web.spec.volumes.add(name="conf").config_map.name = "app"
    web.spec.volumes.add(name="creds").secret.secret_name = "db"
    web.spec.containers[0].volume_mounts.add(name="conf", mount_path="/etc/app")
    web.spec.containers[0].volume_mounts.add(name="creds", mount_path="/secret")

    def payloads(text: bytes) -> list[node_service_pb2.VolumePayload]:
        return [
            node_service_pb2.VolumePayload(
                pod_uid="uid-web",
                volume="conf",
                files=[node_service_pb2.VolumeFile(path="a.conf", data=text, mode=0o644)],
            ),
            node_service_pb2.VolumePayload(
                pod_uid="uid-web",
                volume="creds",
                secret=True,
                files=[node_service_pb2.VolumeFile(path="pw", data=b"s3cret-value", mode=0o400)],
            ),
        ]

    conf = volumes / "uid-web" / "conf" / "a.conf"
    try:
        async with running(PodManager({"docker": runtime}, replace(settings(), volumes_dir=volumes), tmp_path)) as m:
            await m.apply(node_service_pb2.AssignmentSet(epoch=1, pods=[web], volumes=payloads(b"one")))
            await eventually(lambda: running_count(runtime, "uid-web"))
            assert conf.read_bytes() == b"one"
            await m.apply(node_service_pb2.AssignmentSet(epoch=2, pods=[web], volumes=payloads(b"two")))
            await eventually(lambda: conf.read_bytes() == b"two")
            assert len(await containers(runtime, "uid-web")) == 1
        assert b"s3cret-value" not in (tmp_path / "assignments.pb").read_bytes()
        assert b"two" in (tmp_path / "assignments.pb").read_bytes()
    finally:
        node_volumes.remove(volumes, "uid-web")


# -- lifecycle hooks --------------------------------------------------------------------


class HookRecordingRuntime(FakeRuntime):
    """Records runs, execs and stops in order. The exec `hold` waits until `release` is
    set, `slow` takes `slow_seconds`, `fail` exits 1; others exit 0 at once."""

    def __init__(self, *, slow_seconds: float = 0.3) -> None:
        super().__init__({"served:1": FakeBehaviour(serve_ports=True)})
        self.calls: list[tuple[str, str, float]] = []  # (what, command or container id, loop time)
        self.stop_graces: list[float] = []
        self.release = asyncio.Event()
        self.slow_seconds = slow_seconds

    def _now_loop(self) -> float:
        return asyncio.get_running_loop().time()

    async def run(self, spec: ContainerSpec) -> base.ContainerInfo:
        info = await super().run(spec)
        self.calls.append(("run", info.id, self._now_loop()))
        return info

    async def exec(self, container_id: str, command: list[str], *, timeout: float) -> base.ExecResult:
        self.calls.append(("exec", " ".join(command), self._now_loop()))
        if command == ["hold"]:
            await self.release.wait()
        if command == ["slow"]:
            await asyncio.sleep(self.slow_seconds)
        self.calls.append(("exec-done", " ".join(command), self._now_loop()))
        return base.ExecResult(1 if command == ["fail"] else 0, b"boom" if command == ["fail"] else b"")

    async def stop(self, container_id: str, *, grace_seconds: float) -> None:
        self.calls.append(("stop", container_id, self._now_loop()))
        self.stop_graces.append(grace_seconds)
        await super().stop(container_id, grace_seconds=grace_seconds)

    def whats(self) -> list[tuple[str, str]]:
        return [(what, arg) for what, arg, _ in self.calls]


def hooked_pod(name: str, *, post_start: list[str] | None = None, pre_stop: list[str] | None = None) -> pod_pb2.Pod:
    p = pod(name)
    hooks = p.spec.containers[0].lifecycle
    if post_start is not None:
        hooks.post_start.exec.command.extend(post_start)
    if pre_stop is not None:
        hooks.pre_stop.exec.command.extend(pre_stop)
    return p


def waiting_reason(report: node_service_pb2.PodStatusReport) -> str:
    statuses = report.status.container_statuses
    return statuses[0].state.waiting.reason if statuses else ""


async def test_post_start_hook_runs_before_the_container_is_running_or_ready(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime()
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        reports = Reports(manager)
        await manager.apply(assignment(1, hooked_pod("hooked", post_start=["hold"])))
        await eventually(lambda: reports.saw(lambda r: waiting_reason(r) == "ContainerCreating"))
        await eventually(lambda: ("exec", "hold") in runtime.whats())
        assert await running_count(runtime, "uid-hooked") == 1  # the container runs, the hook holds it
        assert not reports.saw(lambda r: ready_condition(r.status) == "True")
        assert not reports.saw(lambda r: r.status.phase == "Running")
        runtime.release.set()
        await eventually(lambda: reports.saw(lambda r: ready_condition(r.status) == "True"))
        assert runtime.whats()[:3] == [("run", "fake-000001"), ("exec", "hold"), ("exec-done", "hold")]


async def test_failed_post_start_hook_kills_and_restarts_the_container(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime()
    with capture_logs() as logs:
        async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
            reports = Reports(manager)
            await manager.apply(assignment(1, hooked_pod("failing", post_start=["fail"])))
            await eventually(lambda: reports.saw(lambda r: waiting_reason(r) == "PostStartHookError"))
            await eventually(
                lambda: reports.saw(
                    lambda r: bool(r.status.container_statuses) and r.status.container_statuses[0].restart_count >= 1
                )
            )
            assert not reports.saw(lambda r: ready_condition(r.status) == "True")
    error = next(r for r in reports.seen if waiting_reason(r) == "PostStartHookError")
    assert (
        error.status.container_statuses[0].state.waiting.message == "postStart hook failed: command exited with 1: boom"
    )
    assert runtime.whats()[:3] == [("run", "fake-000001"), ("exec", "fail"), ("exec-done", "fail")]
    assert ("stop", "fake-000001") in runtime.whats()
    assert any(e.get("reason") == "FailedPostStartHook" for e in logs)


async def test_pre_stop_hook_runs_before_the_stop_within_the_grace_period(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime(slow_seconds=0.3)
    undrained = replace(settings(), termination_drain=0.0)
    async with running(PodManager({"docker": runtime}, undrained, tmp_path)) as manager:
        reports = Reports(manager)
        web = hooked_pod("drained", pre_stop=["slow"])
        web.spec.termination_grace_period_seconds = 30
        await manager.apply(assignment(1, web))
        await eventually(lambda: reports.saw(lambda r: ready_condition(r.status) == "True"))
        await manager.apply(assignment(2, terminating(web, 10)))
        await eventually(lambda: reports.saw(lambda r: r.terminated))
    whats = runtime.whats()
    assert [w for w in whats if w[0] != "run"] == [("exec", "slow"), ("exec-done", "slow"), ("stop", "fake-000001")]
    # the hook's 0.3 s came off the deletion's 10 s grace period
    assert len(runtime.stop_graces) == 1 and 8.0 < runtime.stop_graces[0] <= 10.0 - 0.3


async def test_failed_pre_stop_hook_is_logged_and_the_stop_goes_on(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime()
    with capture_logs() as logs:
        async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
            reports = Reports(manager)
            web = hooked_pod("stubborn", pre_stop=["fail"])
            await manager.apply(assignment(1, web))
            await eventually(lambda: running_count(runtime, "uid-stubborn"))
            await manager.apply(assignment(2, terminating(web, 5)))
            await eventually(lambda: reports.saw(lambda r: r.terminated))
    assert [w for w in runtime.whats() if w[0] != "run"] == [
        ("exec", "fail"),
        ("exec-done", "fail"),
        ("stop", "fake-000001"),
    ]
    failed = [e for e in logs if e.get("reason") == "FailedPreStopHook"]
    assert failed and failed[0]["message"] == "command exited with 1: boom"


async def test_pre_stop_hook_runs_before_a_liveness_kill(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime()
    sick = hooked_pod("sick", pre_stop=["true"])
    sick.spec.containers[0].liveness_probe.exec.command.append("fail")
    sick.spec.containers[0].liveness_probe.period_seconds = 1
    sick.spec.containers[0].liveness_probe.failure_threshold = 1
    sick.spec.containers[0].liveness_probe.timeout_seconds = 1
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, sick))
        await eventually(lambda: ("stop", "fake-000001") in runtime.whats())
    whats = runtime.whats()
    assert whats.index(("exec", "true")) < whats.index(("stop", "fake-000001"))
    assert whats.count(("exec", "true")) >= 1


async def test_http_get_post_start_hook_reaches_the_container_port(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime()
    web = pod("served", image="served:1")
    web.spec.containers[0].ports.add(name="http", container_port=8080)
    web.spec.containers[0].lifecycle.post_start.http_get.port.str_val = "http"
    web.spec.containers[0].lifecycle.post_start.http_get.path = "/started"
    with capture_logs() as logs:
        async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
            reports = Reports(manager)
            await manager.apply(assignment(1, web))
            await eventually(lambda: reports.saw(lambda r: ready_condition(r.status) == "True"))
    assert any(e["event"] == "container_post_start_done" for e in logs)
    assert not any(e.get("reason") == "FailedPostStartHook" for e in logs)


async def test_a_disk_empty_dir_past_its_size_limit_evicts_the_pod(
    runtime: FakeRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the kubelet does: the containers are stopped and the pod is Failed, reason Evicted."""
    monkeypatch.setattr(pod_volumes, "SIZE_LIMIT_PERIOD", 0.05)
    volumes = tmp_path / "volumes"
    big = pod("big")
    big.spec.volumes.add(name="cache").empty_dir.size_limit = "64Ki"
    big.spec.containers[0].volume_mounts.add(name="cache", mount_path="/cache")
    async with running(PodManager({"docker": runtime}, replace(settings(), volumes_dir=volumes), tmp_path)) as m:
        await m.apply(assignment(1, big))
        await eventually(lambda: running_count(runtime, "uid-big"))
        (volumes / "uid-big" / "cache" / "blob").write_bytes(b"x" * 32 * 1024)
        seen: list[pod_pb2.PodStatus] = []

        def evicted() -> bool:
            seen.extend(r.status for r in m.outbox.take())
            return any(s.reason == "Evicted" for s in seen)

        with pytest.raises(TimeoutError):  # under the limit: it runs on
            await eventually(evicted, timeout=0.5)
        (volumes / "uid-big" / "cache" / "blob").write_bytes(b"x" * 128 * 1024)
        await eventually(evicted)
        await eventually(lambda: no_running(runtime, "uid-big"))
    status = next(s for s in seen if s.reason == "Evicted")
    assert status.phase == "Failed"
    assert status.message == 'Usage of EmptyDir volume "cache" exceeds the limit "64Ki".'


async def test_volumes_of_pods_gone_while_the_agent_was_down_are_removed(runtime: FakeRuntime, tmp_path: Path) -> None:
    volumes = tmp_path / "volumes"
    (volumes / "uid-gone" / "scratch").mkdir(parents=True)
    kept = pod("kept")
    kept.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    (volumes / "uid-kept" / "scratch").mkdir(parents=True)
    (volumes / "uid-kept" / "scratch" / "data").write_text("still here")
    async with running(PodManager({"docker": runtime}, replace(settings(), volumes_dir=volumes), tmp_path)) as m:
        await m.apply(assignment(1, kept))
        await eventually(lambda: not (volumes / "uid-gone").exists())
        await eventually(lambda: running_count(runtime, "uid-kept"))
    assert (volumes / "uid-kept" / "scratch" / "data").read_text() == "still here"


async def test_init_containers_run_in_order_once_and_not_again_after_a_restart(tmp_path: Path) -> None:
    runtime = FakeRuntime({"init:1": FakeBehaviour(run_seconds=0.05)})
    p = pod("i")
    p.spec.init_containers.add(name="first", image="init:1")
    p.spec.init_containers.add(name="second", image="init:1")
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, p))

        async def app_running() -> bool:
            found = await containers(runtime, "uid-i")
            return any(c.labels[base.LABEL_CONTAINER] == "main" and c.state is State.RUNNING for c in found)

        await eventually(app_running)
    history = sorted(await containers(runtime, "uid-i"), key=lambda c: c.id)  # ids in creation order
    assert [c.labels[base.LABEL_CONTAINER] for c in history] == ["first", "second", "main"]
    assert [c.exit_code for c in history[:2]] == [0, 0]
    assert history[0].finished_at and history[1].started_at and history[0].finished_at <= history[1].started_at
    assert history[1].finished_at and history[2].started_at and history[1].finished_at <= history[2].started_at
    before = sorted(c.id for c in history)
    # A new agent on the same data dir: the completed init containers are not run again.
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as resumed:
        await eventually(lambda: len(resumed.workers) == 1)
        seen: list[pod_pb2.PodStatus] = []

        def reported_initialized() -> bool:
            seen.extend(r.status for r in resumed.outbox.take())
            return any(s.phase == "Running" for s in seen)

        await eventually(reported_initialized)
        assert sorted(c.id for c in await containers(runtime, "uid-i")) == before
    last = next(s for s in reversed(seen) if s.phase == "Running")
    assert [(s.name, s.state.terminated.reason, s.ready) for s in last.init_container_statuses] == [
        ("first", "Completed", True),
        ("second", "Completed", True),
    ]
    assert {c.type: c.status for c in last.conditions}["Initialized"] == "True"


async def test_failing_init_container_crash_loops_and_the_app_never_starts(tmp_path: Path) -> None:
    runtime = FakeRuntime({"crash:1": FakeBehaviour(run_seconds=0.05, exit_code=1)})
    p = pod("f")
    p.spec.init_containers.add(name="setup", image="crash:1")
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, p))
        seen: list[pod_pb2.PodStatus] = []

        def crash_looping() -> bool:
            seen.extend(r.status for r in manager.outbox.take())
            return any(
                s.init_container_statuses
                and s.init_container_statuses[0].restart_count >= 2
                and s.init_container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
                for s in seen
            )

        await eventually(crash_looping)
        names = {c.labels[base.LABEL_CONTAINER] for c in await containers(runtime, "uid-f")}
        assert names == {"setup"}
        assert all(s.phase == "Pending" for s in seen)
        assert seen[-1].container_statuses[0].state.waiting.reason == "PodInitializing"


async def test_failing_init_container_under_never_fails_the_pod(tmp_path: Path) -> None:
    runtime = FakeRuntime({"crash:1": FakeBehaviour(run_seconds=0.05, exit_code=1)})
    p = pod("n", policy="Never")
    p.spec.init_containers.add(name="setup", image="crash:1")
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, p))
        seen: list[pod_pb2.PodStatus] = []

        def failed() -> bool:
            seen.extend(r.status for r in manager.outbox.take())
            return any(s.phase == "Failed" for s in seen)

        await eventually(failed)
        await asyncio.sleep(0.3)  # a few more steps: nothing is restarted or started
        found = await containers(runtime, "uid-n")
        assert [(c.labels[base.LABEL_CONTAINER], c.exit_code) for c in found] == [("setup", 1)]
        last = next(s for s in reversed(seen) if s.phase == "Failed")
        assert last.init_container_statuses[0].state.terminated.reason == "Error"


def probed_pod(name: str, **probes: list[str]) -> pod_pb2.Pod:
    """A pod whose container has exec probes (kind → command), every second, failing at once."""
    p = pod(name)
    for kind, command in probes.items():
        probe = getattr(p.spec.containers[0], f"{kind}_probe")
        probe.exec.command.extend(command)
        probe.period_seconds = probe.failure_threshold = probe.timeout_seconds = probe.success_threshold = 1
    return p


async def test_startup_probe_gates_liveness_and_stops_once_it_succeeded(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime()
    p = probed_pod("slow", startup=["started"], liveness=["alive"])
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, p))
        await eventually(lambda: runtime.whats().count(("exec", "alive")) >= 2)
    whats = runtime.whats()
    assert whats.index(("exec-done", "started")) < whats.index(("exec", "alive"))
    assert whats.count(("exec", "started")) == 1
    assert ("stop", "fake-000001") not in whats


async def test_failed_startup_probe_kills_the_container_before_any_liveness_probe(tmp_path: Path) -> None:
    runtime = HookRecordingRuntime()
    p = probed_pod("never", startup=["fail"], liveness=["alive"], readiness=["ready"])
    async with running(PodManager({"docker": runtime}, settings(), tmp_path)) as manager:
        await manager.apply(assignment(1, p))
        await eventually(lambda: ("stop", "fake-000001") in runtime.whats())
        seen: list[pod_pb2.PodStatus] = []

        def restarted() -> bool:
            seen.extend(r.status for r in manager.outbox.take())
            return any(s.container_statuses and s.container_statuses[0].restart_count >= 1 for s in seen)

        await eventually(restarted)
    assert not {("exec", "alive"), ("exec", "ready")} & set(runtime.whats())
    assert not any(s.container_statuses[0].started or s.container_statuses[0].ready for s in seen)
