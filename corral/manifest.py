"""Loading manifests for `corral apply -f` and `corral delete -f`.

The pipeline, each step usable on its own::

    read_sources(specs)          files, directories and "-" (stdin) -> raw bytes
    load_documents(source, raw)  the hostile-input guard and the YAML parse
    parse_object(document)       kind table + strict codec -> a protobuf message
    load_objects(specs)          all of it; ONE ManifestError with every problem

Every user mistake becomes a `Problem` naming the file, the document and the
field, such as::

    web.yaml[0] spec.template.spec.containers[0].ports[0].containerPort: expected an integer, got string "80"

Document index rule (kubectl-like): the index counts the documents that have
content, from 0. Documents holding nothing but comments, blank lines and `---`
markers are skipped and take no index, so a file that starts with `---` or
ends with one numbers its objects the way its reader does. A `kind: List`
expands into its items; they keep the List's index and their paths start with
`items[i].`.

Input is treated as hostile. Refused quickly, with a message and without
unbounded memory: files over 16 MiB; anything that is not UTF-8 text (NUL,
control characters); a document over 1 MiB (measured on the raw text, split
at `---` lines, before parsing); alias expansion past 1,000,000 nodes (the
"billion laughs"); nesting deeper than 100 levels; duplicate mapping keys;
YAML tags other than the plain JSON-like ones. Nodes are composed from the
parser's event stream without recursion, counted (aliases included) as they
are composed, and turned into Python objects only after the checks pass.

As in kubectl, unquoted timestamps stay strings and mapping keys are taken as
written (`on:` is the key "on", not True).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, Final, Literal, NoReturn, TypeAlias

import yaml
from google.protobuf.message import Message
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from protos import codec, ingresses
from protos.corral.v1 import ingress_pb2, pod_pb2
from protos.kinds import KINDS, STORED_ONLY, KindInfo, UnknownKindError, by_kind, meta

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "Document",
    "ManifestError",
    "ParsedObject",
    "Problem",
    "load_documents",
    "load_objects",
    "parse_object",
    "read_sources",
]

MAX_FILE_BYTES: Final = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES: Final = 1024 * 1024
MAX_NODES: Final = 1_000_000
MAX_DEPTH: Final = 100

MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")
STDIN_SPEC: Final = "-"
STDIN_NAME: Final = "<stdin>"


# --------------------------------------------------------------------------
# public types


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or, as a warning, odd) with one place in one file."""

    source: str
    index: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.index is None else f"{self.source}[{self.index}]"
        if self.path:
            where = f"{where} {self.path}"
        return f"{where}: {self.message}"


