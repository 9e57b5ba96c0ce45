"""Namespaces and PodDisruptionBudgets on a real server with real Docker agents:
`corral delete ns` removes a namespace's Deployment, pods, Service, Secret and
ConfigMap, then the namespace; `corral drain` of a node running both replicas
of a Deployment under a budget of minAvailable 1 evicts one pod, waits (the
budget refuses the second) until its replacement is Ready on the other node,
then evicts the other: never fewer than one Ready pod."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, remove_node_containers, wait_until
from tests.e2e.test_agent_docker import IMAGE
from tests.e2e.test_deployments import Bounds, pods, ready

pytestmark = pytest.mark.docker


def deployment(name: str, replicas: int, namespace: str = "default") -> dict[str, Any]:
    container = {"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]},
            },
        },
    }


def apply(cli: Cli, *docs: dict[str, Any]) -> None:
    result = cli.run("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs).encode())
    assert result.returncode == 0, result.stderr


def start_agents(server: ServerProcess, tmp_path: Path, count: int) -> list[AgentProcess]:
    procs = []
    for i in range(count):
        name = f"b{i}-{os.getpid()}"
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
    return procs


@pytest.fixture
def two_agents(server: ServerProcess, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    procs = start_agents(server, tmp_path, 2)
    yield procs
    for proc in procs:
        proc.stop()
        remove_node_containers(proc.name)


def test_deleting_a_namespace_deletes_what_is_in_it(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    created = cli.run("create", "namespace", "shop")
    assert created.returncode == 0 and created.stdout.strip() == "namespace/shop created", created.stderr
    again = cli.run("create", "ns", "shop")
    assert again.returncode == 1
    assert again.stderr.strip() == 'Error from server (AlreadyExists): namespaces "shop" already exists'
    listed = cli.run("get", "ns")
    assert listed.stdout.split("\n")[0].split() == ["NAME", "STATUS", "AGE"]
    assert any(line.split()[:2] == ["shop", "Active"] for line in listed.stdout.splitlines())
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 28080, "targetPort": 80}]},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "stringData": {"pw": "x"},
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "site", "namespace": "shop"},
        "data": {"a": "b"},
    }
    apply(cli, deployment("web", 1, "shop"), service, secret, config)

    def running() -> bool:
        result = cli.run("get", "pods", "-n", "shop", "-o", "json")
        items = json.loads(result.stdout)["items"] if result.returncode == 0 else []
        return len(items) == 1 and items[0].get("status", {}).get("phase") == "Running"

    wait_until(running, 60, "the shop's pod running", agent.log)
    deleted = cli.run("delete", "ns", "shop")
    assert deleted.returncode == 0 and deleted.stdout.strip() == "namespace/shop deleted", deleted.stderr
    assert "Warning" not in deleted.stderr
    wait_until(lambda: cli.run("get", "ns", "shop").returncode != 0, 60, "the namespace gone", agent.log)
    for kind in ("deploy", "rs", "pods", "svc", "secrets", "configmaps"):
        left = cli.run("get", kind, "-n", "shop", "-o", "json")
        assert left.returncode == 0 and json.loads(left.stdout)["items"] == [], (kind, left.stdout)
    refused = cli.run("delete", "namespace", "default")
    assert refused.returncode == 1
    assert 'Error from server (Forbidden): namespaces "default" is forbidden: this namespace may not be deleted' in (
        refused.stderr
    )


def test_drain_evicts_one_pod_at_a_time_under_a_budget(server: ServerProcess, two_agents: list[AgentProcess]) -> None:
    cli = Cli(server.env)
    drained, spare = two_agents
    assert cli.run("cordon", spare.name).returncode == 0
    apply(cli, deployment("example-app", 2))

    def both_ready_on_drained() -> bool:
        current = pods(cli)
        return len(current) == 2 and all(ready(p) and p["spec"].get("nodeName") == drained.name for p in current)

    wait_until(both_ready_on_drained, 90, "both replicas ready on the node to drain", drained.log)
    assert cli.run("uncordon", spare.name).returncode == 0
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "example-app"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "example-app"}}},
    }
    apply(cli, budget)

    def allows_one() -> bool:
        shown = cli.run("get", "pdb", "example-app").stdout.splitlines()
        return len(shown) == 2 and shown[1].split()[1:4] == ["1", "N/A", "1"]

    wait_until(allows_one, 30, "the budget computed")
    bounds = Bounds(server, most=10, least_ready=1)
    try:
        result = cli.run("drain", drained.name, "--timeout", "150s", timeout=180)
    finally:
        bounds.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"node/{drained.name} drained"
    assert "Cannot evict pod as it would violate the pod's disruption budget." in result.stderr
    assert "(will retry after 5s)" in result.stderr
    assert not bounds.violations, bounds.violations
    placed = pods(cli)
    assert len(placed) == 2 and {p["spec"]["nodeName"] for p in placed} == {spare.name}
