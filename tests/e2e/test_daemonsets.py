"""DaemonSets on real agents with Docker: one Running pod per node within 15 s, one on a node
that joins, none on a tainted node unless tolerated, `corral drain` refusing DaemonSet pods and
leaving them with --ignore-daemonsets, a rolling update with maxUnavailable 1 (`corral
rollout restart ds/...`) that never has two nodes without a ready pod, and a removed node's
pod deleted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.client import Client, ClientError, ConflictError
from protos.corral.v1 import node_pb2, pod_pb2
from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, cli_credentials, remove_node_containers, wait_until
from tests.e2e.test_agent_docker import IMAGE
from tests.e2e.test_namespaces_and_budgets import start_agents

pytestmark = pytest.mark.docker

# The bound for a DaemonSet's pods to be Running on every node, and on a node that joins.
PLACED_WITHIN = 15.0


def daemon_set(name: str, *, tolerate: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}],
    }
    if tolerate:
        spec["tolerations"] = [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def apply(cli: Cli, *docs: dict[str, Any]) -> None:
    result = cli.run("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs).encode())
    assert result.returncode == 0, result.stderr


def running_nodes(cli: Cli, name: str) -> list[str]:
    """The nodes with a Running pod of DaemonSet `name` (one entry per pod)."""
    result = cli.run("get", "pods", "-l", f"app={name}", "-o", "json")
    assert result.returncode == 0, result.stderr
    items = json.loads(result.stdout)["items"]
    return sorted(
        p["spec"].get("nodeName", "")
        for p in items
        if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    )


def taint(client: Client, node: str, key: str, value: str, effect: str) -> None:
    for _ in range(20):
        obj = client.get("Node", node)
        assert isinstance(obj, node_pb2.Node)
        obj.spec.taints.add(key=key, value=value, effect=effect)
        try:
            client.update(obj)
            return
        except ConflictError:
            continue
    raise AssertionError(f"could not taint {node}")


class Availability:
    """Follows the pods of one DaemonSet through a watch and records, after every change,
    the nodes without a ready pod that is not being deleted."""

    def __init__(self, server: ServerProcess, name: str, nodes: list[str]) -> None:
        self.client = Client(server.address, cli_credentials(server.env), timeout=5)
        self.name, self.nodes = name, nodes
        self.events = 0
        self.worst = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                items, revision = self.client.list("pods", "default", selector=f"app={self.name}")
                state = {p.metadata.name: p for p in items if isinstance(p, pod_pb2.Pod)}
                for ev in self.client.watch("pods", "default", selector=f"app={self.name}", resource_version=revision):
                    if self._stop.is_set():
                        return
                    if ev.type == "DELETED":
                        state.pop(ev.obj.metadata.name, None)
                    elif isinstance(ev.obj, pod_pb2.Pod):
                        state[ev.obj.metadata.name] = ev.obj
                    self._check(state)
            except ClientError:
                time.sleep(0.2)

    def _check(self, state: dict[str, pod_pb2.Pod]) -> None:
        self.events += 1
        ready = {
            p.spec.node_name
            for p in state.values()
            if not p.metadata.HasField("deletion_timestamp")
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)
        }
        missing = [n for n in self.nodes if n not in ready]
        self.worst = max(self.worst, len(missing))
        if len(missing) > 1:
            self.violations.append(f"no ready pod on {missing} after event {self.events}")

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def three_agents(server: ServerProcess, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    procs = start_agents(server, tmp_path, 3)
    yield procs
    for proc in procs:
        proc.stop()
        remove_node_containers(proc.name)


def test_daemon_sets_follow_nodes_taints_drain_and_roll(
    server: ServerProcess, three_agents: list[AgentProcess], tmp_path: Path
) -> None:
    cli = Cli(server.env)
    client = Client(server.address, cli_credentials(server.env), timeout=10)
    names = sorted(a.name for a in three_agents)
    tainted = names[2]
    taint(client, tainted, "dedicated", "infra", "NoSchedule")

    started = time.monotonic()
    apply(cli, daemon_set("agentd", tolerate=True), daemon_set("plain"))
    wait_until(lambda: running_nodes(cli, "agentd") == names, PLACED_WITHIN, "a Running pod on every node")
    placed = time.monotonic() - started
    wait_until(lambda: running_nodes(cli, "plain") == names[:2], PLACED_WITHIN, "pods on the untainted nodes")
    listed = cli.run("get", "ds", "agentd")
    assert listed.stdout.split("\n")[0].split() == [
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "NODE",
        "SELECTOR",
        "AGE",
    ]
    assert listed.stdout.split("\n")[1].split()[:6] == ["agentd", "3", "3", "3", "3", "3"]

    # A node that joins gets its pod.
    joined = AgentProcess(
        server.address, "d3-join", tmp_path / "d3", server.env, tmp_path / "d3.log", runtimes=("docker",)
    )
    joined.start()
    try:
        wait_until(lambda: cli.run("get", "node", joined.name).returncode == 0, 30, "d3 registered", joined.log)
        registered = time.monotonic()
        everyone = sorted([*names, joined.name])
        wait_until(lambda: running_nodes(cli, "agentd") == everyone, PLACED_WITHIN, "a pod on the node that joined")
        joined_after = time.monotonic() - registered
        assert running_nodes(cli, "plain") == sorted([*names[:2], joined.name])

        # drain refuses DaemonSet pods, and with --ignore-daemonsets leaves them running.
        refused = cli.run("drain", names[0], "--timeout", "20s")
        assert refused.returncode != 0
        assert "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)" in refused.stderr
        drained = cli.run("drain", names[0], "--ignore-daemonsets", "--timeout", "20s")
        assert drained.returncode == 0, drained.stderr
        assert "Warning: ignoring DaemonSet-managed Pods" in drained.stderr
        assert names[0] in running_nodes(cli, "agentd")
        assert cli.run("uncordon", names[0]).returncode == 0

        # A rolling update with maxUnavailable 1 never leaves two nodes without a ready pod.
        watcher = Availability(server, "agentd", everyone)
        restarted = cli.run("rollout", "restart", "ds/agentd")
        assert restarted.returncode == 0, restarted.stderr
        status = cli.run("rollout", "status", "ds/agentd", "--timeout", "120s", timeout=150)
        assert status.returncode == 0, status.stdout + status.stderr
        assert 'daemon set "agentd" successfully rolled out' in status.stdout
        wait_until(lambda: running_nodes(cli, "agentd") == everyone, 30, "one pod per node after the update")
        watcher.stop()
        assert watcher.events >= 8  # four pods deleted and four made, at least
        assert watcher.violations == []
        assert watcher.worst == 1

        # A node removed takes its pod away.
        joined.stop()
        removed = time.monotonic()
        assert cli.run("delete", "node", joined.name).returncode == 0

        def gone() -> bool:
            result = cli.run("get", "pods", "-l", "app=agentd", "-o", "json")
            if result.returncode != 0:
                return False
            items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
            return not any(p["spec"].get("nodeName") == joined.name for p in items)

        wait_until(gone, 30, "the removed node's pod deleted")
        removed_after = time.monotonic() - removed
        assert running_nodes(cli, "agentd") == names
    finally:
        joined.stop()
        remove_node_containers(joined.name)
    print(
        f"daemon pods Running on 3 nodes {placed:.1f} s after apply; on a joined node {joined_after:.1f} s; "
        f"a removed node's pod gone {removed_after:.1f} s after its deletion"
    )