class ManifestError(Exception):
    """Manifests that cannot be used; `problems` lists every reason."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass(frozen=True)
class Document:
    """One object's data as written. `path` prefixes its field paths
    (`items[2]` for an item of a `kind: List`, empty otherwise)."""

    source: str
    index: int
    data: dict[str, Any]
    path: str = ""


@dataclass(frozen=True)
class ParsedObject:
    """A manifest object converted to its protobuf message."""

    source: str
    index: int
    info: KindInfo
    message: Message
    warnings: list[Problem]


# --------------------------------------------------------------------------
# reading sources


def read_sources(
    specs: list[str], *, stdin: BinaryIO | None = None, recursive: bool = False
) -> list[tuple[str, bytes]]:
    """The (name, bytes) of every manifest the specs name, in order.

    A spec is a file, a directory (its *.yaml, *.yml and *.json files in
    sorted order, subdirectories too with `recursive`) or "-" for stdin.
    At most MAX_FILE_BYTES + 1 bytes are read from each, so that
    `load_documents` can refuse larger ones without reading them whole.
    """
    sources, problems = _read_all(specs, stdin, recursive)
    if problems:
        raise ManifestError(problems)
    return sources


def _read_all(
    specs: list[str], stdin: BinaryIO | None, recursive: bool
) -> tuple[list[tuple[str, bytes]], list[Problem]]:
    sources: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    for spec in specs:
        if spec == STDIN_SPEC:
            names = [STDIN_NAME]
        elif os.path.isdir(spec):
            names = _directory_manifests(spec, recursive, problems)
        else:
            names = [spec]
        for name in names:
            try:
                sources.append((name, _read_bounded(name, stdin)))
            except OSError as exc:
                problems.append(Problem(name, None, "", _os_message(exc)))
    return sources, problems


def _read_bounded(name: str, stdin: BinaryIO | None) -> bytes:
    if name == STDIN_NAME:
        stream = stdin if stdin is not None else sys.stdin.buffer
        return stream.read(MAX_FILE_BYTES + 1)
    with open(name, "rb") as file:
        return file.read(MAX_FILE_BYTES + 1)


def _directory_manifests(directory: str, recursive: bool, problems: list[Problem]) -> list[str]:
    """Manifest files in a directory, in lexical order of their relative paths."""
    found: list[str] = []
    known = len(problems)

    def failed(exc: OSError) -> None:
        problems.append(Problem(exc.filename or directory, None, "", _os_message(exc)))

    for root, dirs, files in os.walk(directory, onerror=failed):
        found.extend(os.path.join(root, n) for n in files if n.endswith(MANIFEST_SUFFIXES))
        if not recursive:
            dirs.clear()
    if not found and len(problems) == known:
        wanted = ", ".join(f"*{suffix}" for suffix in MANIFEST_SUFFIXES)
        problems.append(Problem(directory, None, "", f"no manifests ({wanted}) in directory"))
    return sorted(found, key=lambda name: Path(name).relative_to(directory).parts)


def _os_message(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


# --------------------------------------------------------------------------
# the guard: size and encoding, before any parsing

_SEPARATOR: Final = re.compile(rb"^---(?=[ \t\r\n]|\Z)", re.MULTILINE)
# What YAML allows in a stream (its "printable" set), tab and newlines included.
_NOT_PRINTABLE: Final = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _decode(source: str, raw: bytes) -> str:
    """The file's text, or ManifestError when it is too big or not text."""
    if len(raw) > MAX_FILE_BYTES:
        _refuse(source, "file is too large (over 16 MiB)")
    bad_utf8: int | None = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_utf8 = exc.start
    nul = raw.find(b"\0", 0, bad_utf8)
    if nul >= 0:
        _refuse(source, f"not a text file: NUL at byte {nul}")
    if bad_utf8 is not None:
        _refuse(source, f"not a text file: invalid UTF-8 at byte {bad_utf8}")
    control = _NOT_PRINTABLE.search(text)
    if control is not None:
        offset = len(text[: control.start()].encode("utf-8"))
        code = f"U+{ord(control.group()):04X}"
        _refuse(source, f"not a text file: control character {code} at byte {offset}")
    return text


def _check_document_sizes(source: str, raw: bytes) -> None:
    """Refuse documents over MAX_DOCUMENT_BYTES, splitting at `---` lines."""
    bounds = [0, *(m.start() for m in _SEPARATOR.finditer(raw)), len(raw)]
    if all(end - begin <= MAX_DOCUMENT_BYTES for begin, end in pairwise(bounds)):
        return
    problems: list[Problem] = []
    index = 0
    for begin, end in pairwise(bounds):
        chunk = raw[begin:end]
        if len(chunk) > MAX_DOCUMENT_BYTES:
            message = "document is too large (over 1 MiB); split it into smaller ones"
            problems.append(Problem(source, index, "", message))
        if not _is_blank(chunk):
            index += 1
    raise ManifestError(problems)


def _is_blank(chunk: bytes) -> bool:
    """True for text with only comments, blank lines and `---`/`...` markers."""
    for line in chunk.splitlines():
        text = line.strip()
        if text.startswith((b"---", b"...")):
            text = text[3:].strip()
        if text and not text.startswith(b"#"):
            return False
    return True


def _refuse(source: str, message: str) -> NoReturn:
    raise ManifestError([Problem(source, None, "", message)])


# --------------------------------------------------------------------------
# composing YAML nodes from parser events

_Loader: TypeAlias = "yaml.SafeLoader | yaml.CSafeLoader"

