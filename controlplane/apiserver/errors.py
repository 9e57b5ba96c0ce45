"""Errors of the API boundary. `status.py` maps each to one gRPC code.

ApiError
├── NotFoundError         the object does not exist            NOT_FOUND
├── AlreadyExistsError    create of a name that is taken       ALREADY_EXISTS
├── ConflictError         stale resourceVersion / uid          ABORTED
├── InvalidError          validation failed; every cause       INVALID_ARGUMENT
├── BadRequestError       malformed request (kind, selector)   INVALID_ARGUMENT
├── ForbiddenError        admission refused a valid object     PERMISSION_DENIED
│                         (a LimitRange's bounds, a quota)
├── GoneError             watch/list revision compacted        OUT_OF_RANGE
├── StorageFullError      etcd's database is full (NOSPACE)    RESOURCE_EXHAUSTED
├── FencedError           the leader's term ended: a write     FAILED_PRECONDITION
│                         fenced with it was refused; stop,
│                         never retry (another replica leads)
└── UnavailableError      storage unreachable (temporary)      UNAVAILABLE
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    """One validation problem: a field path and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ApiError(Exception):
    temporary = False


class NotFoundError(ApiError):
    pass


class AlreadyExistsError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class BadRequestError(ApiError):
    pass


class GoneError(ApiError):
    pass


class StorageFullError(ApiError):
    """etcd refuses writes until an operator frees space: retrying does not help."""


class FencedError(ApiError):
    """A write through the leader's fenced store was refused: its term is over.

    Not temporary: the controllers stop and the replica steps down."""


class UnavailableError(ApiError):
    temporary = True


class InvalidError(ApiError):
    def __init__(self, resource: str, name: str, causes: list[Cause]) -> None:
        self.causes = causes
        lines = "; ".join(str(c) for c in causes)
        super().__init__(f'{resource} "{name}" is invalid: {lines}')


class ForbiddenError(ApiError):
    """A valid object that admission refuses: outside a LimitRange, over a ResourceQuota."""

    def __init__(self, resource: str, name: str, causes: list[Cause]) -> None:
        self.causes = causes
        lines = "; ".join(str(c) for c in causes)
        super().__init__(f'{resource} "{name}" is forbidden: {lines}')
