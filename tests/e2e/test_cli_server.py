"""`corral server` + `corral apply/get/describe/delete`, as a user runs them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from corral.cli.config import write_config
from tests.e2e.conftest import MANIFESTS, Cli, ServerProcess
from tests.pki import TestCluster

pytestmark = pytest.mark.etcd

EXAMPLE = MANIFESTS / "example-app.yaml"


def test_example_manifest_applies_and_survives_kill9(server: ServerProcess, cli: Cli) -> None:
    applied = cli.run("apply", "-f", str(EXAMPLE))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "deployment.apps/example-app created"
    assert "spec.strategy.rollingUpdate.type" in applied.stderr
    assert applied.stderr.startswith("Warning: ")

    got = cli.run("get", "deploy", "example-app", "-o", "json")
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert doc["kind"] == "Deployment" and doc["apiVersion"] == "apps/v1"
    assert doc["spec"]["replicas"] == 3
    assert doc["spec"]["strategy"]["type"] == "RollingUpdate"
    assert doc["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 3, "maxUnavailable": 0}
    uid = doc["metadata"]["uid"]

    again = cli.run("apply", "-f", str(EXAMPLE))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "deployment.apps/example-app unchanged"

    server.kill9()
    server.start()
    after = json.loads(cli.run("get", "deployment/example-app", "-o", "json").stdout)
    assert after["metadata"]["uid"] == uid
    assert after["metadata"]["resourceVersion"] == doc["metadata"]["resourceVersion"]


def test_get_forms_and_outputs(cli: Cli) -> None:
    assert cli.run("apply", "-f", str(EXAMPLE)).returncode == 0
    table = cli.run("get", "deployments")
    assert table.returncode == 0
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:2] == ["example-app", "0/3"]
    wide = cli.run("get", "deploy", "-o", "wide", "-A")
    assert "httpd:2.4.39" in wide.stdout and wide.stdout.startswith("NAMESPACE")
    listed = json.loads(cli.run("get", "deploy", "-o", "json").stdout)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["example-app"]
    assert cli.run("get", "deploy", "-l", "app=nothing", "-o", "json").stdout.count("example-app") == 0
    yaml_out = cli.run("get", "deployment.apps", "example-app", "-o", "yaml")
    assert "maxSurge: 3" in yaml_out.stdout
    assert cli.run("get", "deploy", "-o", "name").stdout.strip() == "deployment.apps/example-app"
    # The Deployment controller scales up a ReplicaSet and says so in an event.
    deadline = time.monotonic() + 30
    described = cli.run("describe", "deploy", "example-app")
    while "ScalingReplicaSet" not in described.stdout and time.monotonic() < deadline:
        time.sleep(0.2)
        described = cli.run("describe", "deploy", "example-app")
    assert described.returncode == 0
    assert "Name:               example-app" in described.stdout
    assert "Scaled up replica set example-app-" in described.stdout
    missing = cli.run("get", "deploy", "nope")
    assert missing.returncode == 1 and 'deployments.apps "nope" not found' in missing.stderr
    unknown = cli.run("get", "gizmos")
    assert unknown.returncode == 1 and 'unknown kind "gizmos"' in unknown.stderr
    assert "Traceback" not in unknown.stderr + missing.stderr


def test_delete_by_file_and_by_name(cli: Cli, tmp_path: Path) -> None:
    assert cli.run("apply", "-f", str(EXAMPLE)).returncode == 0
    deleted = cli.run("delete", "-f", str(EXAMPLE))
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "deployment.apps/example-app deleted"
    assert cli.run("get", "deploy", "example-app").returncode == 1
    assert cli.run("apply", "-f", "-", stdin=EXAMPLE.read_bytes()).returncode == 0
    assert cli.run("delete", "deploy", "example-app").returncode == 0
    gone = cli.run("delete", "deploy", "example-app")
    assert gone.returncode == 1 and "not found" in gone.stderr
    assert cli.run("delete", "deploy", "example-app", "--ignore-not-found").returncode == 0


BAD_PORT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: httpd:2.4
          ports: [{containerPort: 70000}]
"""

GOOD_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            GOOD_SERVICE + "---\n" + BAD_PORT,
            "web.yaml[1] spec.template.spec.containers[0].ports[0].containerPort: must be 1-65535, got 70000",
            id="server-side-range",
        ),
        pytest.param(
            BAD_PORT.replace("replicas", "x").replace("selector:", "replicas: three\n  selector:"),
            "web.yaml[0] spec.replicas: expected an integer",
            id="wrong-type",
        ),
        pytest.param(
            BAD_PORT.replace("image: httpd:2.4", "image: httpd:2.4\n          imagePolicy: Always"),
            "web.yaml[0] spec.template.spec.containers[0].imagePolicy: unknown field",
            id="unknown-field",
        ),
        pytest.param("apiVersion: v1\nkind: Gizmo\nmetadata: {name: x}\n", "web.yaml[0] kind", id="unknown-kind"),
        pytest.param(
            "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
            "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n",
            "alias",
            id="alias-bomb",
        ),
        pytest.param("[" * 150 + "]" * 150, "nesting deeper than 100", id="deep-nesting"),
        pytest.param("kind: Service\n\x00\x01\x02\xff\xfe", "web.yaml", id="binary"),
        pytest.param("apiVersion: v1\nkind: Service\nmetadata: {name: x\n", "invalid YAML", id="syntax"),
    ],
)
def test_bad_manifests_write_nothing(cli: Cli, tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "web.yaml"
    path.write_bytes(content.encode("utf-8", "surrogateescape") if "\xff" not in content else content.encode("latin-1"))
    result = cli.run("apply", "-f", str(path))
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    for kind in ("deployments", "services"):
        listed = json.loads(cli.run("get", kind, "-A", "-o", "json").stdout)
        assert listed["items"] == []


def test_oversized_document_is_refused(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: big\n  annotations:\n    a: '"
        + "x" * (2 * 1024 * 1024)
        + "'\n"
    )
    result = cli.run("apply", "-f", str(path))
    assert result.returncode != 0
    assert "big.yaml" in result.stderr and "1 MiB" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_message(cli_env: dict[str, str]) -> None:
    write_config("127.0.0.1:1", TestCluster().admin(), Path(cli_env["XDG_CONFIG_HOME"]) / "corral" / "config.yaml")
    result = Cli({**cli_env, "CORRAL_SERVER": "127.0.0.1:1"}).run("get", "pods")
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr and "corral server" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_credentials_message(cli_env: dict[str, str]) -> None:
    result = Cli({**cli_env, "CORRAL_SERVER": "127.0.0.1:1"}).run("get", "pods")
    assert result.returncode == 1
    assert "no credentials in" in result.stderr and "corral login" in result.stderr
    assert "Traceback" not in result.stderr