_TAG: Final = "tag:yaml.org,2002:"
_STR, _SEQ, _MAP, _MERGE = _TAG + "str", _TAG + "seq", _TAG + "map", _TAG + "merge"
_AS_TEXT: Final = frozenset({_STR, _TAG + "timestamp", _MERGE, _TAG + "value"})
_CONSTRUCTORS: Final = {
    _TAG + "null": SafeConstructor.construct_yaml_null,
    _TAG + "bool": SafeConstructor.construct_yaml_bool,
    _TAG + "int": SafeConstructor.construct_yaml_int,
    _TAG + "float": SafeConstructor.construct_yaml_float,
}


@dataclass(eq=False, slots=True)
class _Scalar:
    """A composed scalar: its Python value, its text as written, its tag."""

    value: Any
    raw: str
    tag: str
    size: ClassVar[int] = 1  # nodes it expands to
    depth: ClassVar[int] = 0  # collections it nests


@dataclass(eq=False, slots=True)
class _Collection:
    """A composed sequence or mapping. `size` counts the nodes it expands to
    (through aliases too); `depth` is how many collections deep it goes."""

    kind: Literal["seq", "map"]
    items: list[_Node] = field(default_factory=list)
    entries: dict[str, _Node] = field(default_factory=dict)
    size: int = 1
    depth: int = 1


_Node: TypeAlias = "_Scalar | _Collection"
_EMPTY: Final = _Scalar(None, "", "")


@dataclass(eq=False, slots=True)
class _Frame:
    """A collection being composed."""

    node: _Collection
    anchor: str | None
    path: str
    key: str | None = None
    awaiting_value: bool = False
    merges: list[_Node] = field(default_factory=list)


