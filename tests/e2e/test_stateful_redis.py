"""A real database as a StatefulSet on a real agent with Docker: two Redis replicas (Debian's
redis-server, image made by scripts/docker-setup) on claims from the local-path provisioner. Each
replica keeps its own data across `corral delete pod` and `corral rollout restart sts/db`, and a
client pod reaches `db-0.db` by name.

Each replica, at every start, stores its host name under `me` if the key is new and counts its
starts under `starts` (Redis' append-only file in /data, the claim); it prints both. Its data
survived when the count goes up and `me` is still its own name."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until

pytestmark = pytest.mark.docker

IMAGE = "corral-test/redis:7"
MANIFEST = f"""
apiVersion: v1
kind: Service
metadata: {{name: db}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports:
  - {{name: redis, port: 6379}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec:
  serviceName: db
  replicas: 2
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: redis
        image: {IMAGE}
        command: ["sh", "-c"]
        args:
        - redis-server --protected-mode no --dir /data --appendonly yes --appendfsync always &
          until redis-cli ping >/dev/null 2>&1; do sleep 0.2; done;
          redis-cli setnx me "$(hostname)" >/dev/null;
          echo "starts=$(redis-cli incr starts) me=$(redis-cli get me)";
          wait
        ports:
        - {{name: redis, containerPort: 6379}}
        readinessProbe:
          exec: {{command: ["redis-cli", "ping"]}}
          periodSeconds: 1
        volumeMounts:
        - {{name: data, mountPath: /data}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c"]
    args:
    - while true; do echo "db-0.db says $(redis-cli -h db-0.db get me 2>&1)"; sleep 1; done
"""
_STARTS = re.compile(r"^starts=(\d+) me=(\S+)$")


@pytest.fixture
def agent_runtimes() -> tuple[str, ...]:
    return ("docker",)


def pod(cli: Cli, name: str) -> dict[str, Any] | None:
    result = cli.run("get", "pod", name, "-o", "json")
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def is_ready(found: dict[str, Any] | None) -> bool:
    conditions = (found or {}).get("status", {}).get("conditions", [])
    return not (found or {}).get("metadata", {}).get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def uid(found: dict[str, Any] | None) -> str:
    return str((found or {}).get("metadata", {}).get("uid", ""))


def starts(cli: Cli, name: str) -> tuple[int, str] | None:
    """The replica's last start line: (starts counted, its `me`)."""
    for line in reversed(cli.run("logs", name).stdout.splitlines()):
        match = _STARTS.match(line.strip())
        if match:
            return int(match[1]), match[2]
    return None


def replaced_and_ready(cli: Cli, name: str, old_uid: str) -> bool:
    found = pod(cli, name)
    return uid(found) not in ("", old_uid) and is_ready(found)


def test_a_redis_statefulset_keeps_each_replicas_data(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    result = cli.run("apply", "-f", "-", stdin=MANIFEST.encode())
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        wait_until(lambda: is_ready(pod(cli, "db-0")) and is_ready(pod(cli, "db-1")), 120, "db-0 and db-1 ready")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{cli.run('get', 'pods,pvc,pv').stdout}\n{agent.log.read_text()[-3000:]}") from None
    assert starts(cli, "db-0") == (1, "db-0")
    assert starts(cli, "db-1") == (1, "db-1")
    claims = cli.run("get", "pvc")
    assert re.search(r"data-db-0\s+Bound", claims.stdout) and re.search(r"data-db-1\s+Bound", claims.stdout), (
        claims.stdout
    )

    # The client reaches db-0 by its stable name.
    wait_until(lambda: "db-0.db says db-0" in cli.run("logs", "client").stdout, 60, "the client reading db-0.db")

    # Deleted three times, db-0 comes back on its own data each time.
    for expected in (2, 3, 4):
        old = uid(pod(cli, "db-0"))
        assert cli.run("delete", "pod", "db-0").returncode == 0
        wait_until(lambda old=old: replaced_and_ready(cli, "db-0", old), 90, "db-0 back")  # type: ignore[misc]
        wait_until(lambda: starts(cli, "db-0") is not None, 30, "db-0's start line")
        assert starts(cli, "db-0") == (expected, "db-0")

    # A rolling restart replaces both; each keeps its own data.
    before = {name: uid(pod(cli, name)) for name in ("db-0", "db-1")}
    assert cli.run("rollout", "restart", "sts/db").returncode == 0
    status = cli.run("rollout", "status", "sts/db", "--timeout", "180s", timeout=200)
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ("db-0", "db-1"):
        wait_until(lambda name=name: replaced_and_ready(cli, name, before[name]), 60, f"{name} replaced")  # type: ignore[misc]
    assert starts(cli, "db-0") == (5, "db-0")
    assert starts(cli, "db-1") == (2, "db-1")
