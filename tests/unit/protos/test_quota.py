"""Quota facts: what objects use, scopes, and the arithmetic over usage lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import pytest

from protos import codec, quota
from protos.corral.v1 import configmap_pb2, pod_pb2, quota_pb2, secret_pb2, service_pb2, storage_pb2, workloads_pb2
from protos.quantity import format_quantity, parse_quantity

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def pod(*containers: dict[str, Any], phase: str = "Pending", **meta: Any) -> pod_pb2.Pod:
    data = {
        "metadata": {"name": "p", "namespace": "default", **meta},
        "spec": {"containers": [{"name": f"c{i}", "image": "x:1", "resources": r} for i, r in enumerate(containers)]},
        "status": {"phase": phase},
    }
    message, errors = codec.from_dict(data, pod_pb2.Pod)
    assert not errors
    return message


def F(text: str) -> Fraction:
    return parse_quantity(text)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(pod({}), {"count/pods": 1, "pods": 1}, id="best-effort-pod"),
        pytest.param(
            pod({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}, {"limits": {"cpu": "1"}}),
            {
                "count/pods": 1,
                "pods": 1,
                "cpu": F("1250m"),
                "requests.cpu": F("1250m"),
                "limits.cpu": F("1500m"),
                "memory": F("64Mi"),
                "requests.memory": F("64Mi"),
            },
            id="a-limit-alone-requests-itself",
        ),
        pytest.param(pod({"limits": {"cpu": "1"}}, phase="Succeeded"), {"count/pods": 1}, id="finished-pod"),
        pytest.param(pod({"limits": {"cpu": "1"}}, phase="Failed"), {"count/pods": 1}, id="failed-pod"),
        pytest.param(
            pod({}, deletionTimestamp="2026-12-07T11:00:00Z", deletionGracePeriodSeconds=30),
            {"count/pods": 1},
            id="past-its-deletion-deadline",
        ),
        pytest.param(
            pod({}, deletionTimestamp="2026-12-07T12:00:10Z", deletionGracePeriodSeconds=30),
            {"count/pods": 1, "pods": 1},
            id="terminating-within-grace",
        ),
        pytest.param(
            service_pb2.Service(spec=service_pb2.ServiceSpec(type="ClusterIP")),
            {"count/services": 1, "services": 1},
            id="svc",
        ),
        pytest.param(
            service_pb2.Service(
                spec=service_pb2.ServiceSpec(
                    type="NodePort", ports=[service_pb2.ServicePort(port=80), service_pb2.ServicePort(port=443)]
                )
            ),
            {"count/services": 1, "services": 1, "services.nodeports": 2},
            id="nodeport-svc",
        ),
        pytest.param(secret_pb2.Secret(), {"count/secrets": 1, "secrets": 1}, id="secret"),
        pytest.param(configmap_pb2.ConfigMap(), {"count/configmaps": 1, "configmaps": 1}, id="configmap"),
        pytest.param(workloads_pb2.Deployment(), {"count/deployments.apps": 1}, id="deployment"),
        pytest.param(quota_pb2.ResourceQuota(), {"count/resourcequotas": 1, "resourcequotas": 1}, id="quota"),
    ],
)
def test_object_usage(obj: Any, expected: dict[str, Any]) -> None:
    assert quota.object_usage(obj, NOW) == {k: Fraction(v) for k, v in expected.items()}


def test_claim_usage_counts_storage_in_total_and_per_class() -> None:
    assert quota.claim_usage("fast", "10Gi") == {
        "requests.storage": F("10Gi"),
        "fast.storageclass.storage.k8s.io/requests.storage": F("10Gi"),
        "fast.storageclass.storage.k8s.io/persistentvolumeclaims": 1,
    }
    assert quota.claim_usage("", "1Gi") == {"requests.storage": F("1Gi")}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("pods", "Pod", id="pods"),
        pytest.param("requests.memory", "Pod", id="compute"),
        pytest.param("count/pods", "Pod", id="count-pods"),
        pytest.param("count/deployments.apps", "Deployment", id="count-grouped"),
        pytest.param("count/deployments", None, id="count-without-its-group"),
        pytest.param("count/widgets.example.com", None, id="count-unknown"),
        pytest.param("services.loadbalancers", "Service", id="loadbalancers"),
        pytest.param("gold.storageclass.storage.k8s.io/requests.storage", "PersistentVolumeClaim", id="class-storage"),
        pytest.param("replicationcontrollers", None, id="none-in-corral"),
    ],
)
def test_counted_kind(name: str, kind: str | None) -> None:
    assert quota.counted_kind(name) == kind


@pytest.mark.parametrize(
    ("scopes", "obj", "matches"),
    [
        pytest.param([], configmap_pb2.ConfigMap(), True, id="unscoped-counts-everything"),
        pytest.param(["BestEffort"], pod({}), True, id="best-effort"),
        pytest.param(["BestEffort"], pod({"requests": {"memory": "1Mi"}}), False, id="not-best-effort"),
        pytest.param(["NotBestEffort"], pod({"limits": {"cpu": "1"}}), True, id="not-best-effort-scope"),
        pytest.param(["NotTerminating"], pod({}), True, id="no-deadline"),
        pytest.param(["Terminating"], pod({}), False, id="terminating-needs-a-deadline"),
        pytest.param(["BestEffort"], configmap_pb2.ConfigMap(), False, id="scoped-counts-only-pods"),
    ],
)
def test_scopes(scopes: list[str], obj: Any, matches: bool) -> None:
    assert quota.quota_matches(quota_pb2.ResourceQuotaSpec(scopes=scopes), obj) is matches


def test_scope_selector_counts_as_scopes() -> None:
    spec = quota_pb2.ResourceQuotaSpec()
    spec.scope_selector.match_expressions.add(scope_name="BestEffort", operator="Exists")
    assert quota.quota_matches(spec, pod({}))
    assert not quota.quota_matches(spec, pod({"limits": {"cpu": "1"}}))


def test_missing_amounts_names_each_container() -> None:
    spec = quota_pb2.ResourceQuotaSpec(hard={"limits.cpu": "2", "requests.memory": "1Gi", "pods": "3"})
    p = pod({"limits": {"cpu": "1"}}, {"requests": {"memory": "1Mi"}})
    assert quota.missing_amounts(spec, p) == {"requests.memory": ["c0"], "limits.cpu": ["c1"]}


@pytest.mark.parametrize(
    ("value", "binary", "text"),
    [
        pytest.param(Fraction(0), False, "0", id="zero"),
        pytest.param(Fraction(3), False, "3", id="whole"),
        pytest.param(Fraction(1, 2), False, "500m", id="milli"),
        pytest.param(Fraction(1, 10**5), False, "10u", id="micro"),
        pytest.param(Fraction(1, 3), False, "333333334n", id="rounded-up-nano"),
        pytest.param(F("128Mi"), True, "128Mi", id="binary"),
        pytest.param(F("1536Mi"), True, "1536Mi", id="binary-not-whole-gi"),
        pytest.param(Fraction(1000), True, "1000", id="binary-not-divisible"),
    ],
)
def test_format_quantity(value: Fraction, binary: bool, text: str) -> None:
    assert format_quantity(value, binary=binary) == text


def test_increase_is_what_an_update_adds() -> None:
    old = {"services": Fraction(1), "services.nodeports": Fraction(1)}
    new = {"services": Fraction(1), "services.nodeports": Fraction(3)}
    assert quota.increase(new, old) == {"services.nodeports": 2}
    assert quota.increase(old, new) == {}


def test_finished_and_deleted_pods_are_within_grace_by_time() -> None:
    p = pod({}, deletionTimestamp="2026-12-07T12:00:00Z", deletionGracePeriodSeconds=30)
    assert quota.pod_counts(p, NOW + timedelta(seconds=30))
    assert not quota.pod_counts(p, NOW + timedelta(seconds=31))


def test_a_pod_uses_its_largest_init_container_when_that_is_more() -> None:
    p = pod({"requests": {"cpu": "200m", "memory": "64Mi"}}, {"requests": {"cpu": "100m"}})
    p.spec.init_containers.add(name="setup", image="x:1").resources.requests.update({"cpu": "1", "memory": "32Mi"})
    usage = quota.object_usage(p, NOW)
    assert (usage["requests.cpu"], usage["requests.memory"]) == (Fraction(1), F("64Mi"))


def test_a_sidecar_counts_beside_the_app_containers() -> None:
    p = pod({"requests": {"cpu": "200m"}, "limits": {"cpu": "1"}})
    sidecar = p.spec.init_containers.add(name="proxy", image="x:1", restart_policy="Always")
    sidecar.resources.requests["cpu"] = "100m"
    sidecar.resources.limits["cpu"] = "500m"
    usage = quota.object_usage(p, NOW)
    assert (usage["requests.cpu"], usage["limits.cpu"]) == (Fraction(3, 10), Fraction(3, 2))


def test_a_claim_counts_its_storage() -> None:
    claim = storage_pb2.PersistentVolumeClaim()
    claim.spec.storage_class_name = "local-path"
    claim.spec.resources.requests["storage"] = "5Gi"
    assert quota.object_usage(claim, NOW) == {
        "count/persistentvolumeclaims": 1,
        "persistentvolumeclaims": 1,
        "requests.storage": F("5Gi"),
        "local-path.storageclass.storage.k8s.io/requests.storage": F("5Gi"),
        "local-path.storageclass.storage.k8s.io/persistentvolumeclaims": 1,
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({"type": "ClusterIP"}, {}, id="cluster-ip"),
        pytest.param({"type": "NodePort"}, {"services.nodeports": 2}, id="node-port"),
        pytest.param(
            {"type": "LoadBalancer"}, {"services.nodeports": 2, "services.loadbalancers": 1}, id="load-balancer"
        ),
        pytest.param(
            {"type": "LoadBalancer", "allocate_load_balancer_node_ports": False},
            {"services.loadbalancers": 1},
            id="load-balancer-without-node-ports",
        ),
    ],
)
def test_service_usage(spec: dict[str, Any], expected: dict[str, int]) -> None:
    s = service_pb2.ServiceSpec(**spec)
    s.ports.add(name="a", port=80)
    s.ports.add(name="b", port=81)
    assert quota.service_usage(s) == {k: Fraction(v) for k, v in expected.items()}