class _Abort(Exception):
    """A document that must not be composed further. Its path is cut short
    (`a.b.c.d...`): the path to something 100 levels deep helps nobody."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = _shorten(path)
        self.message = message


_SEGMENT: Final = re.compile(r"\[\d+\]|\.?[^.\[]+")


def _shorten(path: str, keep: int = 4) -> str:
    ends = [match.end() for match in _SEGMENT.finditer(path)]
    return path if len(ends) <= keep else path[: ends[keep - 1]] + "..."


_ALIAS_BOMB: Final = "too many nodes after expanding aliases (alias bomb?)"
_TOO_DEEP: Final = f"nesting deeper than {MAX_DEPTH} levels"
_TOO_MANY_IN_FILE: Final = f"too many nodes in one file (over {MAX_NODES:,})"
_BAD_KEY: Final = "\0bad key"  # a key we refused; its value is dropped


class _Composer:
    """Builds one document's node graph from events, enforcing the limits.

    Fatal limits raise `_Abort`; other problems (duplicate keys, unsupported
    tags) are collected as (path, message) in `problems`.
    """

    def __init__(self, loader: _Loader, plain: dict[str, _Scalar]) -> None:
        self.loader = loader
        self.plain = plain
        self.anchors: dict[str, _Node] = {}
        self.stack: list[_Frame] = []
        self.root: _Node | None = None
        self.problems: list[tuple[str, str]] = []

    def compose(self) -> _Node:
        """Consume events through the document's end; the root node."""
        while True:
            event = self.loader.get_event()
            if event is None or isinstance(event, DocumentEndEvent):
                return self.root if self.root is not None else _EMPTY
            self._handle(event)

    def _handle(self, event: Event) -> None:
        if isinstance(event, ScalarEvent):
            self._attach(self._scalar(event), event.anchor)
        elif isinstance(event, AliasEvent):
            self._attach(self._alias(event.anchor or ""), None)
        elif isinstance(event, SequenceStartEvent | MappingStartEvent):
            self._start(event)
        elif isinstance(event, SequenceEndEvent | MappingEndEvent):
            frame = self.stack.pop()
            if frame.node.kind == "map":
                self._finish_map(frame)
            self._attach(frame.node, frame.anchor)

    def _start(self, event: SequenceStartEvent | MappingStartEvent) -> None:
        path = self._child_path()
        if len(self.stack) >= MAX_DEPTH:
            raise _Abort(path, _TOO_DEEP)
        is_map = isinstance(event, MappingStartEvent)
        if event.tag not in (None, "!", _MAP if is_map else _SEQ):
            self.problems.append((path, f"unsupported YAML tag {_short_tag(event.tag)}"))
        node = _Collection("map" if is_map else "seq")
        self.stack.append(_Frame(node, event.anchor, path))

    def _alias(self, anchor: str) -> _Node:
        node = self.anchors.get(anchor)
        if node is None:
            raise _Abort(self._child_path(), f'unknown alias "*{anchor}"')
        return node

    def _scalar(self, event: ScalarEvent) -> _Scalar:
        tag = event.tag
        if tag is None or tag == "!":
            if event.implicit[0]:
                return self._plain(event.value)
            tag = _STR  # quoted, literal or folded without a tag
        return self._tagged(tag, event.value, event.style)

    def _plain(self, value: str) -> _Scalar:
        """A plain scalar; short ones are resolved once per file and shared."""
        node = self.plain.get(value)
        if node is None:
            resolve: Callable[..., str] = self.loader.resolve
            seen = len(self.problems)
            node = self._tagged(resolve(yaml.ScalarNode, value, (True, False)), value, None)
            if len(value) <= 32 and len(self.plain) < 10_000 and len(self.problems) == seen:
                self.plain[value] = node
        return node

    def _tagged(self, tag: str, value: str, style: str | None) -> _Scalar:
        node = _Scalar(value, value, tag)
        if tag in _CONSTRUCTORS:
            self._construct(node, style)
        elif tag not in _AS_TEXT:
            self.problems.append((self._child_path(), f"unsupported YAML tag {_short_tag(tag)}"))
        return node

    def _construct(self, node: _Scalar, style: str | None) -> None:
        scalar = yaml.ScalarNode(node.tag, node.raw, style=style)
        try:
            node.value = _CONSTRUCTORS[node.tag](self.loader, scalar)
        except (ValueError, KeyError, yaml.YAMLError):
            shown = json.dumps(node.raw[:60])
            self.problems.append((self._child_path(), f"invalid {_short_tag(node.tag)} value {shown}"))

    def _child_path(self) -> str:
        """The path of the node about to be attached to the open collection."""
        if not self.stack:
            return ""
        frame = self.stack[-1]
        if frame.node.kind == "seq":
            return f"{frame.path}[{len(frame.node.items)}]"
        if frame.awaiting_value and frame.key not in (None, _BAD_KEY):
            return _join(frame.path, frame.key or "")
        return frame.path

    def _attach(self, node: _Node, anchor: str | None) -> None:
        if anchor is not None:
            self.anchors[anchor] = node
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        self._count(frame, node)
        if frame.node.kind == "seq":
            frame.node.items.append(node)
        elif frame.awaiting_value:
            self._add_entry(frame, node)
        else:
            self._add_key(frame, node)

    def _count(self, frame: _Frame, child: _Node) -> None:
        parent = frame.node
        parent.size += child.size
        parent.depth = max(parent.depth, child.depth + 1)
        if parent.size > MAX_NODES:
            raise _Abort(frame.path, _ALIAS_BOMB)
        if parent.depth + len(self.stack) - 1 > MAX_DEPTH:
            raise _Abort(frame.path, _TOO_DEEP)

    def _add_key(self, frame: _Frame, key: _Node) -> None:
        frame.awaiting_value = True
        if not isinstance(key, _Scalar):
            self.problems.append((frame.path, "mapping keys must be strings"))
            frame.key = _BAD_KEY
        else:
            frame.key = None if key.tag == _MERGE else key.raw

    def _add_entry(self, frame: _Frame, value: _Node) -> None:
        key, frame.key, frame.awaiting_value = frame.key, None, False
        if key is None:
            frame.merges.append(value)
        elif key == _BAD_KEY:
            return
        elif key in frame.node.entries:
            self.problems.append((_join(frame.path, key), f"duplicate key {json.dumps(key)}"))
        else:
            frame.node.entries[key] = value

    def _finish_map(self, frame: _Frame) -> None:
        """Apply `<<` merge keys: explicit keys win, then earlier sources."""
        if not frame.merges:
            return
        merged: dict[str, _Node] = {}
        for source in frame.merges:
            mappings = source.items if isinstance(source, _Collection) and source.kind == "seq" else [source]
            for mapping in mappings:
                if not isinstance(mapping, _Collection) or mapping.kind != "map":
                    message = "a << merge takes a mapping or a list of mappings"
                    self.problems.append((_join(frame.path, "<<"), message))
                    continue
                for key, value in mapping.entries.items():
                    merged.setdefault(key, value)
        merged.update(frame.node.entries)
        frame.node.entries = merged


