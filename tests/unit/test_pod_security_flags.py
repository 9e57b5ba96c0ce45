"""The pod security flags of `corral server` and `corral up`: --pod-security, and
--allow-privileged as its older spelling of "privileged"."""

from __future__ import annotations

import click
import pytest

from corral.cli.server import pod_security_level
from corral.cli.up import up_pod_security


@pytest.mark.parametrize(
    ("level", "allow_privileged", "expected"),
    [
        pytest.param(None, False, "baseline", id="default"),
        pytest.param("restricted", False, "restricted", id="restricted"),
        pytest.param(None, True, "privileged", id="allow-privileged"),
        pytest.param("privileged", True, "privileged", id="both-agree"),
    ],
)
def test_pod_security_level(level: str | None, allow_privileged: bool, expected: str) -> None:
    assert pod_security_level(level, allow_privileged=allow_privileged) == expected


def test_allow_privileged_with_another_level_is_refused() -> None:
    with pytest.raises(click.BadParameter, match="--allow-privileged means --pod-security privileged, not baseline"):
        pod_security_level("baseline", allow_privileged=True)


@pytest.mark.parametrize(
    ("level", "runtime", "expected"),
    [
        pytest.param(None, "docker", "baseline", id="docker-node"),
        pytest.param(None, "process", "privileged", id="process-node"),
        pytest.param("baseline", "process", "baseline", id="asked-wins"),
    ],
)
def test_corral_up_level(level: str | None, runtime: str, expected: str) -> None:
    assert up_pod_security(level, runtime) == expected
