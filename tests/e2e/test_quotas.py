"""A ResourceQuota, a LimitRange and a Deployment applied with the CLI to a real
server (no node: pods are created, not run): the ReplicaSet makes the pods that
fit, each gets the LimitRange's defaults, the rest is refused with a
FailedCreate event, and `corral get quota` / `describe` show what is used."""

from __future__ import annotations

import yaml

from tests.e2e.conftest import Cli, wait_until

MANIFEST = b"""\
apiVersion: v1
kind: ResourceQuota
metadata:
  name: team
spec:
  hard:
    pods: "2"
    requests.cpu: "1"
    limits.memory: 1Gi
---
apiVersion: v1
kind: LimitRange
metadata:
  name: defaults
spec:
  limits:
    - type: Container
      default: {cpu: 300m, memory: 256Mi}
      defaultRequest: {cpu: 200m, memory: 128Mi}
      max: {cpu: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: httpd:2.4.39
"""

TOO_BIG = b"""\
apiVersion: v1
kind: Pod
metadata:
  name: big
spec:
  containers:
    - name: big
      image: httpd:2.4.39
      resources:
        limits: {cpu: "2"}
"""


def test_quota_and_limit_range_bound_a_deployment(cli: Cli) -> None:
    applied = cli.run("apply", "-f", "-", stdin=MANIFEST)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        "resourcequota/team created",
        "limitrange/defaults created",
        "deployment.apps/web created",
    ]
    assert applied.stderr == ""

    def failed_create() -> str:
        events = cli.run("get", "events")
        return events.stdout if "FailedCreate" in events.stdout else ""

    events = str(wait_until(failed_create, 30, "a FailedCreate event"))
    assert "exceeded quota: team, requested: pods=1, used: pods=2, limited: pods=2" in events

    pods = yaml.safe_load(cli.run("get", "pods", "-o", "yaml").stdout)["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["containers"][0]["resources"] == {
            "requests": {"cpu": "200m", "memory": "128Mi"},
            "limits": {"cpu": "300m", "memory": "256Mi"},
        }

    table = cli.run("get", "quota").stdout.splitlines()
    assert table[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert table[1].startswith("team ")
    assert "pods: 2/2, requests.cpu: 400m/1" in table[1] and "limits.memory: 512Mi/1Gi" in table[1]
    assert cli.run("get", "limits").stdout.splitlines()[0].split() == ["NAME", "CREATED", "AT"]

    described = cli.run("describe", "quota", "team")
    assert described.returncode == 0, described.stderr
    assert any(line.split() == ["pods", "2", "2"] for line in described.stdout.splitlines()), described.stdout
    shown = yaml.safe_load(cli.run("get", "quota", "team", "-o", "yaml").stdout)
    assert shown["status"]["used"] == {"limits.memory": "512Mi", "pods": "2", "requests.cpu": "400m"}

    refused = cli.run("apply", "-f", "-", stdin=TOO_BIG)
    assert refused.returncode != 0
    assert (
        'pod "big" is forbidden: spec.containers[0].resources.limits.cpu: '
        "maximum cpu usage per Container is 1, but limit is 2"
    ) in refused.stderr

    cli.run("scale", "deployment", "web", "--replicas", "1")
    wait_until(lambda: "pods: 1/2" in cli.run("get", "quota").stdout, 30, "the quota recounted after the scale-down")