def _short_tag(tag: str | None) -> str:
    return (tag or "").replace(_TAG, "!!")


def _to_python(node: _Node) -> Any:
    """Plain Python data; recursion is bounded by MAX_DEPTH, work by MAX_NODES."""
    if isinstance(node, _Scalar):
        return node.value
    if node.kind == "seq":
        return [_to_python(item) for item in node.items]
    return {key: _to_python(value) for key, value in node.entries.items()}


def _is_empty(node: _Node) -> bool:
    """A document with no content at all (not even an explicit `null`)."""
    return isinstance(node, _Scalar) and node.raw == "" and node.tag in ("", _TAG + "null")


# --------------------------------------------------------------------------
# loading documents


def load_documents(source: str, raw: bytes) -> list[Document]:
    """The objects' data in a file, after the hostile-input guard.

    Raises ManifestError listing every problem in the file. See the module
    docstring for the limits and the document index rule.
    """
    text = _decode(source, raw)
    _check_document_sizes(source, raw)
    roots, problems = _parse_stream(source, text)
    documents: list[Document] = []
    for index, root in roots:
        data = _to_python(root)
        if isinstance(data, dict):
            found, trouble = _expand_list(source, index, data)
            documents.extend(found)
            problems.extend(trouble)
        else:
            problems.append(Problem(source, index, "", _not_an_object(data)))
    if problems:
        raise ManifestError(problems)
    return documents


def _parse_stream(source: str, text: str) -> tuple[list[tuple[int, _Node]], list[Problem]]:
    """The non-empty documents' nodes with their indexes, and the problems.

    A document that breaks a limit ends the parse: what follows it in a
    hostile file is not worth the time.
    """
    loader = _new_loader(text)
    roots: list[tuple[int, _Node]] = []
    problems: list[Problem] = []
    total, plain = 0, dict[str, _Scalar]()
    try:
        loader.get_event()  # StreamStartEvent
        while not isinstance(loader.get_event(), StreamEndEvent):  # DocumentStartEvent
            composer = _Composer(loader, plain)
            root = composer.compose()
            if _is_empty(root):
                continue
            index = len(roots)
            problems.extend(Problem(source, index, path, msg) for path, msg in composer.problems)
            roots.append((index, root))
            total += root.size
            if total > MAX_NODES:
                problems.append(Problem(source, None, "", _TOO_MANY_IN_FILE))
                break
    except _Abort as abort:
        problems.append(Problem(source, len(roots), abort.path, abort.message))
    except yaml.YAMLError as exc:
        problems.append(Problem(source, None, "", _yaml_message(exc)))
    finally:
        loader.dispose()
    return roots, problems


def _new_loader(text: str) -> _Loader:
    if yaml.__with_libyaml__:
        return yaml.CSafeLoader(text)
    return yaml.SafeLoader(text)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"invalid YAML: {exc}"


def _not_an_object(data: Any) -> str:
    return f"expected a mapping with apiVersion and kind, got {codec.describe(data)}"


