"""`corral rollout undo ds/NAME` on a real agent with Docker: a template change is recorded as
revision 2, `rollout history` lists both, and undo brings the first template's pod back (its
revision renumbered 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, remove_node_containers, wait_until
from tests.e2e.test_daemonsets import apply, daemon_set
from tests.e2e.test_namespaces_and_budgets import start_agents

pytestmark = pytest.mark.docker

NAME = "hist"


@pytest.fixture
def agent(server: ServerProcess, tmp_path: Path) -> Iterator[AgentProcess]:
    (proc,) = start_agents(server, tmp_path, 1)
    yield proc
    proc.stop()
    remove_node_containers(proc.name)


def running_hashes(cli: Cli) -> list[str]:
    result = cli.run("get", "pods", "-l", f"app={NAME}", "-o", "json")
    assert result.returncode == 0, result.stderr
    return sorted(
        p["metadata"]["labels"]["controller-revision-hash"]
        for p in json.loads(result.stdout)["items"]
        if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    )


def revisions(cli: Cli) -> dict[str, int]:
    result = cli.run("get", "controllerrevisions", "-o", "json")
    assert result.returncode == 0, result.stderr
    return {r["metadata"]["name"]: int(r.get("revision", 0)) for r in json.loads(result.stdout)["items"]}


def test_rollout_undo_daemon_set(cli: Cli, agent: AgentProcess) -> None:
    first = daemon_set(NAME)
    apply(cli, first)
    wait_until(lambda: len(running_hashes(cli)) == 1, 60, "the first pod Running", agent.log)
    (h1,) = running_hashes(cli)
    assert revisions(cli) == {f"{NAME}-{h1}": 1}

    second = daemon_set(NAME)
    second["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "VERSION", "value": "2"}]
    apply(cli, second)
    wait_until(lambda: running_hashes(cli) not in ([], [h1]), 60, "the second template's pod Running", agent.log)
    (h2,) = running_hashes(cli)
    assert revisions(cli) == {f"{NAME}-{h1}": 1, f"{NAME}-{h2}": 2}

    history = cli.run("rollout", "history", f"ds/{NAME}")
    assert history.returncode == 0, history.stderr
    assert [line.split()[0] for line in history.stdout.splitlines()[2:]] == ["1", "2"]
    detail = cli.run("rollout", "history", f"ds/{NAME}", "--revision", "2")
    assert "VERSION=2" in detail.stdout

    undo = cli.run("rollout", "undo", f"ds/{NAME}")
    assert undo.returncode == 0, undo.stderr
    assert undo.stdout.strip() == f"daemonset.apps/{NAME} rolled back"
    wait_until(lambda: running_hashes(cli) == [h1], 60, "the first template's pod back", agent.log)
    wait_until(lambda: revisions(cli) == {f"{NAME}-{h1}": 3, f"{NAME}-{h2}": 2}, 15, "revision 1 renumbered 3")
    table = cli.run("get", "controllerrevisions")
    assert table.stdout.split()[:4] == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert f"daemonset.apps/{NAME}" in table.stdout
