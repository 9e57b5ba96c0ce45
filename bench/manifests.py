"""How many real-world manifests corral accepts as written.

    .venv/bin/python bench/manifests.py [DIR ...] [--json PATH] [--show N]

Runs every document of every *.yaml / *.yml / *.json file under the given
directories (default: tests/fixtures/real) through what `corral apply
--dry-run` runs, in this process and without a cluster: the CLI's parse
(`corral.manifest`: the strict codec and its warnings), then the API server's
defaults, validation, pod security (the server's default level, baseline) and
admission, through `ObjectApi.apply(dry_run=True)` over a memory store.
Namespaces of the corpus are created first (as `corral apply` of a folder
would), so their pod-security labels count.

Each document is accepted, accepted with warnings, or refused. Refusals are
grouped by their first reason, a field path pattern (list indexes dropped, a
pod template's path written `<pod>.`) and the message with its values cut out.
Prints the totals, the per-kind counts and the reasons, most common first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from controlplane.apiserver.errors import ApiError, InvalidError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_security import ClusterPolicy
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from corral.manifest import Document, ManifestError, Problem, load_documents, parse_object
from protos.kinds import KINDS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT / "tests" / "fixtures" / "real"
SUFFIXES = (".yaml", ".yml", ".json")

ACCEPTED, WARNED, REFUSED = "accepted", "accepted with warnings", "refused"


@dataclass
class Outcome:
    source: str
    index: int
    kind: str
    verdict: str
    reasons: list[str] = field(default_factory=list)


_INDEX = re.compile(r"\[\d+\]")
_POD_PATHS = (
    re.compile(r"^spec\.template\.spec\."),
    re.compile(r"^spec\.jobTemplate\.spec\.template\.spec\."),
    re.compile(r"^spec\."),
)
_QUOTED = re.compile(r'"[^"]*"')


def pattern(path: str, message: str, kind: str) -> str:
    """A refusal's reason without its values: `<pod>.containers[].env[].valueFrom: unknown field "fieldRef"`."""
    path = _INDEX.sub("[]", path)
    path = re.sub(r"^items\[\]\.", "", path)
    if kind in ("Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob"):
        for pod in _POD_PATHS[:2] if kind != "Pod" else _POD_PATHS[2:]:
            path = pod.sub("<pod>.", path)
    message = re.sub(rf"^{re.escape(kind)} \S+: ", f"{kind} <name>: ", message)
    if message.startswith("unknown field"):
        text = message.split(" (", 1)[0]  # without the "did you mean"
    elif message.startswith("unknown kind"):
        text = message.split(" (", 1)[0]
    elif message.startswith('expected "') and path == "apiVersion":
        text = "apiVersion: " + message.split(",", 1)[1].strip()
    else:
        text = _QUOTED.sub('"…"', message)
        text = re.sub(r"\b\d+(\.\d+)?\b", "N", text)[:110]
    return f"{path}: {text}" if path else text


def _kind(doc: Document) -> str:
    kind = doc.data.get("kind")
    return kind if isinstance(kind, str) else "?"


def _outcome(doc: Document, verdict: str, problems: list[Problem]) -> Outcome:
    kind = _kind(doc)
    return Outcome(doc.source, doc.index, kind, verdict, [pattern(p.path, p.message, kind) for p in problems])