def _expand_list(source: str, index: int, data: dict[str, Any]) -> tuple[list[Document], list[Problem]]:
    """A `kind: List` becomes its items; anything else is one document."""
    if data.get("kind") != "List":
        return [Document(source, index, data)], []
    problems = [
        Problem(source, index, str(key), f'unknown field "{key}"')
        for key in data
        if key not in ("apiVersion", "kind", "metadata", "items")
    ]
    if data.get("apiVersion") != "v1":
        got = codec.describe(data.get("apiVersion"))
        problems.append(Problem(source, index, "apiVersion", f'expected "v1" for kind List, got {got}'))
    items = data.get("items")
    if items is None:
        return [], problems
    if not isinstance(items, list):
        problems.append(Problem(source, index, "items", f"expected a list, got {codec.describe(items)}"))
        return [], problems
    documents: list[Document] = []
    for position, item in enumerate(items):
        path = f"items[{position}]"
        if isinstance(item, dict):
            documents.append(Document(source, index, item, path))
        elif item is not None:
            problems.append(Problem(source, index, path, _not_an_object(item)))
    return documents, problems


# --------------------------------------------------------------------------
# parsing objects


def parse_object(doc: Document) -> ParsedObject:
    """The document as its kind's message; ManifestError lists every problem."""
    info, problems = _kind_of(doc)
    if info is None:
        raise ManifestError(problems)
    data, warnings = doc.data, list[Problem]()
    if info.kind == "Deployment":
        data, warnings, problems = _move_strategy_type(doc)
    if info.kind == "HorizontalPodAutoscaler" and data.get("apiVersion") == HPA_V1:
        data, problems = _hpa_v1_as_v2(doc)
    message, errors = codec.from_dict(data, info.message, path=doc.path)
    problems.extend(Problem(doc.source, doc.index, e.path, e.message) for e in errors)
    if problems:
        raise ManifestError(problems)
    warnings += _not_acted_on(doc, info, message)
    return ParsedObject(doc.source, doc.index, info, message, warnings)


HPA_V1: Final = "autoscaling/v1"
# Said once per pod spec that names a service account or sets automountServiceAccountToken.
SERVICE_ACCOUNT_NOTE: Final = (
    "accepted and stored; corral mounts no service account token into pods "
    "(no /var/run/secrets/kubernetes.io/serviceaccount) and gives them no API access"
)


def _not_acted_on(doc: Document, info: KindInfo, message: Message) -> list[Problem]:
    """One warning line for a kind, or a pod spec field, that corral stores but does not act on."""
    note = partial(Problem, doc.source, doc.index)
    if info.kind in STORED_ONLY:
        return [note(doc.path, f"{info.kind} {meta(message).name}: {STORED_ONLY[info.kind]}")]
    if isinstance(message, ingress_pb2.Ingress):
        return [note(_join(doc.path, path), text) for path, text in ingress_notes(message)]
    spec_path, spec = _pod_spec(message)
    if spec is None:
        return []
    written = {
        "serviceAccountName": bool(spec.service_account_name),
        "serviceAccount": bool(spec.service_account),
        "automountServiceAccountToken": spec.HasField("automount_service_account_token"),
    }
    first = next((name for name, present in written.items() if present), None)
    return [] if first is None else [note(_join(doc.path, f"{spec_path}.{first}"), SERVICE_ACCOUNT_NOTE)]


def ingress_notes(ingress: ingress_pb2.Ingress) -> list[tuple[str, str]]:
    """What corral will not act on in an Ingress: another class, other controllers' annotations."""
    notes: list[tuple[str, str]] = []
    name = ingresses.class_name(ingress)
    if name is not None and name != ingresses.DEFAULT_CLASS:
        path = "spec.ingressClassName" if ingress.spec.HasField("ingress_class_name") else "metadata.annotations"
        notes.append(
            (
                path,
                f'class "{name}": corral serves it only if that IngressClass names controller '
                f'"{ingresses.CONTROLLER}" (as "{ingresses.DEFAULT_CLASS}" does); otherwise it is stored and ignored',
            )
        )
    for key in sorted(ingress.metadata.annotations):
        if key.startswith(ingresses.FOREIGN_ANNOTATION_PREFIXES) and key not in ingresses.SSL_REDIRECT_ANNOTATIONS:
            notes.append((f"metadata.annotations[{key}]", "not acted on by corral's ingress"))
    return notes


