"""ResourceQuota admission (pure): what a create is charged, why it is refused; quota validation."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest

from controlplane.apiserver.quota_admission import QuotaRefusal, plan, refunded
from controlplane.apiserver.validation import validate
from controlplane.controllers.resourcequota.reconcile import may_free, needs_status, recounted
from protos import codec, quota
from protos.corral.v1 import configmap_pb2, meta_pb2, pod_pb2, quota_pb2, service_pb2
from protos.kinds import by_kind

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
QUOTA = by_kind("ResourceQuota")


def rq(name: str = "compute", *, used: dict[str, str] | None = None, **spec: Any) -> quota_pb2.ResourceQuota:
    message, errors = codec.from_dict(
        {"metadata": {"name": name, "namespace": "default"}, "spec": spec}, quota_pb2.ResourceQuota
    )
    assert not errors, errors
    if used is not None:
        message.status.hard.update(message.spec.hard)
        message.status.used.update(used)
    return message


def pod(*containers: dict[str, Any]) -> pod_pb2.Pod:
    data = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": f"c{i}", "image": "x:1", "resources": r} for i, r in enumerate(containers)]},
    }
    message, errors = codec.from_dict(data, pod_pb2.Pod)
    assert not errors
    return message


def charge(quotas: list[quota_pb2.ResourceQuota], obj: Any) -> dict[str, dict[str, str]]:
    """The quotas' new status.used, by quota name."""
    charges = plan(quotas, obj, quota.object_usage(obj, NOW), {})
    return {c.quota.metadata.name: dict(c.quota.status.used) for c in charges}


def refusal(quotas: list[quota_pb2.ResourceQuota], obj: Any) -> str:
    with pytest.raises(QuotaRefusal) as caught:
        plan(quotas, obj, quota.object_usage(obj, NOW), {})
    return caught.value.cause.message


# -- charging ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quotas", "obj", "used"),
    [
        pytest.param([rq(hard={"pods": 2}, used={"pods": "1"})], pod({}), {"compute": {"pods": "2"}}, id="pods"),
        pytest.param(
            [
                rq(
                    hard={"requests.cpu": "1", "limits.memory": "1Gi"},
                    used={"requests.cpu": "250m", "limits.memory": "0"},
                )
            ],
            pod({"requests": {"cpu": "250m"}, "limits": {"memory": "256Mi", "cpu": "1"}}),
            {"compute": {"requests.cpu": "500m", "limits.memory": "256Mi"}},
            id="compute-in-the-hard-limits-own-format",
        ),
        pytest.param(
            [rq(hard={"cpu": "2"}, used={"cpu": "500m"})],
            pod({"limits": {"cpu": "1500m"}}),
            {"compute": {"cpu": "2"}},
            id="cpu-is-requests-cpu-up-to-the-limit",
        ),
        pytest.param(
            [rq(hard={"configmaps": 1}, used={"configmaps": "0"})],
            pod({}),
            {},
            id="a-quota-on-other-kinds-is-not-charged",
        ),
        pytest.param(
            [rq(hard={"count/configmaps": 3, "pods": 1}, used={"count/configmaps": "1", "pods": "1"})],
            configmap_pb2.ConfigMap(metadata=meta_pb2.ObjectMeta(name="c")),
            {"compute": {"count/configmaps": "2", "pods": "1"}},
            id="object-count",
        ),
        pytest.param(
            [rq(hard={"pods": 1}, scopes=["BestEffort"], used={"pods": "1"})],
            pod({"limits": {"cpu": "1"}}),
            {},
            id="out-of-scope",
        ),
        pytest.param(
            [rq("a", hard={"pods": 5}, used={"pods": "1"}), rq("b", hard={"pods": 9}, used={"pods": "4"})],
            pod({}),
            {"a": {"pods": "2"}, "b": {"pods": "5"}},
            id="every-quota",
        ),
    ],
)
def test_charges(quotas: list[quota_pb2.ResourceQuota], obj: Any, used: dict[str, dict[str, str]]) -> None:
    assert charge(quotas, obj) == used


