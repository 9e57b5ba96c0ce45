"""A StatefulSet with a headless Service on a real agent with Docker: pods db-0 then db-1 in
order, each with its own host name, `nslookup db-0.db` from a client pod answering db-0's
address, a deleted db-0 coming back under its name, and `corral rollout restart sts/db`
replacing the pods from the highest ordinal down."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until

pytestmark = pytest.mark.docker

MANIFEST = """
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports:
  - {name: http, port: 80}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: db
        image: corral-test/busybox:1
        command: ["sh", "-c"]
        args:
        - echo "host $(hostname)"; mkdir -p /www; hostname > /www/index.html;
          exec httpd -f -p 80 -h /www
        ports:
        - {name: http, containerPort: 80}
        readinessProbe:
          httpGet: {path: /, port: http}
          initialDelaySeconds: 2
          periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: corral-test/busybox:1
    command: ["sh", "-c"]
    args:
    - while true; do
        out=$(nslookup db-0.db 2>&1);
        ip=$(echo "$out" | awk '/^Name:/ {n=1} n && /^Address/ {print $NF}' | head -1);
        echo "resolved $ip";
        echo "$out" | head -12;
        sleep 1;
      done
"""


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


def test_statefulset_with_a_headless_service(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    result = cli.run("apply", "-f", "-", stdin=MANIFEST.encode())
    assert result.returncode == 0, result.stdout + result.stderr

    # In order: while db-0 is not Ready (its probe waits 2 s), there is no db-1.
    seen_db1_before_db0_ready = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        db0, db1 = pod(cli, "db-0"), pod(cli, "db-1")
        if db1 is not None and not is_ready(pod(cli, "db-0")) and not is_ready(db0):
            seen_db1_before_db0_ready = True
        if is_ready(db0) and is_ready(db1):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"db-0 and db-1 not ready in 90 s\n{agent.log.read_text()[-3000:]}")
    assert not seen_db1_before_db0_ready
    assert pod(cli, "db-0")["spec"]["hostname"] == "db-0"  # type: ignore[index]
    assert "host db-0" in cli.run("logs", "db-0").stdout
    assert "host db-1" in cli.run("logs", "db-1").stdout
    table = cli.run("get", "statefulsets")
    assert table.stdout.split()[:6] == ["NAME", "READY", "AGE", "db", "2/2", table.stdout.split()[5]]

    # The client resolves db-0.db (the search list gives db-0.db.default.svc.cluster.local) to db-0's address.
    def resolved() -> set[str]:
        logs = cli.run("logs", "client").stdout
        return {line.split()[1] for line in logs.splitlines() if line.startswith("resolved ") and len(line.split()) > 1}

    address = pod(cli, "db-0")["status"]["podIP"]  # type: ignore[index]
    try:
        wait_until(lambda: address in resolved(), 60, f"the client resolving db-0.db to {address}")
    except AssertionError as e:
        raise AssertionError(f"{e}\nclient log:\n{cli.run('logs', 'client').stdout[-2000:]}") from None

    # A deleted db-0 comes back under its name.
    old = uid(pod(cli, "db-0"))
    assert cli.run("delete", "pod", "db-0").returncode == 0
    wait_until(lambda: uid(pod(cli, "db-0")) not in ("", old) and is_ready(pod(cli, "db-0")), 90, "db-0 back")

    # rollout restart replaces db-1 first, then db-0.
    before = {name: uid(pod(cli, name)) for name in ("db-0", "db-1")}
    result = cli.run("rollout", "restart", "sts/db")
    assert result.returncode == 0, result.stderr
    assert "statefulset.apps/db restarted" in result.stdout
    replaced: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(replaced) < 2:
        for name in ("db-1", "db-0"):
            if name not in replaced and uid(pod(cli, name)) not in ("", before[name]):
                replaced.append(name)
        time.sleep(0.2)
    assert replaced == ["db-1", "db-0"]
    status = cli.run("rollout", "status", "sts/db", "--timeout", "120s", timeout=150)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "partitioned roll out complete: 2 new pods have been updated..." in status.stdout