def _pod_spec(message: Message) -> tuple[str, pod_pb2.PodSpec | None]:
    """The pod spec a Pod or a workload's template carries, and its path."""
    if isinstance(message, pod_pb2.Pod):
        return "spec", message.spec
    spec = getattr(message, "spec", None)
    job_template = getattr(spec, "job_template", None)
    if job_template is not None:
        return "spec.jobTemplate.spec.template.spec", job_template.spec.template.spec
    template = getattr(spec, "template", None)
    if isinstance(template, pod_pb2.PodTemplateSpec):
        return "spec.template.spec", template.spec
    return "", None


def _hpa_v1_as_v2(doc: Document) -> tuple[dict[str, Any], list[Problem]]:
    """An autoscaling/v1 HPA as the v2 object it means, as Kubernetes converts it:
    targetCPUUtilizationPercentage becomes a cpu Utilization metric; the v1
    status (written by a server) is dropped. The document's data is not mutated."""
    data = {**doc.data, "apiVersion": by_kind("HorizontalPodAutoscaler").api_version}
    data.pop("status", None)
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return data, []
    problem = partial(Problem, doc.source, doc.index)
    problems = [
        problem(
            _join(doc.path, f"spec.{key}"),
            f'unknown field "{key}" ({HPA_V1} has {_V1_TARGET}; {key} is autoscaling/v2)',
        )
        for key in ("metrics", "behavior")
        if key in spec
    ]
    rest = {k: v for k, v in spec.items() if k not in (_V1_TARGET, "metrics", "behavior")}
    data["spec"] = rest
    percent = spec.get(_V1_TARGET)
    if percent is None:
        return data, problems
    if isinstance(percent, bool) or not isinstance(percent, int):
        got = codec.describe(percent)
        return data, [*problems, problem(_join(doc.path, f"spec.{_V1_TARGET}"), f"expected an integer, got {got}")]
    target = {"type": "Utilization", "averageUtilization": percent}
    rest["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]
    return data, problems


_V1_TARGET: Final = "targetCPUUtilizationPercentage"


def _kind_of(doc: Document) -> tuple[KindInfo | None, list[Problem]]:
    """The document's kind, checked against its apiVersion."""
    problems: list[Problem] = []

    def problem(path: str, message: str) -> None:
        problems.append(Problem(doc.source, doc.index, _join(doc.path, path), message))

    api_version, kind = doc.data.get("apiVersion"), doc.data.get("kind")
    info: KindInfo | None = None
    if api_version is None:
        problem("", 'missing required field "apiVersion"')
    elif not isinstance(api_version, str):
        problem("apiVersion", f"expected a string, got {codec.describe(api_version)}")
    if kind is None:
        problem("", 'missing required field "kind"')
    elif not isinstance(kind, str):
        problem("kind", f"expected a string, got {codec.describe(kind)}")
    else:
        try:
            info = by_kind(kind)
        except UnknownKindError:
            problem("kind", _unknown_kind(kind))
    v1_hpa = info is not None and info.kind == "HorizontalPodAutoscaler" and api_version == HPA_V1
    if info is not None and isinstance(api_version, str) and api_version != info.api_version and not v1_hpa:
        wanted = f'expected "{info.api_version}" for kind {info.kind}'
        problem("apiVersion", f"{wanted}, got {json.dumps(api_version)}")
    return (info if not problems else None), problems


def _unknown_kind(kind: str) -> str:
    names = [info.kind for info in KINDS]
    same = [name for name in names if name.lower() == kind.lower()]
    close = same[0] if same else codec.close_name(kind, names)
    if close:
        return f'unknown kind {json.dumps(kind)} (did you mean "{close}"?)'
    return f"unknown kind {json.dumps(kind)} (known kinds: {', '.join(names)})"


def _move_strategy_type(doc: Document) -> tuple[dict[str, Any], list[Problem], list[Problem]]:
    """Read a misplaced `spec.strategy.rollingUpdate.type` as `spec.strategy.type`.

    Returns the data (copied where it changes; the document's is never
    mutated), the warnings and the problems.
    """
    spec = doc.data.get("spec")
    strategy = spec.get("strategy") if isinstance(spec, dict) else None
    rolling = strategy.get("rollingUpdate") if isinstance(strategy, dict) else None
    if not isinstance(spec, dict) or not isinstance(strategy, dict) or not isinstance(rolling, dict):
        return doc.data, [], []
    if "type" not in rolling:
        return doc.data, [], []
    value = rolling["type"]
    strategy = {**strategy, "rollingUpdate": {k: v for k, v in rolling.items() if k != "type"}}
    data = {**doc.data, "spec": {**spec, "strategy": strategy}}
    if value is None:
        return data, [], []
    note = partial(Problem, doc.source, doc.index, _join(doc.path, "spec.strategy.rollingUpdate.type"))
    hint = '"type" belongs in spec.strategy, one level up'
    existing = strategy.get("type")
    if existing is not None and existing != value:
        return data, [], [note(f"{hint}; it conflicts with spec.strategy.type: {existing}")]
    strategy["type"] = value
    return data, [note(f"{hint}; read as spec.strategy.type: {value}")], []


# --------------------------------------------------------------------------
# all together


def load_objects(specs: list[str], *, stdin: BinaryIO | None = None, recursive: bool = False) -> list[ParsedObject]:
    """Every object the specs name, or ONE ManifestError with every problem
    in every file (so that a caller writes nothing when anything is wrong)."""
    sources, problems = _read_all(specs, stdin, recursive)
    objects: list[ParsedObject] = []
    for document in _documents(sources, problems):
        try:
            objects.append(parse_object(document))
        except ManifestError as exc:
            problems.extend(exc.problems)
    if not objects and not problems:
        problems.append(Problem(", ".join(specs) or STDIN_NAME, None, "", "no objects found"))
    if problems:
        raise ManifestError(problems)
    return objects


@dataclass(frozen=True)
class ObjectName:
    """What a document names: enough to delete it. `namespace` is "" when not written."""

    source: str
    index: int
    info: KindInfo
    name: str
    namespace: str


def load_names(
    specs: list[str], *, stdin: BinaryIO | None = None, recursive: bool = False
) -> tuple[list[ObjectName], list[Problem]]:
    """The kind, namespace and name of every document, checked no further
    (`corral delete -f` of a file that would not pass validation), and why
    each document that names no object was skipped."""
    sources, problems = _read_all(specs, stdin, recursive)
    names: list[ObjectName] = []
    for doc in _documents(sources, problems):
        found = _name_of(doc)
        if isinstance(found, Problem):
            problems.append(found)
        else:
            names.append(found)
    return names, problems


def _documents(sources: list[tuple[str, bytes]], problems: list[Problem]) -> Iterator[Document]:
    """Every document of every source, in order; a source that does not read as YAML adds its problems
    to ``problems`` instead (when its turn comes, so problems stay in file order)."""
    for source, raw in sources:
        try:
            documents = load_documents(source, raw)
        except ManifestError as exc:
            problems.extend(exc.problems)
            continue
        yield from documents


def _name_of(doc: Document) -> ObjectName | Problem:
    kind = doc.data.get("kind")
    metadata = doc.data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    if not isinstance(kind, str):
        return Problem(doc.source, doc.index, _join(doc.path, "kind"), f"expected a kind, got {codec.describe(kind)}")
    try:
        info = by_kind(kind)
    except UnknownKindError:
        return Problem(doc.source, doc.index, _join(doc.path, "kind"), _unknown_kind(kind))
    if not isinstance(name, str) or not name:
        got = codec.describe(name)
        return Problem(doc.source, doc.index, _join(doc.path, "metadata.name"), f"expected a name, got {got}")
    if namespace is not None and not isinstance(namespace, str):
        got = codec.describe(namespace)
        return Problem(doc.source, doc.index, _join(doc.path, "metadata.namespace"), f"expected a string, got {got}")
    return ObjectName(doc.source, doc.index, info, name, namespace or "")


def _join(prefix: str, path: str) -> str:
    if not prefix or not path:
        return prefix or path
    return f"{prefix}.{path}"
