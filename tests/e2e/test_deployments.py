"""Deployments on three real agents with Docker: placement, rolling updates,
rollback, a stuck rollout, node loss and control-plane crashes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.client import Client, ClientError
from tests.e2e.conftest import (
    MANIFESTS,
    AgentProcess,
    Cli,
    ServerProcess,
    cli_credentials,
    remove_node_containers,
    wait_until,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def agents(server: ServerProcess, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    procs = []
    for i in range(3):
        name = f"n{i}-{os.getpid()}"
        proc = AgentProcess(
            server.address, name, tmp_path / name, server.env, tmp_path / f"{name}.log", runtimes=("docker",)
        )
        proc.start()
        procs.append(proc)
    cli = Cli(server.env)
    for proc in procs:
        wait_until(
            lambda p=proc: cli.run("get", "node", p.name).returncode == 0,  # type: ignore[misc]
            30,
            f"{proc.name} registered",
            proc.log,
        )
    yield procs
    cli.run("delete", "deploy", "--ignore-not-found", "example-app")
    for proc in procs:
        proc.stop()
        remove_node_containers(proc.name)


def pods(cli: Cli, selector: str = "app=example-app") -> list[dict[str, Any]]:
    result = cli.run("get", "pods", "-l", selector, "-o", "json")
    assert result.returncode == 0, result.stderr
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def image_of(pod: dict[str, Any]) -> str:
    image: str = pod["spec"]["containers"][0]["image"]
    return image


def settled(cli: Cli, image: str, count: int) -> bool:
    current = pods(cli)
    return len(current) == count and all(ready(p) and image_of(p) == image for p in current)


class Bounds:
    """Checks maxSurge/maxUnavailable after every change etcd records, not just
    on polls: a watch thread replays each pod event and counts."""

    def __init__(self, server: ServerProcess, most: int, least_ready: int, selector: str = "app=example-app") -> None:
        self.most, self.least_ready, self.selector = most, least_ready, selector
        self.address = server.address
        self.credentials = cli_credentials(server.env)
        self.events = 0
        self.violations: list[str] = []
        self.worst = (0, least_ready)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                client = Client(self.address, self.credentials, timeout=5)
                items, revision = client.list("pods", "default", selector=self.selector)
                state = {p.metadata.name: p for p in items}
                for ev in client.watch("pods", "default", selector=self.selector, resource_version=revision):
                    if self._stop.is_set():
                        return
                    if ev.type == "DELETED":
                        state.pop(ev.obj.metadata.name, None)
                    else:
                        state[ev.obj.metadata.name] = ev.obj
                    self._check(state)
            except ClientError:
                time.sleep(0.2)  # the control plane is down (the kill -9 test): watch again

    def _check(self, state: dict[str, Any]) -> None:
        self.events += 1
        total = len(state)
        ready_now = sum(
            1 for p in state.values() if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
        )
        self.worst = (max(self.worst[0], total), min(self.worst[1], ready_now))
        if total > self.most or ready_now < self.least_ready:
            self.violations.append(f"{total} pods, {ready_now} ready after event {self.events}")

    def stop(self) -> None:
        self._stop.set()


def test_example_app_spreads_rolls_out_and_undoes(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    assert cli.run("apply", "-f", str(MANIFESTS / "example-app.yaml")).returncode == 0
    wait_until(lambda: settled(cli, "httpd:2.4.39", 3), 90, "3 ready pods", agents[0].log)
    assert sorted(p["spec"]["nodeName"] for p in pods(cli)) == sorted(a.name for a in agents)
    bounds = Bounds(server, most=6, least_ready=3)
    assert cli.run("set", "image", "deploy/example-app", "example-app=corral-test/busybox:1").returncode == 0
    wait_until(lambda: settled(cli, "corral-test/busybox:1", 3), 120, "rollout done")
    assert bounds.events > 6  # 3 pods created, readied and 3 deleted at least
    status = cli.run("rollout", "status", "deploy/example-app", "--timeout", "60s")
    assert status.returncode == 0, status.stdout + status.stderr
    assert 'deployment "example-app" successfully rolled out' in status.stdout
    assert cli.run("rollout", "undo", "deploy/example-app").returncode == 0
    wait_until(lambda: settled(cli, "httpd:2.4.39", 3), 120, "undo done")
    bounds.stop()
    assert bounds.violations == []
    assert bounds.worst[0] <= 6
    assert bounds.worst[1] >= 3


def test_missing_image_stalls_and_rollout_status_fails(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    manifest = (
        (MANIFESTS / "example-app.yaml")
        .read_text()
        .replace("  replicas: 3\n", "  replicas: 3\n  progressDeadlineSeconds: 15\n")
    )
    assert cli.run("apply", "-f", "-", stdin=manifest.encode()).returncode == 0
    wait_until(lambda: settled(cli, "httpd:2.4.39", 3), 90, "3 ready pods")
    assert cli.run("set", "image", "deploy/example-app", "example-app=nope/missing:1").returncode == 0
    status = cli.run("rollout", "status", "deploy/example-app", "--timeout", "90s", timeout=120)
    assert status.returncode != 0
    assert "exceeded its progress deadline" in status.stderr
    current = pods(cli)
    assert sum(1 for p in current if ready(p) and image_of(p) == "httpd:2.4.39") == 3
    waiting = [p for p in current if image_of(p) == "nope/missing:1"]
    assert waiting
    reasons = {
        s.get("state", {}).get("waiting", {}).get("reason")
        for p in waiting
        for s in p.get("status", {}).get("containerStatuses", [])
    }
    assert reasons & {"ErrImagePull", "ImagePullBackOff"}


def test_node_loss_is_healed_and_blips_are_ignored(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    assert cli.run("apply", "-f", str(MANIFESTS / "example-app.yaml")).returncode == 0
    wait_until(lambda: settled(cli, "httpd:2.4.39", 3), 90, "3 ready pods")
    before = {p["metadata"]["uid"] for p in pods(cli)}
    # A 5 s blip (the agent frozen: no heartbeats, no status) replaces nothing.
    blip = agents[2]
    assert blip.proc is not None
    blip.proc.send_signal(signal.SIGSTOP)
    time.sleep(5)  # the fault's duration is the scenario, not a wait for a condition
    blip.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: settled(cli, "httpd:2.4.39", 3), 30, "steady after the blip")
    assert {p["metadata"]["uid"] for p in pods(cli)} == before
    # Losing a node: its pod is running elsewhere within 20 s with defaults.
    lost = agents[0]
    lost.kill9()
    started = time.monotonic()
    wait_until(
        lambda: settled(cli, "httpd:2.4.39", 3) and lost.name not in {p["spec"].get("nodeName") for p in pods(cli)},
        40,
        "pod replaced on another node",
    )
    healed_in = time.monotonic() - started
    print(f"node loss healed in {healed_in:.1f}s")
    # When it comes back, its stale container is stopped and the count is exact.
    lost.start()
    wait_until(lambda: not [c for c in _containers(lost.name) if c], 60, "stale container stopped", lost.log)
    assert len(pods(cli)) == 3


def _containers(node: str) -> list[str]:
    import subprocess

    out = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=io.corral.node={node}"], capture_output=True, text=True, check=False
    ).stdout
    return out.split()


def test_control_plane_kill9_during_rollout_keeps_bounds(server: ServerProcess, agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    # Old pods now leave only once their node has stopped them, and the test images' httpd (PID 1)
    # ignores SIGTERM: a short grace period keeps ten one-at-a-time replacements quick.
    manifest = (
        (MANIFESTS / "example-app.yaml")
        .read_text()
        .replace("replicas: 3", "replicas: 10")
        .replace("    spec:\n      containers:", "    spec:\n      terminationGracePeriodSeconds: 2\n      containers:")
    )
    assert "terminationGracePeriodSeconds: 2" in manifest
    assert cli.run("apply", "-f", "-", stdin=manifest.encode()).returncode == 0
    wait_until(lambda: settled(cli, "httpd:2.4.39", 10), 120, "10 ready pods")
    bounds = Bounds(server, most=11, least_ready=10)
    manifest = manifest.replace("maxSurge: 3", "maxSurge: 1").replace("httpd:2.4.39", "corral-test/busybox:1")
    assert cli.run("apply", "-f", "-", stdin=manifest.encode()).returncode == 0
    for _ in range(3):
        server.kill9()
        server.start()
        wait_until(lambda: sum(image_of(p) == "corral-test/busybox:1" for p in pods(cli)) > 0, 60, "rollout going on")
    wait_until(lambda: settled(cli, "corral-test/busybox:1", 10), 180, "rollout done")
    bounds.stop()
    assert bounds.violations == []
