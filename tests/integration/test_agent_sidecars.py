"""Sidecars through the agent's pod worker on the fake runtime: started (startup probe
passed) before the next init container, stopped after the app containers and in reverse
order on deletion (preStop first), and stopped when a Job-like pod's app container is done."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from agent.pods.manager import PodManager
from agent.runtime import base
from agent.runtime.fake import FakeBehaviour
from protos.corral.v1 import pod_pb2
from tests.integration.test_agent_manager import (
    HookRecordingRuntime,
    Reports,
    assignment,
    containers,
    eventually,
    pod,
    ready_condition,
    running,
    settings,
    terminating,
)


def with_sidecars(name: str, policy: str = "Always") -> pod_pb2.Pod:
    """`proxy` (a sidecar, startup probe `slow`, preStop `true`), `setup`, `log` (a sidecar), `main`."""
    p = pod(name, policy=policy)
    proxy = p.spec.init_containers.add(name="proxy", image="web:1", restart_policy="Always")
    proxy.startup_probe.exec.command.append("slow")
    proxy.startup_probe.period_seconds = 1
    proxy.lifecycle.pre_stop.exec.command.append("true")
    p.spec.init_containers.add(name="setup", image="done:1")
    p.spec.init_containers.add(name="log", image="web:1", restart_policy="Always")
    return p


def runtime() -> HookRecordingRuntime:
    r = HookRecordingRuntime(slow_seconds=0.1)
    r.script("done:1", FakeBehaviour(run_seconds=0.05, exit_code=0))
    return r


async def names(r: HookRecordingRuntime, uid: str) -> dict[str, str]:
    """Container id → the pod's container name."""
    return {c.id: c.labels[base.LABEL_CONTAINER] for c in await containers(r, uid)}


async def test_sidecar_started_before_the_next_init_then_stopped_last_in_reverse(tmp_path: Path) -> None:
    r = runtime()
    undrained = replace(settings(), termination_drain=0.0)
    async with running(PodManager({"docker": r}, undrained, tmp_path)) as manager:
        reports = Reports(manager)
        web = with_sidecars("web")
        web.spec.termination_grace_period_seconds = 10
        await manager.apply(assignment(1, web))
        await eventually(lambda: reports.saw(lambda rep: ready_condition(rep.status) == "True"))
        ready = next(rep for rep in reports.seen if ready_condition(rep.status) == "True")
        assert [(s.name, s.started, s.ready) for s in ready.status.init_container_statuses] == [
            ("proxy", True, True),
            ("setup", False, True),
            ("log", True, True),
        ]
        await manager.apply(assignment(2, terminating(web, 10)))
        await eventually(lambda: reports.saw(lambda rep: rep.terminated))
        by_id = await names(r, "uid-web")
    order = [
        (what, by_id.get(arg, arg)) for what, arg in r.whats() if what in ("run", "stop") or arg in ("slow", "true")
    ]
    assert order == [
        ("run", "proxy"),
        ("exec", "slow"),
        ("exec-done", "slow"),
        ("run", "setup"),
        ("run", "log"),
        ("run", "main"),
        ("stop", "main"),
        ("stop", "log"),
        ("exec", "true"),
        ("exec-done", "true"),
        ("stop", "proxy"),
    ]


async def test_job_like_pod_succeeds_and_stops_its_sidecars(tmp_path: Path) -> None:
    r = runtime()
    async with running(PodManager({"docker": r}, settings(), tmp_path)) as manager:
        reports = Reports(manager)
        job = with_sidecars("job", policy="Never")
        job.spec.containers[0].image = "done:1"
        await manager.apply(assignment(1, job))
        await eventually(lambda: reports.saw(lambda rep: rep.status.phase == "Succeeded"))
        await eventually(
            lambda: reports.saw(
                lambda rep: all(s.state.HasField("terminated") for s in rep.status.init_container_statuses)
            )
        )
        assert not any(c.state is base.State.RUNNING for c in await containers(r, "uid-job"))
        by_id = await names(r, "uid-job")
    stops = [by_id[arg] for what, arg in r.whats() if what == "stop"]
    assert stops == ["log", "proxy"]


async def test_restarted_agent_reruns_no_init_and_restarts_a_stopped_sidecar(tmp_path: Path) -> None:
    r = runtime()
    async with running(PodManager({"docker": r}, settings(), tmp_path)) as manager:
        reports = Reports(manager)
        await manager.apply(assignment(1, with_sidecars("web")))
        await eventually(lambda: reports.saw(lambda rep: ready_condition(rep.status) == "True"))
    by_id = await names(r, "uid-web")
    proxy = next(i for i, name in by_id.items() if name == "proxy")
    await r.stop(proxy, grace_seconds=0)  # the sidecar exits while no agent runs
    # A new agent on the same data dir resumes the saved set.
    async with running(PodManager({"docker": r}, settings(), tmp_path)) as resumed:
        reports = Reports(resumed)
        await eventually(lambda: reports.saw(lambda rep: ready_condition(rep.status) == "True"))
        after = await names(r, "uid-web")
    assert sorted(after.values()) == ["log", "main", "proxy", "proxy", "setup"]  # one new run: the sidecar's
    assert set(by_id) < set(after)
