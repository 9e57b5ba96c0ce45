"""LimitRanges: their defaulting and validation, and how they fill and bound new pods and claims."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.errors import Cause
from controlplane.apiserver.limit_ranges import claim_violations, fill_defaults, pod_violations
from controlplane.apiserver.validation import validate
from protos import codec
from protos.corral.v1 import pod_pb2, quota_pb2
from protos.kinds import by_kind
from protos.wellknown import LIMIT_RANGER

LIMIT_RANGE = by_kind("LimitRange")


def limit_range(*items: dict[str, Any]) -> quota_pb2.LimitRange:
    message, errors = codec.from_dict(
        {"metadata": {"name": "limits", "namespace": "default"}, "spec": {"limits": list(items)}}, quota_pb2.LimitRange
    )
    assert not errors
    apply_defaults(LIMIT_RANGE, message)
    return message


def pod(*containers: dict[str, Any]) -> pod_pb2.Pod:
    data = {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": f"c{i}", "image": "x:1", "resources": r} for i, r in enumerate(containers)]},
    }
    message, errors = codec.from_dict(data, pod_pb2.Pod)
    assert not errors
    return message


# -- defaulting of the LimitRange itself ------------------------------------------------


def test_a_container_item_defaults_its_limit_to_max_and_its_request_to_the_limit_then_min() -> None:
    lr = limit_range({"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "8Mi"}})
    item = lr.spec.limits[0]
    assert dict(item.default) == {"cpu": "2"}
    assert dict(item.default_request) == {"cpu": "2", "memory": "8Mi"}


def test_a_pod_item_gets_no_defaults() -> None:
    lr = limit_range({"type": "Pod", "max": {"cpu": "2"}})
    assert not lr.spec.limits[0].default and not lr.spec.limits[0].default_request


# -- filling defaults into pods ------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "requests", "limits", "note"),
    [
        pytest.param(
            {},
            {"cpu": "100m", "memory": "64Mi"},
            {"cpu": "500m", "memory": "128Mi"},
            "cpu, memory request for container c0; cpu, memory limit for container c0",
            id="nothing-set",
        ),
        pytest.param(
            {"requests": {"cpu": "200m"}},
            {"cpu": "200m", "memory": "64Mi"},
            {"cpu": "500m", "memory": "128Mi"},
            "memory request for container c0; cpu, memory limit for container c0",
            id="own-request-kept",
        ),
        pytest.param(
            {"limits": {"cpu": "300m"}},
            {"memory": "64Mi"},
            {"cpu": "300m", "memory": "128Mi"},
            "memory request for container c0; memory limit for container c0",
            id="a-limit-alone-is-its-request",
        ),
        pytest.param(
            {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            {"cpu": "1", "memory": "1Gi"},
            {"cpu": "1", "memory": "1Gi"},
            None,
            id="all-set",
        ),
    ],
)
def test_fill_defaults(
    resources: dict[str, Any], requests: dict[str, str], limits: dict[str, str], note: str | None
) -> None:
    lr = limit_range(
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
        }
    )
    p = pod(resources)
    assert fill_defaults(p, [lr]) is (note is not None)
    assert dict(p.spec.containers[0].resources.requests) == requests
    assert dict(p.spec.containers[0].resources.limits) == limits
    expected = {} if note is None else {LIMIT_RANGER: f"LimitRanger plugin set: {note}"}
    assert dict(p.metadata.annotations) == expected


def test_a_default_limit_below_the_request_makes_the_pod_invalid() -> None:
    p = pod({"requests": {"cpu": "2"}})
    fill_defaults(p, [limit_range({"type": "Container", "default": {"cpu": "1"}})])
    apply_defaults(by_kind("Pod"), p)
    causes = validate(by_kind("Pod"), p)
    assert [c.field for c in causes] == ["spec.containers[0].resources.requests.cpu"]


# -- bounds --------------------------------------------------------------------------------

LIMITS = "spec.containers[0].resources.limits"
REQUESTS = "spec.containers[0].resources.requests"


@pytest.mark.parametrize(
    ("item", "resources", "causes"),
    [
        pytest.param(
            {"type": "Container", "max": {"cpu": "500m"}},
            {"limits": {"cpu": "1"}},
            [Cause(f"{LIMITS}.cpu", "maximum cpu usage per Container is 500m, but limit is 1")],
            id="over-max",
        ),
        pytest.param(
            {"type": "Container", "max": {"cpu": "500m"}},
            {"requests": {"cpu": "100m"}},
            [Cause(f"{LIMITS}.cpu", "maximum cpu usage per Container is 500m.  No limit is specified")],
            id="max-needs-a-limit",
        ),
        pytest.param({"type": "Container", "max": {"cpu": "500m"}}, {"limits": {"cpu": "500m"}}, [], id="at-max"),
        pytest.param(
            {"type": "Container", "min": {"memory": "64Mi"}},
            {"requests": {"memory": "32Mi"}},
            [Cause(f"{REQUESTS}.memory", "minimum memory usage per Container is 64Mi, but request is 32Mi")],
            id="under-min",
        ),
        pytest.param(
            {"type": "Container", "min": {"memory": "64Mi"}},
            {},
            [Cause(f"{REQUESTS}.memory", "minimum memory usage per Container is 64Mi.  No request is specified")],
            id="min-needs-a-request",
        ),
        pytest.param(
            {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
            {"requests": {"cpu": "100m"}, "limits": {"cpu": "300m"}},
            [
                Cause(
                    f"{LIMITS}.cpu", "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000"
                )
            ],
            id="over-ratio",
        ),
        pytest.param(
            {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
            {"requests": {"cpu": "100m"}},
            [
                Cause(
                    f"{LIMITS}.cpu",
                    "cpu max limit to request ratio per Container is 2, but no limit is specified or limit is 0",
                )
            ],
            id="ratio-needs-a-limit",
        ),
        pytest.param(
            {"type": "Pod", "max": {"memory": "1Gi"}},
            {"limits": {"memory": "800Mi"}},
            [],
            id="pod-within-max",
        ),
    ],
)
def test_pod_violations(item: dict[str, Any], resources: dict[str, Any], causes: list[Cause]) -> None:
    assert pod_violations(pod(resources), [limit_range(item)]) == causes


def test_a_pod_item_bounds_the_sum_of_its_containers() -> None:
    lr = limit_range({"type": "Pod", "max": {"memory": "1Gi"}})
    p = pod({"limits": {"memory": "800Mi"}}, {"limits": {"memory": "800Mi"}})
    assert pod_violations(p, [lr]) == [Cause("spec", "maximum memory usage per Pod is 1Gi, but limit is 1600Mi")]


@pytest.mark.parametrize(
    ("requests", "causes"),
    [
        pytest.param({"storage": "5Gi"}, [], id="within"),
        pytest.param(
            {"storage": "20Gi"},
            [
                Cause(
                    "spec.resources.requests.storage",
                    "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi",
                )
            ],
            id="over-max",
        ),
        pytest.param(
            {"storage": "500Mi"},
            [
                Cause(
                    "spec.resources.requests.storage",
                    "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi",
                )
            ],
            id="under-min",
        ),
    ],
)
def test_claim_violations(requests: dict[str, str], causes: list[Cause]) -> None:
    lr = limit_range({"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}})
    assert claim_violations(requests, [lr]) == causes


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "causes"),
    [
        pytest.param(
            [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "100m"}, "default": {"cpu": "500m"}}],
            [],
            id="valid",
        ),
        pytest.param([{"max": {"cpu": "1"}}], ["spec.limits[0].type"], id="no-type"),
        pytest.param([{"type": "Node"}], ["spec.limits[0].type"], id="unknown-type"),
        pytest.param(
            [{"type": "Container", "max": {"cpu": "1"}}, {"type": "Container", "min": {"cpu": "1m"}}],
            ["spec.limits[1].type"],
            id="duplicate-type",
        ),
        pytest.param([{"type": "Container", "max": {"gpu": "1"}}], ["spec.limits[0].max.gpu"], id="unknown-resource"),
        pytest.param(
            [{"type": "Pod", "default": {"cpu": "1"}}], ["spec.limits[0].default"], id="pod-may-not-have-defaults"
        ),
        pytest.param(
            [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}],
            ["spec.limits[0].min.cpu", "spec.limits[0].defaultRequest.cpu", "spec.limits[0].default.cpu"],
            id="min-over-max",
        ),
        pytest.param(
            [{"type": "Container", "default": {"cpu": "2"}, "max": {"cpu": "1"}}],
            ["spec.limits[0].defaultRequest.cpu", "spec.limits[0].default.cpu"],
            id="default-over-max",
        ),
        pytest.param(
            [{"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}}],
            ["spec.limits[0].maxLimitRequestRatio.cpu"],
            id="ratio-under-1",
        ),
        pytest.param(
            [{"type": "Pod", "maxLimitRequestRatio": {"cpu": "20"}, "min": {"cpu": "1"}, "max": {"cpu": "2"}}],
            ["spec.limits[0].maxLimitRequestRatio.cpu"],
            id="ratio-over-max-by-min",
        ),
        pytest.param([{"type": "PersistentVolumeClaim"}], ["spec.limits[0]"], id="claim-needs-min-or-max"),
        pytest.param(
            [{"type": "PersistentVolumeClaim", "max": {"cpu": "1"}}],
            ["spec.limits[0].max.cpu", "spec.limits[0]"],
            id="claim-limits-only-storage",
        ),
    ],
)
def test_validate_limit_range(items: list[dict[str, Any]], causes: list[str]) -> None:
    assert [c.field for c in validate(LIMIT_RANGE, limit_range(*items))] == causes


def test_init_containers_get_defaults_and_bounds() -> None:
    p = pod({"limits": {"cpu": "200m"}})
    p.spec.init_containers.add(name="setup", image="x:1").resources.limits["cpu"] = "2"
    lr = limit_range({"type": "Container", "max": {"cpu": "1"}, "default": {"memory": "64Mi"}})
    fill_defaults(p, [lr])
    assert dict(p.spec.init_containers[0].resources.limits) == {"cpu": "2", "memory": "64Mi"}
    assert p.metadata.annotations[LIMIT_RANGER].endswith("memory limit for init container setup")
    assert pod_violations(p, [lr]) == [
        Cause("spec.initContainers[0].resources.limits.cpu", "maximum cpu usage per Container is 1, but limit is 2")
    ]