@pytest.mark.parametrize(
    ("quotas", "obj", "message"),
    [
        pytest.param(
            [rq(hard={"pods": 2}, used={"pods": "2"})],
            pod({}),
            "exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2",
            id="pods-full",
        ),
        pytest.param(
            [rq(hard={"requests.memory": "1Gi", "pods": 10}, used={"requests.memory": "768Mi", "pods": "1"})],
            pod({"requests": {"memory": "512Mi"}}),
            "exceeded quota: compute, requested: requests.memory=512Mi, used: requests.memory=768Mi, "
            "limited: requests.memory=1Gi",
            id="memory-names-only-what-is-over",
        ),
        pytest.param(
            [rq(hard={"limits.cpu": "2", "requests.memory": "1Gi"}, used={"limits.cpu": "0", "requests.memory": "0"})],
            pod({"requests": {"cpu": "1"}}),
            "failed quota: compute: must specify limits.cpu for: c0; requests.memory for: c0",
            id="must-specify",
        ),
        pytest.param(
            [rq(hard={"services.nodeports": 1}, used={"services.nodeports": "0"})],
            service_pb2.Service(
                spec=service_pb2.ServiceSpec(
                    type="NodePort", ports=[service_pb2.ServicePort(port=80), service_pb2.ServicePort(port=81)]
                )
            ),
            "exceeded quota: compute, requested: services.nodeports=2, used: services.nodeports=0, "
            "limited: services.nodeports=1",
            id="node-ports",
        ),
    ],
)
def test_refusals(quotas: list[quota_pb2.ResourceQuota], obj: Any, message: str) -> None:
    assert refusal(quotas, obj) == message


def test_a_recount_stands_in_for_an_uncounted_status() -> None:
    fresh = rq(hard={"pods": 2})
    with pytest.raises(QuotaRefusal):
        plan([fresh], pod({}), quota.object_usage(pod({}), NOW), {"compute": {"pods": Fraction(2)}})
    charges = plan([fresh], pod({}), quota.object_usage(pod({}), NOW), {"compute": {"pods": Fraction(0)}})
    assert dict(charges[0].quota.status.used) == {"pods": "1"}
    assert dict(charges[0].quota.status.hard) == {"pods": "2"}


def test_a_refund_takes_back_a_charge_never_below_zero() -> None:
    back = refunded(
        rq(hard={"pods": 2, "requests.cpu": "1"}, used={"pods": "1", "requests.cpu": "0"}),
        {
            "pods": Fraction(1),
            "requests.cpu": Fraction(1, 2),
        },
    )
    assert back is not None and dict(back.status.used) == {"pods": "0", "requests.cpu": "0"}


# -- the controller's rules ----------------------------------------------------------------


def test_recounted_writes_status_only_when_it_changes() -> None:
    counted = rq(hard={"pods": 2}, used={"pods": "1"})
    assert recounted(counted, {"pods": Fraction(1)}) is None
    updated = recounted(counted, {"pods": Fraction(0)})
    assert updated is not None and dict(updated.status.used) == {"pods": "0"}
    assert needs_status(rq(hard={"pods": 2})) and not needs_status(counted)


def test_may_free() -> None:
    running, done = pod({}), pod({})
    running.status.phase, done.status.phase = "Running", "Succeeded"
    assert may_free(True, running, None)
    assert may_free(False, done, running)
    assert not may_free(False, running, running)
    cluster_ip = service_pb2.Service(spec=service_pb2.ServiceSpec(type="ClusterIP"))
    assert may_free(False, cluster_ip, service_pb2.Service(spec=service_pb2.ServiceSpec(type="NodePort")))


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        pytest.param(
            {"hard": {"pods": 10, "requests.cpu": "4", "limits.memory": "8Gi", "count/deployments.apps": 3}},
            [],
            id="valid",
        ),
        pytest.param({"hard": {"gpus": 1}}, ["spec.hard.gpus"], id="unknown-resource"),
        pytest.param({"hard": {"pods": "1500m"}}, ["spec.hard.pods"], id="count-not-whole"),
        pytest.param({"hard": {"pods": 1}, "scopes": ["PriorityClass"]}, ["spec.scopes[0]"], id="unsupported-scope"),
        pytest.param({"hard": {"pods": 1}, "scopes": ["Sometimes"]}, ["spec.scopes[0]"], id="unknown-scope"),
        pytest.param(
            {"hard": {"pods": 1}, "scopes": ["BestEffort", "NotBestEffort"]}, ["spec.scopes"], id="conflicting-scopes"
        ),
        pytest.param(
            {"hard": {"requests.cpu": 1}, "scopes": ["BestEffort"]}, ["spec.hard.requests.cpu"], id="scope-on-resource"
        ),
        pytest.param(
            {
                "hard": {"pods": 1},
                "scopeSelector": {"matchExpressions": [{"scopeName": "BestEffort", "operator": "In"}]},
            },
            ["spec.scopeSelector.matchExpressions[0].operator"],
            id="selector-operator",
        ),
    ],
)
def test_validate_resource_quota(spec: dict[str, Any], fields: list[str]) -> None:
    assert [c.field for c in validate(QUOTA, rq(**spec))] == fields
