"""Kubernetes resource quantities: "250m", "0.5", "128Mi", "1G", "1e3".

The syntax is Kubernetes' own (k8s.io/apimachinery resource.Quantity)::

    quantity ::= ["+"] number [suffix]
    number   ::= digits | digits "." [digits] | "." digits
    suffix   ::= binary | decimal | exponent
    binary   ::= Ki | Mi | Gi | Ti | Pi | Ei                (powers of 1024)
    decimal  ::= n | u | m | k | M | G | T | P | E          (powers of 1000)
    exponent ::= ("e" | "E") ["+" | "-"] digits             (powers of 10)

Negative quantities are refused: nothing corral measures (CPU, memory, pods)
can be negative. Values are exact (`Fraction`); the helpers round up, as
Kubernetes does when it turns a quantity into an integer.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

__all__ = ["cpu_millis", "format_quantity", "memory_bytes", "parse_quantity"]

# Longer than any sensible quantity; keeps hostile input from building huge numbers.
_MAX_LENGTH = 64
_MAX_EXPONENT = 400  # covers every float repr (1e-323 .. 1.8e308)

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}

_QUANTITY = re.compile(
    r"\+?(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:[eE](?P<exponent>[+-]?[0-9]+)|(?P<suffix>[KMGTPE]i|[numkMGTPE]))?"
)


@functools.lru_cache(maxsize=4096)
def parse_quantity(text: str) -> Fraction:
    """The exact value of a quantity; `ValueError` when it is not one.

    >>> parse_quantity("250m")
    Fraction(1, 4)
    >>> parse_quantity("1Ki")
    Fraction(1024, 1)
    """
    shown = _shown(text)
    if text.startswith("-"):
        raise ValueError(f"invalid quantity {shown}: must not be negative")
    match = _QUANTITY.fullmatch(text) if len(text) <= _MAX_LENGTH else None
    if match is None:
        raise ValueError(f"invalid quantity {shown}")
    number = Fraction(match["number"])
    exponent = match["exponent"]
    if exponent is not None:
        power = int(exponent)
        if abs(power) > _MAX_EXPONENT:
            raise ValueError(f"invalid quantity {shown}: exponent out of range")
        return number * Fraction(10) ** power
    return number * _multiplier(match["suffix"])


def cpu_millis(text: str) -> int:
    """CPU in thousandths of a core, rounded up: "250m" -> 250, "0.5" -> 500."""
    return math.ceil(parse_quantity(text) * 1000)


def memory_bytes(text: str) -> int:
    """Bytes, rounded up: "128Mi" -> 134217728, "1G" -> 1000000000."""
    return math.ceil(parse_quantity(text))


def _multiplier(suffix: str | None) -> Fraction:
    if suffix is None:
        return Fraction(1)
    if suffix in _BINARY:
        return Fraction(1024) ** _BINARY[suffix]
    return Fraction(10) ** _DECIMAL[suffix]


def _shown(text: str) -> str:
    """The text in double quotes, cut short when it is long."""
    cut = text if len(text) <= _MAX_LENGTH else text[:_MAX_LENGTH] + "..."
    escaped = cut.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def format_quantity(value: Fraction, *, binary: bool = False) -> str:
    """A quantity's text, short and exact where it can be: 3, 500m, 1500, 128Mi (with `binary`).

    Whole numbers take the largest suffix that divides them (binary ones with
    `binary`, for amounts written in Ki, Mi, ...); fractions are shown in
    thousandths, else millionths, else billionths, rounded up.

    >>> format_quantity(Fraction(1, 2))
    '500m'
    >>> format_quantity(Fraction(134217728), binary=True)
    '128Mi'
    """
    if value < 0:
        return "-" + format_quantity(-value, binary=binary)
    if value.denominator != 1:
        for suffix, scale in (("m", 1000), ("u", 10**6)):
            if (value * scale).denominator == 1:
                return f"{value * scale}{suffix}"
        return f"{math.ceil(value * 10**9)}n"
    whole = int(value)
    if whole == 0:
        return "0"
    if binary:
        for suffix, power in sorted(_BINARY.items(), key=lambda item: -item[1]):
            if whole % 1024**power == 0:
                return f"{whole // 1024**power}{suffix}"
        return str(whole)
    return str(whole)