async def run_documents(documents: list[Document]) -> list[Outcome]:
    api = ObjectApi(ObjectStore(MemoryStore()), policy=ClusterPolicy())
    for doc in documents:  # namespaces first: their labels choose a pod security level
        if doc.data.get("kind") == "Namespace":
            with contextlib.suppress(ManifestError, ApiError):
                await api.apply(parse_object(doc).message)
    outcomes = []
    for doc in documents:
        try:
            parsed = parse_object(doc)
        except ManifestError as e:
            outcomes.append(_outcome(doc, REFUSED, e.problems))
            continue
        try:
            await api.apply(parsed.message, dry_run=True)
        except InvalidError as e:
            causes = [Problem(doc.source, doc.index, c.field, c.message) for c in e.causes] or [
                Problem(doc.source, doc.index, "", str(e))
            ]
            outcomes.append(_outcome(doc, REFUSED, causes))
            continue
        except ApiError as e:
            outcomes.append(_outcome(doc, REFUSED, [Problem(doc.source, doc.index, "", str(e))]))
            continue
        verdict = WARNED if parsed.warnings else ACCEPTED
        outcomes.append(_outcome(doc, verdict, parsed.warnings))
    return outcomes


def read_corpus(roots: list[Path]) -> tuple[list[Document], list[Outcome]]:
    """Every document, and an outcome for every file that does not read as manifests at all."""
    documents: list[Document] = []
    unreadable: list[Outcome] = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
            source = str(path.relative_to(root))
            try:
                documents += [
                    Document(f"{root.name}/{source}", d.index, d.data, d.path)
                    for d in load_documents(source, path.read_bytes())
                ]
            except ManifestError as e:
                reasons = [pattern(p.path, p.message, "?") for p in e.problems]
                unreadable.append(Outcome(f"{root.name}/{source}", 0, "?", REFUSED, reasons))
    return documents, unreadable


def report(outcomes: list[Outcome], show: int) -> dict[str, object]:
    verdicts = Counter(o.verdict for o in outcomes)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        by_kind[o.kind][o.verdict] += 1
    first = Counter(o.reasons[0] for o in outcomes if o.verdict == REFUSED and o.reasons)
    every = Counter(r for o in outcomes if o.verdict == REFUSED for r in set(o.reasons))
    warnings = Counter(r for o in outcomes if o.verdict == WARNED for r in set(o.reasons))
    total = len(outcomes)
    print(f"documents: {total}")
    for verdict in (ACCEPTED, WARNED, REFUSED):
        print(f"  {verdict:24} {verdicts[verdict]:5}  {100 * verdicts[verdict] / max(total, 1):5.1f}%")
    known = {info.kind for info in KINDS}
    served = [o for o in outcomes if o.kind in known]
    served_verdicts = Counter(o.verdict for o in served)
    print(f"\nof kinds corral has ({len(served)} documents):")
    for verdict in (ACCEPTED, WARNED, REFUSED):
        share = 100 * served_verdicts[verdict] / max(len(served), 1)
        print(f"  {verdict:24} {served_verdicts[verdict]:5}  {share:5.1f}%")
    print("\nper kind (accepted / with warnings / refused):")
    for kind, counts in sorted(by_kind.items(), key=lambda kv: -sum(kv[1].values())):
        print(f"  {kind:32} {counts[ACCEPTED]:4} {counts[WARNED]:4} {counts[REFUSED]:4}")
    print(f"\nfirst refusal reason (top {show}):")
    for reason, count in first.most_common(show):
        print(f"  {count:4}  {reason}")
    print(f"\nany refusal reason (top {show}):")
    for reason, count in every.most_common(show):
        print(f"  {count:4}  {reason}")
    print(f"\nwarnings (top {show}):")
    for reason, count in warnings.most_common(show):
        print(f"  {count:4}  {reason}")
    return {
        "documents": total,
        "verdicts": dict(verdicts),
        "served_verdicts": dict(served_verdicts),
        "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "first_refusal": dict(first.most_common()),
        "warnings": dict(warnings.most_common()),
        "refused": [
            {"source": o.source, "index": o.index, "reasons": o.reasons} for o in outcomes if o.verdict == REFUSED
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[DEFAULT_CORPUS])
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "manifests.json")
    parser.add_argument("--show", type=int, default=30, help="how many reasons to list")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    documents, outcomes = read_corpus(args.dirs)
    outcomes += asyncio.run(run_documents(documents))
    result = report(outcomes, args.show)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
