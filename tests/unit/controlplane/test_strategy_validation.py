"""Defaults and validation of the BlueGreen and Canary strategy settings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate
from protos import codec, durations
from protos.corral.v1 import meta_pb2, workloads_pb2
from protos.kinds import by_kind
from tests.unit.controlplane.test_defaults_and_validation import deployment

DEPLOYMENT = by_kind("Deployment")


def defaulted(strategy: dict[str, Any]) -> workloads_pb2.Deployment:
    d, errors = codec.from_dict(deployment(strategy=strategy), workloads_pb2.Deployment)
    assert errors == []
    apply_defaults(DEPLOYMENT, d)
    return d


def causes(strategy: dict[str, Any]) -> list[str]:
    return [str(c) for c in validate(DEPLOYMENT, defaulted(strategy))]


def test_blue_green_defaults() -> None:
    bg = defaulted({"type": "BlueGreen"}).spec.strategy
    assert bg.blue_green.auto_promotion_enabled is True
    assert bg.blue_green.scale_down_delay_seconds == 30
    assert not bg.HasField("rolling_update") and not bg.HasField("canary")
    kept = defaulted(
        {"type": "BlueGreen", "blueGreen": {"autoPromotionEnabled": False, "scaleDownDelaySeconds": 0}}
    ).spec.strategy
    assert (kept.blue_green.auto_promotion_enabled, kept.blue_green.scale_down_delay_seconds) == (False, 0)


def test_canary_defaults() -> None:
    canary = defaulted({"type": "Canary", "canary": {"steps": [{"setWeight": 20}]}}).spec.strategy
    assert canary.canary.abort_on_failure is True
    assert not canary.canary.HasField("canary_replicas")
    assert not canary.HasField("rolling_update") and not canary.HasField("blue_green")
    assert (
        defaulted({"type": "Canary", "canary": {"abortOnFailure": False}}).spec.strategy.canary.abort_on_failure
        is False
    )


@pytest.mark.parametrize(
    "strategy",
    [
        pytest.param({"type": "BlueGreen"}, id="blue-green-bare"),
        pytest.param({"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 0}}, id="blue-green-no-delay"),
        pytest.param({"type": "Canary"}, id="canary-no-steps"),
        pytest.param(
            {
                "type": "Canary",
                "canary": {
                    "steps": [
                        {"setWeight": 10},
                        {"pause": {"duration": 60}},
                        {"setWeight": 50},
                        {"pause": {"duration": "5m"}},
                        {"setWeight": 100},
                        {"pause": {}},
                    ],
                    "canaryReplicas": 1,
                },
            },
            id="canary-argo-shape",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"setWeight": 0}, {"pause": {"duration": "1h"}}]}},
            id="canary-weight-zero-and-hours",
        ),
        pytest.param(
            {
                "type": "Canary",
                "canary": {
                    "steps": [
                        {"pause": {"duration": "1h30m"}},
                        {"pause": {"duration": "90"}},
                        {"pause": {"duration": "7d"}},
                        {"pause": {"duration": "1.5m"}},
                    ]
                },
            },
            id="canary-durations-in-the-one-format",
        ),
    ],
)
def test_valid_strategies(strategy: dict[str, Any]) -> None:
    assert causes(strategy) == []


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        pytest.param(
            {"type": "Blue"},
            'spec.strategy.type: must be one of "RollingUpdate", "Recreate", "BlueGreen", "Canary", got "Blue"',
            id="unknown-type",
        ),
        pytest.param(
            {"type": "Canary", "blueGreen": {}},
            'spec.strategy.blueGreen: may not be set when type is "Canary"',
            id="blue-green-settings-on-canary",
        ),
        pytest.param(
            {"type": "BlueGreen", "canary": {}},
            'spec.strategy.canary: may not be set when type is "BlueGreen"',
            id="canary-settings-on-blue-green",
        ),
        pytest.param(
            {"type": "RollingUpdate", "canary": {}},
            'spec.strategy.canary: may not be set when type is "RollingUpdate"',
            id="canary-settings-on-rolling-update",
        ),
        pytest.param(
            {"type": "Canary", "rollingUpdate": {"maxSurge": 1}},
            'spec.strategy.rollingUpdate: may not be set when type is "Canary"',
            id="rolling-on-canary",
        ),
        pytest.param(
            {"type": "Recreate", "rollingUpdate": {}},
            'spec.strategy.rollingUpdate: may not be set when type is "Recreate"',
            id="rolling-on-recreate",
        ),
        pytest.param(
            {"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": -1}},
            "spec.strategy.blueGreen.scaleDownDelaySeconds: must be >= 0, got -1",
            id="negative-delay",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"canaryReplicas": 0}},
            "spec.strategy.canary.canaryReplicas: must be >= 1, got 0",
            id="no-canary-replicas",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"setWeight": 101}]}},
            "spec.strategy.canary.steps[0].setWeight: must be 0-100, got 101",
            id="weight-over-100",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"setWeight": 5}, {"setWeight": -1}]}},
            "spec.strategy.canary.steps[1].setWeight: must be 0-100, got -1",
            id="negative-weight",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{}]}},
            "spec.strategy.canary.steps[0]: must set exactly one of setWeight, pause",
            id="empty-step",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"setWeight": 5, "pause": {}}]}},
            "spec.strategy.canary.steps[0]: must set exactly one of setWeight, pause",
            id="both-in-a-step",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"pause": {"duration": "soon"}}]}},
            "spec.strategy.canary.steps[0].pause.duration: must be a number of seconds or a duration "
            'such as "90", "90s", "1m30s", "500ms", "1.5h" or "7d", got "soon"',
            id="malformed-duration",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"pause": {"duration": "500ms"}}]}},
            'spec.strategy.canary.steps[0].pause.duration: must be a whole number of seconds, got "500ms"',
            id="fraction-of-a-second",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"pause": {"duration": -5}}]}},
            "spec.strategy.canary.steps[0].pause.duration: must be >= 0 seconds, got -5",
            id="negative-duration",
        ),
        pytest.param(
            {"type": "Canary", "canary": {"steps": [{"pause": {"duration": "99999999999999h"}}]}},
            'spec.strategy.canary.steps[0].pause.duration: must be at most 2147483647 seconds, got "99999999999999h"',
            id="duration-overflowing",
        ),
    ],
)
def test_invalid_strategies(strategy: dict[str, Any], expected: str) -> None:
    assert expected in causes(strategy)


@given(
    st.one_of(
        st.integers(-(2**31), 2**31 - 1).map(lambda n: meta_pb2.IntOrString(int_val=n)),
        st.text(max_size=8).map(lambda s: meta_pb2.IntOrString(str_val=s)),
        st.tuples(st.integers(0, 10**6), st.sampled_from("smhd")).map(
            lambda t: meta_pb2.IntOrString(str_val=f"{t[0]}{t[1]}")
        ),
    )
)
def test_validation_accepts_exactly_the_durations_the_controller_reads(value: meta_pb2.IntOrString) -> None:
    pause = workloads_pb2.CanaryPause(duration=value)
    seconds = durations.pause_seconds(pause)
    valid = durations.duration_problem(value) is None
    assert valid == (seconds is not None)
    if valid:
        assert seconds is not None and seconds >= 0
