"""Defaults and validation of HorizontalPodAutoscalers (autoscaling/v2)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate
from protos import codec
from protos.corral.v1 import metrics_pb2
from protos.kinds import by_kind

HPA = by_kind("HorizontalPodAutoscaler")
BASE: dict[str, Any] = {
    "apiVersion": "autoscaling/v2",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "web"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 10},
}


def defaulted(**spec: Any) -> metrics_pb2.HorizontalPodAutoscaler:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    h, errors = codec.from_dict(doc, metrics_pb2.HorizontalPodAutoscaler)
    assert errors == []
    apply_defaults(HPA, h)
    return h


def causes(**spec: Any) -> list[str]:
    """Problems found decoding the manifest (such as a malformed quantity) or, if none, validating it."""
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    h, errors = codec.from_dict(doc, metrics_pb2.HorizontalPodAutoscaler)
    if errors:
        return [f"{e.path}: {e.message}" for e in errors]
    apply_defaults(HPA, h)
    return [str(c) for c in validate(HPA, h)]


def test_defaults() -> None:
    h = defaulted()
    assert h.spec.min_replicas == 1
    assert codec.to_dict(h)["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}
    ]
    assert not h.spec.HasField("behavior")
    assert h.metadata.namespace == "default"
    assert causes() == []


def test_behavior_defaults_fill_what_is_left_out() -> None:
    h = defaulted(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    behavior = codec.to_dict(h)["spec"]["behavior"]
    assert behavior == {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }
    kept = defaulted(
        behavior={
            "scaleUp": {"selectPolicy": "Disabled", "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}]}
        }
    )
    up = kept.spec.behavior.scale_up
    assert (up.select_policy, len(up.policies), up.stabilization_window_seconds) == ("Disabled", 1, 0)


def test_valid_metrics() -> None:
    assert (
        causes(
            minReplicas=2,
            metrics=[
                {
                    "type": "Resource",
                    "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "512Mi"}},
                },
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "250m"}},
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "requests_per_second"},
                        "target": {"type": "AverageValue", "averageValue": "10"},
                    },
                },
            ],
        )
        == []
    )


def cpu(target: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"scaleTargetRef": {"kind": "Pod", "name": "web"}},
            ['spec.scaleTargetRef.kind: must be one of "Deployment", "ReplicaSet", "StatefulSet", got "Pod"'],
            id="target-kind",
        ),
        pytest.param(
            {"scaleTargetRef": {"kind": "Deployment"}}, ["spec.scaleTargetRef.name: required"], id="target-name"
        ),
        pytest.param(
            {"scaleTargetRef": {"name": "web"}}, ["spec.scaleTargetRef.kind: required"], id="target-kind-required"
        ),
        pytest.param(
            {"scaleTargetRef": {"apiVersion": "v1", "kind": "Deployment", "name": "web"}},
            ['spec.scaleTargetRef.apiVersion: must be "apps/v1" for Deployment, got "v1"'],
            id="target-api-version",
        ),
        pytest.param({"minReplicas": 0}, ["spec.minReplicas: must be >= 1, got 0"], id="min-zero"),
        pytest.param(
            {"minReplicas": 5, "maxReplicas": 3},
            ["spec.maxReplicas: must be greater than or equal to minReplicas (5), got 3"],
            id="max-below-min",
        ),
        pytest.param({"maxReplicas": 0}, ["spec.maxReplicas: must be >= 1, got 0"], id="max-zero"),
        pytest.param(
            {"metrics": [{"type": "External"}]},
            ['spec.metrics[0].type: must be one of "Resource", "Pods", got "External"'],
            id="metric-type",
        ),
        pytest.param(
            {"metrics": [{"type": "Resource"}]},
            [
                'spec.metrics[0].resource: required when type is "Resource"',
                "spec.metrics[0].resource.target.type: required",
            ],
            id="resource-missing",
        ),
        pytest.param(
            {
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "gpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                    }
                ]
            },
            ['spec.metrics[0].resource.name: must be one of "cpu", "memory", got "gpu"'],
            id="resource-name",
        ),
        pytest.param(
            {"metrics": cpu({"type": "Utilization"})},
            ['spec.metrics[0].resource.target.averageUtilization: required when type is "Utilization"'],
            id="utilization-required",
        ),
        pytest.param(
            {"metrics": cpu({"type": "Utilization", "averageUtilization": 0})},
            ["spec.metrics[0].resource.target.averageUtilization: must be >= 1, got 0"],
            id="utilization-positive",
        ),
        pytest.param(
            {"metrics": cpu({"type": "Utilization", "averageUtilization": 50, "averageValue": "1"})},
            ['spec.metrics[0].resource.target.averageValue: must not be set when type is "Utilization"'],
            id="utilization-with-value",
        ),
        pytest.param(
            {"metrics": cpu({"type": "AverageValue", "averageValue": "lots"})},
            ['spec.metrics[0].resource.target.averageValue: invalid quantity "lots"'],
            id="quantity",
        ),
        pytest.param(
            {"metrics": cpu({"type": "AverageValue", "averageValue": "0"})},
            ['spec.metrics[0].resource.target.averageValue: must be positive, got "0"'],
            id="quantity-positive",
        ),
        pytest.param(
            {"metrics": cpu({"type": "AverageValue"})},
            ['spec.metrics[0].resource.target.averageValue: required when type is "AverageValue"'],
            id="value-required",
        ),
        pytest.param(
            {"metrics": cpu({"type": "Value", "value": "1"})},
            [
                'spec.metrics[0].resource.target.type: must be one of "Utilization", "AverageValue", got "Value"',
                'spec.metrics[0].resource.target.value: not supported: use type "AverageValue" (a value per pod)',
            ],
            id="value-type",
        ),
        pytest.param(
            {
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "latency"},
                            "target": {"type": "Utilization", "averageUtilization": 5},
                        },
                    }
                ]
            },
            [
                'spec.metrics[0].pods.metric.name: must be one of "requests_per_second", got "latency"',
                'spec.metrics[0].pods.target.type: must be one of "AverageValue", got "Utilization"',
            ],
            id="pods-metric",
        ),
        pytest.param(
            {
                "metrics": [
                    {
                        "type": "Pods",
                        "resource": {"name": "cpu"},
                        "pods": {
                            "metric": {"name": "requests_per_second", "selector": {"matchLabels": {"a": "b"}}},
                            "target": {"type": "AverageValue", "averageValue": "10"},
                        },
                    }
                ]
            },
            [
                'spec.metrics[0].resource: must not be set when type is "Pods"',
                "spec.metrics[0].pods.metric.selector: not supported: corral's pod metrics have no labels to select",
            ],
            id="pods-extras",
        ),
        pytest.param(
            {
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 3601,
                        "selectPolicy": "Most",
                        "policies": [
                            {"type": "Pods", "value": 0, "periodSeconds": 0},
                            {"type": "Nodes", "value": 1, "periodSeconds": 1801},
                        ],
                    }
                }
            },
            [
                "spec.behavior.scaleUp.stabilizationWindowSeconds: must be 0-3600 seconds, got 3601",
                'spec.behavior.scaleUp.selectPolicy: must be one of "Max", "Min", "Disabled", got "Most"',
                "spec.behavior.scaleUp.policies[0].value: must be >= 1, got 0",
                "spec.behavior.scaleUp.policies[0].periodSeconds: must be 1-1800 seconds, got 0",
                'spec.behavior.scaleUp.policies[1].type: must be one of "Pods", "Percent", got "Nodes"',
                "spec.behavior.scaleUp.policies[1].periodSeconds: must be 1-1800 seconds, got 1801",
            ],
            id="behavior",
        ),
        pytest.param(
            {"behavior": {"scaleDown": {"stabilizationWindowSeconds": -1}}},
            ["spec.behavior.scaleDown.stabilizationWindowSeconds: must be 0-3600 seconds, got -1"],
            id="window-negative",
        ),
    ],
)
def test_invalid(spec: dict[str, Any], expected: list[str]) -> None:
    assert causes(**spec) == expected
