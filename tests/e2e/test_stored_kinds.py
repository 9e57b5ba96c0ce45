"""A chart-like file (ServiceAccount, RBAC, NetworkPolicy, a Deployment that
names its service account, a v1 HPA) applied to a real server: accepted with one
warning each, listed, shown, and removed by `corral delete -f`."""

from __future__ import annotations

import yaml

from tests.e2e.conftest import Cli
from tests.unit.test_stored_kinds import CHART

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      serviceAccountName: web
      automountServiceAccountToken: false
      containers:
        - name: web
          image: httpd:2.4.39
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  targetCPUUtilizationPercentage: 60
"""

APPLIED = [
    "serviceaccount/web created",
    "role.rbac.authorization.k8s.io/web created",
    "rolebinding.rbac.authorization.k8s.io/web created",
    "clusterrole.rbac.authorization.k8s.io/system:web-metrics created",
    "clusterrole.rbac.authorization.k8s.io/web-aggregate created",
    "clusterrolebinding.rbac.authorization.k8s.io/web-metrics created",
    "networkpolicy.networking.k8s.io/test-network-policy created",
    "networkpolicy.networking.k8s.io/default-deny-all created",
    "deployment.apps/web created",
    "horizontalpodautoscaler.autoscaling/web created",
]


def test_a_charts_objects_are_applied_listed_and_deleted(cli: Cli) -> None:
    manifest = CHART + "---\n" + DEPLOYMENT
    applied = cli.run("apply", "-f", "-", stdin=manifest.encode())
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == APPLIED
    warnings = applied.stderr.splitlines()
    assert len(warnings) == 9, applied.stderr
    assert warnings[0].startswith("Warning: <stdin>[0]: ServiceAccount web: stored only: corral mounts no")
    assert "RoleBinding web: stored, not enforced" in warnings[2]
    assert "NetworkPolicy default-deny-all: stored, not enforced" in warnings[7]
    assert warnings[8].startswith("Warning: <stdin>[8] spec.template.spec.serviceAccountName: accepted and stored")

    again = cli.run("apply", "-f", "-", stdin=manifest.encode())
    assert again.returncode == 0, again.stderr
    assert all(line.endswith("unchanged") for line in again.stdout.splitlines()), again.stdout

    listed = cli.run("get", "sa,roles,rolebindings,clusterroles,clusterrolebindings,netpol")
    assert listed.returncode == 0, listed.stderr
    for name in (
        "web",
        "system:web-metrics",
        "web-aggregate",
        "web-metrics",
        "test-network-policy",
        "default-deny-all",
    ):
        assert name in listed.stdout
    assert "Role/web" in listed.stdout and "role=db" in listed.stdout

    shown = yaml.safe_load(cli.run("get", "networkpolicy", "test-network-policy", "-o", "yaml").stdout)
    assert shown["spec"]["ingress"][0]["from"][0]["ipBlock"] == {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}
    binding = yaml.safe_load(cli.run("get", "clusterrolebinding", "web-metrics", "-o", "yaml").stdout)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:web-metrics",
    }
    deployment = yaml.safe_load(cli.run("get", "deploy", "web", "-o", "yaml").stdout)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "web"
    hpa = yaml.safe_load(cli.run("get", "hpa", "web", "-o", "yaml").stdout)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}
    ]
    described = cli.run("describe", "rolebinding", "web")
    assert "Corral:             stored, not enforced" in described.stdout

    more = CHART.replace('verbs: ["get", "list", "watch"]', 'verbs: ["get", "list", "watch", "create"]')
    configured = cli.run("apply", "-f", "-", stdin=more.encode())
    assert "role.rbac.authorization.k8s.io/web configured" in configured.stdout.splitlines(), configured.stderr
    role = yaml.safe_load(cli.run("get", "role", "web", "-o", "yaml").stdout)
    assert role["rules"][0]["verbs"] == ["get", "list", "watch", "create"]

    changed = CHART.replace("  kind: Role\n  name: web", "  kind: ClusterRole\n  name: web")
    refused = cli.run("apply", "-f", "-", stdin=changed.encode())
    assert refused.returncode != 0
    assert "<stdin>[2] roleRef: field is immutable" in refused.stderr

    # A document the server would refuse and one of an unknown kind: the rest is still deleted.
    broken = manifest + "---\napiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: web}\n"
    broken = broken.replace("  replicas: 0\n", "  replicas: none\n")
    deleted = cli.run("delete", "-f", "-", stdin=broken.encode())
    assert deleted.returncode == 1
    assert [line.removesuffix(" created") + " deleted" for line in APPLIED] == deleted.stdout.splitlines()
    assert 'Warning: skipped <stdin>[10] kind: unknown kind "CronTab"' in deleted.stderr
    left = cli.run("get", "sa,roles,rolebindings,clusterroles,clusterrolebindings,netpol,deploy,hpa")
    assert left.returncode == 0, left.stderr
    assert "web" not in left.stdout, left.stdout
