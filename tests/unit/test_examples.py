"""The shipped example manifests load without a problem or a warning."""

from pathlib import Path

from corral.manifest import load_objects

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_load_cleanly() -> None:
    objects = load_objects([str(EXAMPLES)])
    assert {o.info.kind for o in objects} >= {"Pod"}
    assert all(not o.warnings for o in objects)
    names = [f.name for f in EXAMPLES.iterdir() if f.suffix in (".yaml", ".yml")]
    assert len({o.source for o in objects}) == len(names)
