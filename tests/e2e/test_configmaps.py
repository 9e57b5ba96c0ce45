"""ConfigMaps end to end (process runtime): a pod whose envFrom names a ConfigMap that does not
exist yet waits with CreateContainerConfigError naming it, then runs with the values once the
ConfigMap is applied; `get` and `describe` show it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import PROCESS_PODS, AgentProcess, Cli, ServerProcess, wait_until
from tests.e2e.test_secrets import apply, waiting


@pytest.fixture
def agent_runtimes() -> tuple[str, ...]:
    return ("process",)


@pytest.fixture
def server_args() -> tuple[str, ...]:
    return PROCESS_PODS


def pod(name: str, node: str) -> dict[str, Any]:
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
                    "command": [
                        "/bin/sh",
                        "-c",
                        'echo "got mode=$mode/$APP_mode greeting=$APP_greeting level=$LEVEL"; env | grep -c ^1st;'
                        " sleep 30",
                    ],
                    "envFrom": [
                        {"configMapRef": {"name": "settings"}},
                        {"configMapRef": {"name": "settings"}, "prefix": "APP_"},
                    ],
                    "env": [
                        {"name": "APP_greeting", "value": "explicit"},
                        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
                    ],
                }
            ],
        },
    }


def test_a_pod_waits_for_its_configmap_then_runs_with_its_values(server: ServerProcess, agent: AgentProcess) -> None:
    cli = Cli(server.env)
    apply(cli, pod("web", agent.name))
    wait_until(
        lambda: waiting(cli, "web").get("reason") == "CreateContainerConfigError",
        30,
        "the missing configmap reported",
        agent.log,
    )
    assert waiting(cli, "web")["message"] == 'configmap "settings" not found'

    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"mode": "prod", "greeting": "from-configmap", "level": "3", "1st.bad": "skipped"},
    }
    apply(cli, settings)
    wait_until(
        lambda: "got mode=prod/prod greeting=explicit level=3\n0\n" in cli.run("logs", "web").stdout,
        30,
        "the configmap's values in the pod's env",
        agent.log,
    )

    table = cli.run("get", "cm")
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[0].split() == ["NAME", "DATA", "AGE"]
    assert table.stdout.split("\n")[1].split()[:2] == ["settings", "4"]
    shown = json.loads(cli.run("get", "configmap", "settings", "-o", "json").stdout)
    assert shown["data"] == settings["data"]
    described = cli.run("describe", "cm", "settings").stdout
    assert "level:\n----\n3" in described

    wait_until(
        lambda: "InvalidEnvironmentVariableNames" in cli.run("describe", "pod", "web").stdout,
        30,
        "the skipped key's event",
        server.log,
    )
    assert "Keys [1st.bad] from the EnvFrom configMap default/settings were skipped" in " ".join(
        cli.run("describe", "pod", "web").stdout.split()
    )

    invalid = cli.run("apply", "-f", "-", stdin=json.dumps({**settings, "data": {"a/b": "x"}}).encode())
    assert invalid.returncode != 0 and "data.a/b" in invalid.stderr
    deleted = cli.run("delete", "configmap", "settings")
    assert deleted.returncode == 0, deleted.stderr
    assert cli.run("get", "cm", "settings").returncode != 0
