"""examples/stateful-app.yaml as the README has a new user run it: Redis as a StatefulSet on a claim,
a web app whose page script and greeting are ConfigMap files, its LoadBalancer Service on the node's
address. The count goes on across a deleted redis-0, and a changed greeting is served without a
restart."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until

pytestmark = pytest.mark.docker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stateful-app.yaml"
PAGE = "http://127.0.0.1:8084/cgi-bin/index"
_VISIT = re.compile(r"^(?P<greeting>.*) - visit number (?P<count>\d+)$")


@pytest.fixture
def agent_runtimes() -> tuple[str, ...]:
    return ("docker",)


def visit() -> tuple[str, int] | None:
    """The page's greeting and visit number, or None while it does not answer with one."""
    try:
        with urllib.request.urlopen(PAGE, timeout=3) as response:
            text = response.read().decode().strip()
    except (OSError, urllib.error.URLError):
        return None
    match = _VISIT.match(text)
    return (match["greeting"], int(match["count"])) if match else None


def pod(cli: Cli, name: str) -> dict[str, Any] | None:
    result = cli.run("get", "pod", name, "-o", "json")
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_the_stateful_example_counts_on_across_a_lost_database_pod(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    applied = cli.run("apply", "-f", str(EXAMPLE))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    first = wait_until(visit, 120, "the counter page answering with a visit number", agent.log)
    assert isinstance(first, tuple) and first[0] == "hello from corral"
    second = visit()
    assert second is not None and second[1] > first[1]

    old_uid = (pod(cli, "redis-0") or {})["metadata"]["uid"]
    assert cli.run("delete", "pod", "redis-0").returncode == 0
    wait_until(
        lambda: (pod(cli, "redis-0") or {}).get("metadata", {}).get("uid") not in (None, old_uid),
        60,
        "redis-0 back",
    )
    after = wait_until(
        lambda: (v := visit()) is not None and v[1] > second[1] and v, 90, "the count going on", agent.log
    )
    assert isinstance(after, tuple)

    # A new greeting in the ConfigMap is served without restarting the web pods.
    changed = EXAMPLE.read_text().replace("greeting: hello from corral", "greeting: hello again")
    assert cli.run("apply", "-f", "-", stdin=changed.encode()).returncode == 0
    wait_until(lambda: (v := visit()) is not None and v[0] == "hello again", 60, "the new greeting", agent.log)
    pods = json.loads(cli.run("get", "pods", "-l", "app=counter", "-o", "json").stdout)["items"]
    assert pods and all(c["restartCount"] == 0 for p in pods for c in p["status"]["containerStatuses"])
