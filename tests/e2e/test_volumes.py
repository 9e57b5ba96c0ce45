"""Persistent volumes end to end on real Docker: a Deployment's pod writes to its claim's volume;
`corral delete pod` three times, each replacement lands on the volume's node and finds every line
written before; `corral get pvc,pv` shows both Bound and the node; deleting the claim deletes the
directory and the volume (the default class's reclaimPolicy Delete)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import AgentProcess, Cli, ServerProcess, wait_until

pytestmark = pytest.mark.docker

IMAGE = "corral-test/busybox:1"
CLAIM = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "data"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}},
}


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "writer"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "writer"}},
            "template": {
                "metadata": {"labels": {"app": "writer"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "app",
                            "image": IMAGE,
                            "command": [
                                "/bin/sh",
                                "-c",
                                'echo "$HOSTNAME" >> /data/starts; echo "lines=$(wc -l < /data/starts)"; sleep 3600',
                            ],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                },
            },
        },
    }


def apply(cli: Cli, *docs: dict[str, Any]) -> None:
    result = cli.run("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs).encode())
    assert result.returncode == 0, result.stderr


def running_pod(cli: Cli) -> str:
    """The name of the writer's running pod not being deleted ("" if none)."""
    result = cli.run("get", "pods", "-l", "app=writer", "-o", "json")
    if result.returncode != 0:
        return ""
    for item in json.loads(result.stdout).get("items", []):
        if item["status"].get("phase") == "Running" and not item["metadata"].get("deletionTimestamp"):
            return str(item["metadata"]["name"])
    return ""


def get_json(cli: Cli, *args: str) -> dict[str, Any]:
    result = cli.run("get", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_a_claims_data_survives_three_pod_deletions_and_goes_with_the_claim(
    server: ServerProcess, agent: AgentProcess
) -> None:
    cli = Cli(server.env)
    apply(cli, CLAIM, deployment())
    seen: list[str] = []
    for round_ in range(4):
        name = wait_until(
            lambda: (p := running_pod(cli)) and p not in seen and p, 60, f"writer pod {round_} running", agent.log
        )
        assert isinstance(name, str)
        seen.append(name)
        wait_until(
            lambda n=name, r=round_: f"lines={r + 1}" in cli.run("logs", n).stdout,  # type: ignore[misc]
            30,
            f"pod {round_} saw the {round_} lines before it",
            agent.log,
        )
        pod = get_json(cli, "pod", name)
        assert pod["spec"]["nodeName"] == agent.name
        if round_ < 3:
            assert cli.run("delete", "pod", name).returncode == 0

    claim = get_json(cli, "pvc", "data")
    assert claim["status"]["phase"] == "Bound"
    volume_name = claim["spec"]["volumeName"]
    volume = get_json(cli, "pv", volume_name)
    path = Path(volume["spec"]["hostPath"]["path"])
    assert path.is_relative_to((agent.data_dir / "storage").resolve())
    assert len(path.joinpath("starts").read_text().split()) == len(seen) == 4

    described = cli.run("describe", "pvc", "data")
    assert "ProvisioningSucceeded" in described.stdout, described.stdout

    table = cli.run("get", "pvc,pv")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines() if line.strip()]
    claim_row = next(r for r in rows if r[0] == "persistentvolumeclaim/data")
    volume_row = next(r for r in rows if r[0] == f"persistentvolume/{volume_name}")
    assert claim_row[1] == "Bound" and claim_row[-1] == agent.name
    assert "Bound" in volume_row and volume_row[-1] == agent.name and "default/data" in volume_row

    assert cli.run("delete", "deployment", "writer").returncode == 0
    assert cli.run("delete", "pvc", "data").returncode == 0
    wait_until(lambda: not path.exists(), 60, "the volume's directory deleted on the node", agent.log)
    wait_until(lambda: cli.run("get", "pv", volume_name).returncode != 0, 30, "the PersistentVolume removed", agent.log)
