"""Label selectors: parsing Kubernetes' selector syntax and matching labels.

Supported, as in kubectl: `key=value`, `key==value`, `key!=value`,
`key in (a,b)`, `key notin (a,b)`, `key` (exists) and `!key` (does not exist),
joined by commas, which mean AND. An empty selector matches everything.

Pure code: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from protos.corral.v1 import meta_pb2


class Op(Enum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case Op.EQUALS | Op.IN:
                return present and value in self.values
            case Op.NOT_EQUALS | Op.NOT_IN:
                return not present or value not in self.values
            case Op.EXISTS:
                return present
            case Op.DOES_NOT_EXIST:
                return not present


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


class SelectorError(ValueError):
    """A label selector that cannot be parsed; the message says where."""


_KEY = r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(?P<neg>!)?\s*(?P<key>{_KEY})\s*$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


def _split_terms(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f'unbalanced ")" in selector "{text}"')
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SelectorError(f'unbalanced "(" in selector "{text}"')
    terms.append("".join(current))
    return terms


def _parse_term(term: str) -> Requirement:
    if m := _SET_RE.match(term):
        values = [v.strip() for v in m["values"].split(",")]
        for v in values:
            if not _VALUE_RE.match(v):
                raise SelectorError(f'invalid value "{v}" in "{term.strip()}"')
        op = Op.IN if m["op"] == "in" else Op.NOT_IN
        return Requirement(m["key"], op, frozenset(values))
    if m := _CMP_RE.match(term):
        op = Op.NOT_EQUALS if m["op"] == "!=" else Op.EQUALS
        return Requirement(m["key"], op, frozenset([m["value"]]))
    if m := _EXISTS_RE.match(term):
        return Requirement(m["key"], Op.DOES_NOT_EXIST if m["neg"] else Op.EXISTS)
    raise SelectorError(f'cannot parse "{term.strip()}"')


def parse(text: str) -> Selector:
    """Parse a selector string such as `app=web,tier!=db,env in (a,b)`."""
    if not text.strip():
        return Selector()
    terms = _split_terms(text)
    if any(not t.strip() for t in terms):
        raise SelectorError(f'empty term in selector "{text}"')
    return Selector(tuple(_parse_term(t) for t in terms))


_PROTO_OPS = {
    "In": Op.IN,
    "NotIn": Op.NOT_IN,
    "Exists": Op.EXISTS,
    "DoesNotExist": Op.DOES_NOT_EXIST,
}


def from_label_selector(selector: meta_pb2.LabelSelector) -> Selector:
    """The selector a `matchLabels`/`matchExpressions` object describes.

    Call only on validated selectors: an unknown operator raises SelectorError.
    """
    reqs = [Requirement(k, Op.EQUALS, frozenset([v])) for k, v in sorted(selector.match_labels.items())]
    for expr in selector.match_expressions:
        op = _PROTO_OPS.get(expr.operator)
        if op is None:
            raise SelectorError(f'unknown operator "{expr.operator}"')
        reqs.append(Requirement(expr.key, op, frozenset(expr.values)))
    return Selector(tuple(reqs))
