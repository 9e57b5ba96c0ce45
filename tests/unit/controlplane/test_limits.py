"""Size and range limits of pods and pod templates, in every kind that holds one."""

from collections.abc import Callable
from typing import Any

import pytest

from controlplane.apiserver import limits
from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate
from protos import codec
from protos.kinds import by_kind

PodSpec = dict[str, Any]


def _container(i: int) -> dict[str, Any]:
    return {"name": f"c{i}", "image": "busybox:1"}


def _pod(spec: PodSpec) -> tuple[dict[str, Any], str]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}, "spec"


def _workload(kind: str) -> Callable[[PodSpec], tuple[dict[str, Any], str]]:
    def make(spec: PodSpec) -> tuple[dict[str, Any], str]:
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": "w"},
            "spec": {
                "selector": {"matchLabels": {"app": "w"}},
                "template": {"metadata": {"labels": {"app": "w"}}, "spec": spec},
            },
        }, "spec.template.spec"

    return make


HOLDERS = [
    pytest.param(_pod, id="Pod"),
    pytest.param(_workload("Deployment"), id="Deployment"),
    pytest.param(_workload("ReplicaSet"), id="ReplicaSet"),
]


def _causes(doc: dict[str, Any]) -> list[str]:
    info = by_kind(doc["kind"])
    msg, errors = codec.from_dict(doc, info.message)
    assert errors == []
    apply_defaults(info, msg)
    return [str(c) for c in validate(info, msg)]


def _one_container(**fields: Any) -> PodSpec:
    return {"containers": [{**_container(0), **fields}]}


BIG = "x" * limits.MAX_ENV_VAR_BYTES


@pytest.mark.parametrize("holder", HOLDERS)
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"containers": [_container(i) for i in range(limits.MAX_CONTAINERS + 1)]},
            "containers: too many: must have at most 64 items, got 65",
            id="containers",
        ),
        pytest.param(
            _one_container(env=[{"name": f"V{i}", "value": "1"} for i in range(limits.MAX_ENV + 1)]),
            "containers[0].env: too many: must have at most 1000 items, got 1001",
            id="env-entries",
        ),
        pytest.param(
            _one_container(env=[{"name": "V", "value": BIG}]),
            f"containers[0].env[0].value: too long: NAME=value must have at most 131072 bytes, "
            f"got {limits.MAX_ENV_VAR_BYTES + 2}",
            id="env-value",
        ),
        pytest.param(
            _one_container(args=["a"] * (limits.MAX_ARGS + 1)),
            "containers[0].args: too many: must have at most 1000 items, got 1001",
            id="args",
        ),
        pytest.param(
            {**_one_container(), "terminationGracePeriodSeconds": 2**62},
            f"terminationGracePeriodSeconds: must be 0-2147483647 seconds, got {2**62}",
            id="grace-huge",
        ),
        pytest.param(
            {**_one_container(), "terminationGracePeriodSeconds": -1},
            "terminationGracePeriodSeconds: must be 0-2147483647 seconds, got -1",
            id="grace-negative",
        ),
        pytest.param(
            {
                **_one_container(),
                "tolerations": [{"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2**40}],
            },
            f"tolerations[0].tolerationSeconds: must be at most 2147483647 seconds, got {2**40}",
            id="toleration-seconds",
        ),
        pytest.param(
            _one_container(livenessProbe={"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 2**62}),
            f"containers[0].livenessProbe.terminationGracePeriodSeconds: must be 0-2147483647 seconds, got {2**62}",
            id="probe-grace",
        ),
    ],
)
def test_a_pod_over_a_limit_is_refused_naming_the_field(
    holder: Callable[[PodSpec], tuple[dict[str, Any], str]], spec: PodSpec, expected: str
) -> None:
    doc, path = holder(spec)
    assert f"{path}.{expected}" in _causes(doc)


@pytest.mark.parametrize("holder", HOLDERS)
def test_a_pod_at_every_limit_is_accepted(holder: Callable[[PodSpec], tuple[dict[str, Any], str]]) -> None:
    containers = [_container(i) for i in range(limits.MAX_CONTAINERS)]
    containers[0]["env"] = [{"name": f"V{i}", "value": "1"} for i in range(limits.MAX_ENV - 1)]
    containers[0]["env"].append({"name": "V", "value": "x" * (limits.MAX_ENV_VAR_BYTES - 2)})
    containers[0]["args"] = ["a"] * limits.MAX_ARGS
    doc, _ = holder({"containers": containers, "terminationGracePeriodSeconds": limits.MAX_SECONDS})
    assert _causes(doc) == []


@pytest.mark.parametrize("holder", HOLDERS)
def test_an_object_over_the_size_limit_is_refused(holder: Callable[[PodSpec], tuple[dict[str, Any], str]]) -> None:
    value = "x" * (limits.MAX_ENV_VAR_BYTES - 100)
    env = [{"name": f"V{i}", "value": value} for i in range(13)]  # 13 x ~128 KiB: over 1.5 MiB
    doc, _ = holder(_one_container(env=env))
    causes = _causes(doc)
    assert len(causes) == 1 and causes[0].startswith("object is too large: "), causes
    assert causes[0].endswith("bytes, at most 1572864 are allowed")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("", 0, id="empty"),
        pytest.param("42", 42, id="number"),
        pytest.param(str(2**63 - 1), 2**63 - 1, id="int64-max"),
        pytest.param(str(2**63), None, id="over-int64"),
        pytest.param("-1", None, id="negative"),
        pytest.param("1e3", None, id="exponent"),
        pytest.param("٣", None, id="non-ascii-digit"),
        pytest.param("9" * 400, None, id="huge"),
    ],
)
def test_resource_versions(value: str, expected: int | None) -> None:
    assert limits.parse_resource_version(value) == expected
