"""Loading manifests safely: corral/manifest.py."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from corral.manifest import (
    MAX_FILE_BYTES,
    Document,
    ManifestError,
    Problem,
    load_documents,
    load_objects,
    parse_object,
    read_sources,
)
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2
from protos.kinds import KINDS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "manifests"
MiB = 1024 * 1024
POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"


def _problems(raw: bytes | str, source: str = "x.yaml") -> list[str]:
    """The problems load_documents reports, as the CLI prints them."""
    data = raw.encode() if isinstance(raw, str) else raw
    with pytest.raises(ManifestError) as caught:
        load_documents(source, data)
    return [str(problem) for problem in caught.value.problems]


def _data(raw: str) -> list[dict[str, Any]]:
    return [doc.data for doc in load_documents("x.yaml", raw.encode())]


# --------------------------------------------------------------------------
# the example from the docs


def test_example_app_loads_with_one_warning() -> None:
    path = str(FIXTURES / "example-app.yaml")
    [parsed] = load_objects([path])
    assert (parsed.source, parsed.index, parsed.info.kind) == (path, 0, "Deployment")
    assert [str(w) for w in parsed.warnings] == [
        f"{path}[0] spec.strategy.rollingUpdate.type: "
        '"type" belongs in spec.strategy, one level up; read as spec.strategy.type: RollingUpdate'
    ]
    deployment = parsed.message
    assert isinstance(deployment, workloads_pb2.Deployment)
    spec = deployment.spec
    assert deployment.metadata.name == "example-app"
    assert spec.replicas == 3
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update.max_surge.WhichOneof("value") == "int_val"
    assert spec.strategy.rolling_update.max_surge.int_val == 3
    assert spec.strategy.rolling_update.max_unavailable.WhichOneof("value") == "int_val"
    assert spec.strategy.rolling_update.max_unavailable.int_val == 0
    assert dict(spec.selector.match_labels) == {"app": "example-app"}
    assert dict(spec.template.metadata.labels) == {"app": "example-app"}
    [container] = spec.template.spec.containers
    assert (container.name, container.image) == ("example-app", "httpd:2.4.39")
    assert [port.container_port for port in container.ports] == [80]


# --------------------------------------------------------------------------
# Problem and ManifestError


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        pytest.param(
            Problem(
                "web.yaml",
                0,
                "spec.template.spec.containers[0].ports[0].containerPort",
                "must be 1-65535, got 70000",
            ),
            "web.yaml[0] spec.template.spec.containers[0].ports[0].containerPort: must be 1-65535, got 70000",
            id="full",
        ),
        pytest.param(Problem("web.yaml", None, "", "boom"), "web.yaml: boom", id="no-index"),
        pytest.param(Problem("web.yaml", 0, "", "boom"), "web.yaml[0]: boom", id="no-path"),
        pytest.param(Problem("<stdin>", 2, "kind", "boom"), "<stdin>[2] kind: boom", id="stdin"),
    ],
)
def test_problem_str(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_manifest_error_joins_lines() -> None:
    error = ManifestError([Problem("a.yaml", None, "", "one"), Problem("b.yaml", 1, "x", "two")])
    assert str(error) == "a.yaml: one\nb.yaml[1] x: two"
    assert len(error.problems) == 2


# --------------------------------------------------------------------------
# hostile input


def _billion_laughs() -> str:
    lines = ['lol0: &lol0 "lol"']
    for level in range(1, 10):
        refs = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"lol{level}: &lol{level} [{refs}]")
    return "\n".join(lines) + "\n"


def _block_nesting(depth: int) -> str:
    return "".join(f"{'  ' * level}k{level}:\n" for level in range(depth)) + "  " * depth + "x: 1\n"


_RANDOM = random.Random(1234).randbytes(4096)
_DEEP = "nesting deeper than 100 levels"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            _billion_laughs(),
            ["x.yaml[0] lol6: too many nodes after expanding aliases (alias bomb?)"],
            id="billion-laughs",
        ),
        pytest.param(
            "a: &a [" + ",".join(["x"] * 1000) + "]\nb: [" + ",".join(["*a"] * 2000) + "]\n",
            ["x.yaml[0] b: too many nodes after expanding aliases (alias bomb?)"],
            id="wide-alias-bomb",
        ),
        pytest.param(
            "a: " + "x" * (2 * MiB) + "\n",
            ["x.yaml[0]: document is too large (over 1 MiB); split it into smaller ones"],
            id="2MiB-document",
        ),
        pytest.param(
            "---\n# only a comment\n---\n" + POD + "---\nkind: Pod\ndata: " + "x" * (2 * MiB),
            ["x.yaml[1]: document is too large (over 1 MiB); split it into smaller ones"],
            id="2MiB-second-document",
        ),
        pytest.param("[" * 150 + "]" * 150, [f"x.yaml[0] [0][0][0][0]...: {_DEEP}"], id="flow-150"),
        pytest.param(_block_nesting(150), [f"x.yaml[0] k0.k1.k2.k3...: {_DEEP}"], id="block-150"),
        pytest.param(
            "a: &a " + "[" * 95 + "]" * 95 + "\nb: " + "[" * 10 + "*a" + "]" * 10 + "\n",
            [f"x.yaml[0] b[0][0][0]...: {_DEEP}"],
            id="deep-through-alias",
        ),
        pytest.param(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            ["x.yaml: not a text file: invalid UTF-8 at byte 0"],
            id="png-header",
        ),
        pytest.param(b"apiVersion: v1\x00kind: Pod\n", ["x.yaml: not a text file: NUL at byte 14"], id="nul"),
        pytest.param(b"name: caf\xe9\n", ["x.yaml: not a text file: invalid UTF-8 at byte 9"], id="latin-1"),
        pytest.param(
            b"a: \x1b[31mred\n",
            ["x.yaml: not a text file: control character U+001B at byte 3"],
            id="control-character",
        ),
        pytest.param(b"a" * (17 * MiB), ["x.yaml: file is too large (over 16 MiB)"], id="17MiB-file"),
    ],
)
def test_hostile_input_is_refused(raw: str | bytes, expected: list[str]) -> None:
    assert _problems(raw) == expected


def test_a_megabyte_of_open_brackets() -> None:
    # libyaml stops at its own limit (1000) while scanning ahead; the pure
    # Python parser gets to ours first. Either way: refused, no recursion.
    [problem] = _problems("[" * 1_000_000)
    assert problem in (
        f"x.yaml[0] [0][0][0][0]...: {_DEEP}",
        "x.yaml: invalid YAML at line 1, column 1001: exceeded maximum nesting depth",
    )


def test_random_bytes_are_not_text() -> None:
    [problem] = _problems(_RANDOM)
    assert problem.startswith("x.yaml: not a text file: ")


def test_nesting_up_to_the_limit_is_fine() -> None:
    [data] = _data(_block_nesting(99))
    for level in range(99):
        data = data[f"k{level}"]
    assert data == {"x": 1}


def test_many_documents_too_many_nodes_in_total() -> None:
    # 400,000 nodes each (through aliases): each document passes, the file does not.
    doc = "a: &a [" + ",".join(["1"] * 1000) + "]\nb: [" + ",".join(["*a"] * 400) + "]\n"
    assert _problems("---\n".join([doc] * 3)) == ["x.yaml: too many nodes in one file (over 1,000,000)"]


@pytest.mark.parametrize("libyaml", [pytest.param(True, id="libyaml"), pytest.param(False, id="pure-python")])
def test_both_yaml_parsers_refuse_the_same(libyaml: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if libyaml and not yaml.__with_libyaml__:
        pytest.skip("PyYAML built without libyaml")
    monkeypatch.setattr(yaml, "__with_libyaml__", libyaml)
    assert _problems(_billion_laughs())[0].endswith("(alias bomb?)")
    assert _problems("[" * 150 + "]" * 150)[0].endswith(_DEEP)
    assert _problems(_block_nesting(150))[0].endswith(_DEEP)
    assert _problems("a: 1\na: 2\n") == ['x.yaml[0] a: duplicate key "a"']
    [parsed] = load_objects([str(FIXTURES / "example-app.yaml")])
    assert len(parsed.warnings) == 1


# --------------------------------------------------------------------------
# YAML problems


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            "a: b\n  c: d\n",
            ["x.yaml: invalid YAML at line 2, column 4: mapping values are not allowed in this context"],
            id="syntax-error",
        ),
        pytest.param(
            POD + "---\nkind: [unclosed\n",
            ["x.yaml: invalid YAML at line 7, column 1: did not find expected ',' or ']'"],
            id="syntax-error-second-document",
        ),
        pytest.param(
            "spec:\n  replicas: 1\n  replicas: 2\n",
            ['x.yaml[0] spec.replicas: duplicate key "replicas"'],
            id="duplicate-key",
        ),
        pytest.param(
            '{"kind": "Pod", "kind": "Pod"}',
            ['x.yaml[0] kind: duplicate key "kind"'],
            id="duplicate-key-json",
        ),
        pytest.param(
            "a: {b: 1, b: 2}\nc: [{d: 1, d: 1}]\na: 3\n",
            [
                'x.yaml[0] a.b: duplicate key "b"',
                'x.yaml[0] c[0].d: duplicate key "d"',
                'x.yaml[0] a: duplicate key "a"',
            ],
            id="every-duplicate",
        ),
        pytest.param("- a\n- b\n", ["x.yaml[0]: expected a mapping with apiVersion and kind, got list"], id="list"),
        pytest.param(
            "hello\n", ['x.yaml[0]: expected a mapping with apiVersion and kind, got string "hello"'], id="string"
        ),
        pytest.param("~\n", ["x.yaml[0]: expected a mapping with apiVersion and kind, got null"], id="explicit-null"),
        pytest.param("a: *nowhere\n", ['x.yaml[0] a: unknown alias "*nowhere"'], id="unknown-alias"),
        pytest.param("a: &x [*x]\n", ['x.yaml[0] a[0]: unknown alias "*x"'], id="recursive-alias"),
        pytest.param(
            "a: !!python/object/apply:os.system [echo]\n",
            ["x.yaml[0] a: unsupported YAML tag !!python/object/apply:os.system"],
            id="python-tag",
        ),
        pytest.param("a: !!binary aGk=\n", ["x.yaml[0] a: unsupported YAML tag !!binary"], id="binary-tag"),
        pytest.param("a: !custom x\n", ["x.yaml[0] a: unsupported YAML tag !custom"], id="custom-tag"),
        pytest.param("a: !!set {x}\n", ["x.yaml[0] a: unsupported YAML tag !!set"], id="set-tag"),
        pytest.param("a: !!int abc\n", ['x.yaml[0] a: invalid !!int value "abc"'], id="bad-int"),
        pytest.param("a: " + "9" * 5000 + "\n", [f'x.yaml[0] a: invalid !!int value "{"9" * 60}"'], id="int-too-long"),
        pytest.param("? [a]\n: b\n", ["x.yaml[0]: mapping keys must be strings"], id="complex-key"),
        pytest.param(
            "b: &b 1\nm: {<<: *b}\n",
            ["x.yaml[0] m.<<: a << merge takes a mapping or a list of mappings"],
            id="merge-scalar",
        ),
    ],
)
def test_yaml_problems(raw: str, expected: list[str]) -> None:
    assert _problems(raw) == expected


@pytest.mark.parametrize(
    ("raw", "data"),
    [
        pytest.param("created: 2026-11-27\n", {"created": "2026-11-27"}, id="dates-stay-strings"),
        pytest.param("at: 2026-11-27T16:29:48Z\n", {"at": "2026-11-27T16:29:48Z"}, id="timestamps-stay-strings"),
        pytest.param("on: yes\n", {"on": True}, id="keys-as-written"),
        pytest.param("1: a\n", {"1": "a"}, id="int-key"),
        pytest.param(
            'a: "1"\nb: 1\nc: 1.5\nd: null\ne: 0x1f\n', {"a": "1", "b": 1, "c": 1.5, "d": None, "e": 31}, id="scalars"
        ),
        pytest.param("a: !!str 1\nb: !!int '2'\n", {"a": "1", "b": 2}, id="explicit-tags"),
        pytest.param(
            "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n",
            {"base": {"x": 1, "y": 2}, "m": {"x": 1, "y": 3}},
            id="merge-keys",
        ),
        pytest.param(
            "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nm: {<<: [*a, *b]}\n",
            {"a": {"x": 1}, "b": {"x": 2, "y": 2}, "m": {"x": 1, "y": 2}},
            id="merge-list-first-wins",
        ),
        pytest.param("a: &a [1, 2]\nb: *a\n", {"a": [1, 2], "b": [1, 2]}, id="alias"),
        pytest.param('{"a": [1, {"b": "c\\/d"}], "e": true}', {"a": [1, {"b": "c/d"}], "e": True}, id="json"),
        pytest.param('{\n\t"a": 1\n}', {"a": 1}, id="json-tabs"),
        pytest.param("\ufeffa: 1\n", {"a": 1}, id="byte-order-mark"),
    ],
)
def test_yaml_values(raw: str, data: dict[str, Any]) -> None:
    assert _data(raw) == [data]


def test_aliases_expand_into_independent_objects() -> None:
    [data] = _data("a: &a {x: [1]}\nb: *a\n")
    assert data["a"] == data["b"]
    assert data["a"] is not data["b"]


# --------------------------------------------------------------------------
# document indexes and kind: List


def test_index_counts_documents_with_content() -> None:
    raw = "---\n# a comment\n---\n" + POD + "---\n---\n\n---\n- not an object\n"
    assert _problems(raw) == ["x.yaml[1]: expected a mapping with apiVersion and kind, got list"]


def test_documents_keep_order_and_index() -> None:
    raw = "# leading comment\n" + POD + "---\n" + POD.replace("name: p", "name: q") + "...\n"
    docs = load_documents("x.yaml", raw.encode())
    assert [(d.index, d.data["metadata"]["name"]) for d in docs] == [(0, "p"), (1, "q")]


def test_empty_file_has_no_documents() -> None:
    assert load_documents("x.yaml", b"# nothing here\n---\n") == []


_LIST = """\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Pod, metadata: {name: a}}
- {apiVersion: v1, kind: Pod, metadata: {name: b}, spec: {containers: [{name: c, image: 3}]}}
"""


def test_list_expands_into_items() -> None:
    docs = load_documents("x.yaml", (POD + "---\n" + _LIST).encode())
    assert [(d.index, d.path, d.data["metadata"]["name"]) for d in docs] == [
        (0, "", "p"),
        (1, "items[0]", "a"),
        (1, "items[1]", "b"),
    ]


def test_list_item_problems_carry_the_item_path() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_object(load_documents("x.yaml", _LIST.encode())[1])
    assert str(caught.value) == "x.yaml[0] items[1].spec.containers[0].image: expected a string, got integer 3"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            "apiVersion: v1\nkind: List\nitems: 3\n",
            ["x.yaml[0] items: expected a list, got integer 3"],
            id="items-not-list",
        ),
        pytest.param(
            "apiVersion: v1\nkind: List\nitems: [1]\n",
            ["x.yaml[0] items[0]: expected a mapping with apiVersion and kind, got integer 1"],
            id="item-not-object",
        ),
        pytest.param(
            "apiVersion: apps/v1\nkind: List\nitems: []\n",
            ['x.yaml[0] apiVersion: expected "v1" for kind List, got string "apps/v1"'],
            id="list-api-version",
        ),
        pytest.param(
            "apiVersion: v1\nkind: List\nitem: []\n", ['x.yaml[0] item: unknown field "item"'], id="list-unknown-field"
        ),
    ],
)
def test_list_problems(raw: str, expected: list[str]) -> None:
    assert _problems(raw) == expected


# --------------------------------------------------------------------------
# parse_object


def _parse_problems(data: dict[str, Any], path: str = "") -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_object(Document("web.yaml", 0, data, path))
    return [str(problem) for problem in caught.value.problems]


_DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"kind": "Pod"}, ['web.yaml[0]: missing required field "apiVersion"'], id="no-api-version"),
        pytest.param({"apiVersion": "v1"}, ['web.yaml[0]: missing required field "kind"'], id="no-kind"),
        pytest.param(
            {},
            ['web.yaml[0]: missing required field "apiVersion"', 'web.yaml[0]: missing required field "kind"'],
            id="neither",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": 3}, ["web.yaml[0] kind: expected a string, got integer 3"], id="kind-int"
        ),
        pytest.param(
            {"apiVersion": 1, "kind": "Pod"},
            ["web.yaml[0] apiVersion: expected a string, got integer 1"],
            id="api-version-int",
        ),
        pytest.param(
            {"apiVersion": "apps/v1", "kind": "Deploymnet"},
            ['web.yaml[0] kind: unknown kind "Deploymnet" (did you mean "Deployment"?)'],
            id="kind-typo",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "pod"},
            ['web.yaml[0] kind: unknown kind "pod" (did you mean "Pod"?)'],
            id="kind-lowercase",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "Widget"},
            # Every kind of the table, in its order (kinds are added beside this test).
            [f'web.yaml[0] kind: unknown kind "Widget" (known kinds: {", ".join(k.kind for k in KINDS)})'],
            id="kind-unknown",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "Deployment"},
            ['web.yaml[0] apiVersion: expected "apps/v1" for kind Deployment, got "v1"'],
            id="wrong-api-version",
        ),
        pytest.param(
            {
                **_DEPLOYMENT,
                "spec": {"replicas": "3", "template": {"spec": {"containers": [{"ports": [{"containerPort": "80"}]}]}}},
            },
            [
                'web.yaml[0] spec.replicas: expected an integer, got string "3"',
                "web.yaml[0] spec.template.spec.containers[0].ports[0].containerPort: "
                'expected an integer, got string "80"',
            ],
            id="codec-errors",
        ),
        pytest.param(
            {**_DEPLOYMENT, "spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"type": "RollingUpdate"}}}},
            [
                "web.yaml[0] spec.strategy.rollingUpdate.type: "
                '"type" belongs in spec.strategy, one level up; it conflicts with spec.strategy.type: Recreate'
            ],
            id="strategy-type-conflict",
        ),
        pytest.param(
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"strategy": {"rollingUpdate": {"type": "X"}}}},
            ['web.yaml[0] spec.strategy: unknown field "strategy"'],
            id="compat-only-for-deployments",
        ),
    ],
)
def test_parse_object_problems(data: dict[str, Any], expected: list[str]) -> None:
    assert _parse_problems(data) == expected


def test_missing_kind_in_a_list_item_names_the_item() -> None:
    assert _parse_problems({"apiVersion": "v1"}, "items[3]") == ['web.yaml[0] items[3]: missing required field "kind"']


@pytest.mark.parametrize(
    ("strategy", "warnings", "type_"),
    [
        pytest.param(
            {"rollingUpdate": {"type": "RollingUpdate"}},
            ['"type" belongs in spec.strategy, one level up; read as spec.strategy.type: RollingUpdate'],
            "RollingUpdate",
            id="moved",
        ),
        pytest.param(
            {"type": "Recreate", "rollingUpdate": {"type": "Recreate"}},
            ['"type" belongs in spec.strategy, one level up; read as spec.strategy.type: Recreate'],
            "Recreate",
            id="same-value-both-places",
        ),
        pytest.param({"rollingUpdate": {"type": None}}, [], "", id="null-is-dropped"),
        pytest.param({"type": "Recreate"}, [], "Recreate", id="nothing-to-move"),
    ],
)
def test_strategy_type_compatibility(strategy: dict[str, Any], warnings: list[str], type_: str) -> None:
    data = {**_DEPLOYMENT, "spec": {"strategy": strategy}}
    before = repr(data)
    parsed = parse_object(Document("web.yaml", 0, data))
    assert [w.message for w in parsed.warnings] == warnings
    assert all(w.path == "spec.strategy.rollingUpdate.type" for w in parsed.warnings)
    assert isinstance(parsed.message, workloads_pb2.Deployment)
    assert parsed.message.spec.strategy.type == type_
    assert repr(data) == before  # the document's data is not mutated


def test_parse_object_returns_message_and_kind() -> None:
    parsed = parse_object(Document("p.yaml", 4, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}))
    assert (parsed.source, parsed.index, parsed.info.kind, parsed.warnings) == ("p.yaml", 4, "Pod", [])
    assert parsed.message == pod_pb2.Pod(api_version="v1", kind="Pod", metadata=meta_pb2.ObjectMeta(name="p"))


# --------------------------------------------------------------------------
# read_sources and load_objects


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of manifests; the tests run from tmp_path so names are short."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "manifests"
    for name in ("b.yaml", "a.yml", "c.json", "z.yaml", "m/d.yaml", "m/n/e.yml"):
        _write(root / name, POD.replace("name: p", f"name: {Path(name).stem}"))
    _write(root / "notes.txt", "not a manifest")
    _write(root / "README.md", "# hi")
    return root


@pytest.mark.parametrize(
    ("recursive", "names"),
    [
        pytest.param(False, ["a.yml", "b.yaml", "c.json", "z.yaml"], id="flat"),
        pytest.param(True, ["a.yml", "b.yaml", "c.json", "m/d.yaml", "m/n/e.yml", "z.yaml"], id="recursive"),
    ],
)
def test_read_sources_folder(folder: Path, recursive: bool, names: list[str]) -> None:
    sources = read_sources(["manifests"], recursive=recursive)
    assert [name for name, _ in sources] == [f"manifests/{n}" for n in names]
    assert sources[0][1] == POD.replace("name: p", "name: a").encode()


def test_load_objects_folder(folder: Path) -> None:
    objects = load_objects(["manifests"], recursive=True)
    assert [o.message.metadata.name for o in objects if isinstance(o.message, pod_pb2.Pod)] == [
        "a",
        "b",
        "c",
        "d",
        "e",
        "z",
    ]


def test_read_sources_missing_and_empty(folder: Path) -> None:
    (folder.parent / "empty").mkdir()
    with pytest.raises(ManifestError) as caught:
        read_sources(["missing.yaml", "empty", "manifests/a.yml"])
    assert str(caught.value).splitlines() == [
        "missing.yaml: no such file or directory",
        "empty: no manifests (*.yaml, *.yml, *.json) in directory",
    ]


def test_read_sources_stdin_and_explicit_file(folder: Path) -> None:
    stdin = io.BytesIO(POD.encode())
    sources = read_sources(["-", "manifests/notes.txt"], stdin=stdin)
    assert sources == [("<stdin>", POD.encode()), ("manifests/notes.txt", b"not a manifest")]


def test_load_objects_from_stdin() -> None:
    raw = POD + "---\n" + _LIST.rpartition("\n- ")[0] + "\n"
    objects = load_objects(["-"], stdin=io.BytesIO(raw.encode()))
    assert [(o.source, o.index) for o in objects] == [("<stdin>", 0), ("<stdin>", 1)]


def test_load_objects_reads_at_most_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.yaml").write_bytes(b"#" * (17 * MiB))
    stdin = io.BytesIO(b"a" * (MAX_FILE_BYTES + 10))
    with pytest.raises(ManifestError) as caught:
        load_objects(["big.yaml", "-"], stdin=stdin)
    assert str(caught.value).splitlines() == [
        "big.yaml: file is too large (over 16 MiB)",
        "<stdin>: file is too large (over 16 MiB)",
    ]
    assert stdin.tell() == MAX_FILE_BYTES + 1


def test_load_objects_reports_every_problem_in_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "good.yaml", POD)
    _write(tmp_path / "bad.yaml", POD + "spec: {containers: [{name: 1}]}\n---\napiVersion: v1\nkind: Pods\n")
    _write(tmp_path / "broken.yaml", "a: [\n")
    with pytest.raises(ManifestError) as caught:
        load_objects(["good.yaml", "bad.yaml", "missing.yaml", "broken.yaml"])
    assert str(caught.value).splitlines() == [
        "missing.yaml: no such file or directory",
        "bad.yaml[0] spec.containers[0].name: expected a string, got integer 1",
        'bad.yaml[1] kind: unknown kind "Pods" (did you mean "Pod"?)',
        "broken.yaml: invalid YAML at line 2, column 1: did not find expected node content",
    ]


def test_load_objects_with_nothing_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "empty.yaml", "# nothing\n---\n")
    with pytest.raises(ManifestError, match=r"^empty\.yaml: no objects found$"):
        load_objects(["empty.yaml"])


# --------------------------------------------------------------------------
# property: whatever PyYAML writes, the guarded loader reads back the same

_keys = st.text(max_size=6)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@example([{" ": None, "\x85": None}])
@given(st.lists(st.dictionaries(_keys, _values, min_size=1, max_size=4), min_size=1, max_size=3))
def test_reads_what_pyyaml_reads(documents: list[dict[str, Any]]) -> None:
    for flow in (False, True):
        raw = yaml.safe_dump_all(documents, default_flow_style=flow, allow_unicode=True, explicit_start=True)
        # PyYAML itself does not always read back what it wrote (a raw U+0085
        # in a quoted string folds to a space), so compare with its reading.
        # When that folding makes two keys equal, PyYAML keeps the last one
        # silently; the guarded loader must refuse the duplicate instead.
        theirs = list(yaml.safe_load_all(raw))
        if _key_count(theirs) < _key_count(documents):
            with pytest.raises(ManifestError, match="duplicate key"):
                _data(raw)
        else:
            assert _data(raw) == theirs


def _key_count(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_key_count(item) for item in value.values())
    if isinstance(value, list):
        return sum(_key_count(item) for item in value)
    return 0


def test_an_ingress_of_another_class_and_foreign_annotations_are_warned_about(tmp_path: Path) -> None:
    from corral.manifest import load_objects as load

    path = tmp_path / "ing.yaml"
    path.write_text(
        """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
    nginx.ingress.kubernetes.io/ssl-redirect: "true"
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: web, port: {number: 80}}}
"""
    )
    (parsed,) = load([str(path)])
    assert [f"{w.path}: {w.message}" for w in parsed.warnings] == [
        'spec.ingressClassName: class "nginx": corral serves it only if that IngressClass names controller '
        '"corral.io/ingress" (as "corral" does); otherwise it is stored and ignored',
        "metadata.annotations[nginx.ingress.kubernetes.io/rewrite-target]: not acted on by corral's ingress",
    ]
