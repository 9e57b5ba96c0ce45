"""The collector of field-path causes that validation fills while walking an object."""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.apiserver.errors import Cause


class Problems:
    """Collects causes while walking an object."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, path: str, message: str) -> None:
        self.causes.append(Cause(path, message))

    def one_of(self, path: str, value: str, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        if value not in allowed:
            shown = ", ".join(f'"{a}"' for a in allowed if a)
            self.add(path, f'must be one of {shown}, got "{value}"')

    def at_least(self, path: str, value: int, minimum: int) -> None:
        if value < minimum:
            self.add(path, f"must be >= {minimum}, got {value}")

    def port(self, path: str, value: int, *, allow_zero: bool = False) -> None:
        low = 0 if allow_zero else 1
        if not low <= value <= 65535:
            self.add(path, f"must be {low}-65535, got {value}")
