"""`corral delete`'s grace period flags, as kubectl reads them."""

from __future__ import annotations

import click
import pytest

from corral.cli.resources import delete_grace


@pytest.mark.parametrize(
    ("grace_period", "force", "now", "expected"),
    [
        pytest.param(-1, False, False, None, id="default-the-pods-own"),
        pytest.param(15, False, False, 15, id="asked"),
        pytest.param(0, False, False, 1, id="zero-without-force-is-one"),
        pytest.param(0, True, False, 0, id="force-zero-immediate"),
        pytest.param(-1, True, False, 0, id="force-alone-immediate"),
        pytest.param(10, True, False, 10, id="force-with-a-grace-waits-for-it"),
        pytest.param(-1, False, True, 1, id="now-is-one"),
    ],
)
def test_delete_grace(grace_period: int, force: bool, now: bool, expected: int | None) -> None:
    assert delete_grace(grace_period, force=force, now=now) == expected


def test_now_and_grace_period_together_are_refused() -> None:
    with pytest.raises(click.UsageError, match="--now and --grace-period cannot be specified together"):
        delete_grace(5, force=False, now=True)
