"""Well-known names (protos/wellknown.py): each defined once, under the prefixes the system owns."""

from __future__ import annotations

import pytest

from protos import wellknown

SYSTEM_ANNOTATIONS = [
    wellknown.REVISION,
    wellknown.REVISION_HISTORY,
    wellknown.DESIRED_REPLICAS,
    wellknown.MAX_REPLICAS,
    wellknown.ROLLBACK_ON_FAILURE,
    wellknown.ROLLED_BACK_TO,
    wellknown.PROMOTE,
    wellknown.ABORT,
    wellknown.SCALE_DOWN_AT,
    wellknown.RESTARTED_AT,
    wellknown.CONFIG_ERRORS,
    wellknown.SCHEDULING_STRATEGY,
]


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in SYSTEM_ANNOTATIONS])
def test_system_annotations_are_under_a_system_prefix(name: str) -> None:
    assert name.startswith(wellknown.SYSTEM_ANNOTATION_PREFIXES)


def test_names_are_distinct() -> None:
    names = [v for k, v in vars(wellknown).items() if k.isupper() and isinstance(v, str)]
    assert len(names) == len(set(names))


def test_default_runtime_is_a_runtime() -> None:
    assert wellknown.DEFAULT_RUNTIME in wellknown.RUNTIMES
