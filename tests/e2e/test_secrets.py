"""Secrets end to end: a pod gets a Secret's value as an env var (process runtime),
the value is in no file of the embedded etcd, and `get -o yaml` does not show it."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import PROCESS_PODS, AgentProcess, Cli, ServerProcess, wait_until


@pytest.fixture
def agent_runtimes() -> tuple[str, ...]:
    return ("process",)


@pytest.fixture
def server_args() -> tuple[str, ...]:
    return PROCESS_PODS


def apply(cli: Cli, doc: dict[str, Any]) -> None:
    result = cli.run("apply", "-f", "-", stdin=json.dumps(doc).encode())
    assert result.returncode == 0, result.stderr


def pod(name: str, node: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "runtimeClassName": "process",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "app",
                    "image": "host",
                    "command": ["/bin/sh", "-c", "echo got=$PASSWORD; sleep 30"],
                    "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}],
                }
            ],
        },
    }


def waiting(cli: Cli, name: str) -> dict[str, Any]:
    result = cli.run("get", "pod", name, "-o", "json")
    statuses = (
        json.loads(result.stdout).get("status", {}).get("containerStatuses", []) if result.returncode == 0 else []
    )
    found: dict[str, Any] = statuses[0].get("state", {}).get("waiting", {}) if statuses else {}
    return found


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_pod_gets_its_secret_and_etcd_never_holds_it(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    value = f"pw-{uuid.uuid4().hex}"
    apply(cli, pod("early", agent.name, "late"))
    wait_until(
        lambda: waiting(cli, "early").get("reason") == "CreateContainerConfigError",
        30,
        "the missing secret reported",
        agent.log,
    )
    assert waiting(cli, "early")["message"] == 'secret "late" not found'

    apply(
        cli,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db"},
            "data": {"password": base64.b64encode(value.encode()).decode()},
        },
    )
    apply(cli, pod("app", agent.name, "db"))
    wait_until(lambda: f"got={value}" in cli.run("logs", "app").stdout, 30, "the secret in the pod's env", agent.log)

    apply(cli, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late"}, "stringData": {"password": value}})
    wait_until(lambda: f"got={value}" in cli.run("logs", "early").stdout, 30, "the late secret picked up", agent.log)

    table = cli.run("get", "secrets")
    assert table.returncode == 0 and table.stdout.split("\n")[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    shown = cli.run("get", "secret", "db", "-o", "yaml")
    assert shown.returncode == 0 and "<redacted>" in shown.stdout
    encoded = base64.b64encode(value.encode()).decode()
    assert value not in shown.stdout and encoded not in shown.stdout
    assert encoded in cli.run("get", "secret", "db", "-o", "yaml", "--show-secrets").stdout
    described = cli.run("describe", "secret", "db").stdout
    assert f"password:  {len(value)} bytes" in described and value not in described

    etcd_dir = server.data_dir / "etcd"
    assert etcd_dir.is_dir()
    assert files_containing(etcd_dir, value.encode()) == []
    assert (server.data_dir / "secrets.key").stat().st_mode & 0o777 == 0o600
