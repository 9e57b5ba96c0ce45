"""Errors of the API boundary. `status.py` maps each to one gRPC code.

ApiError
├── NotFoundError         the object does not exist            NOT_FOUND
├── AlreadyExistsError    create of a name that is taken       ALREADY_EXISTS
├── ConflictError         stale resourceVersion / uid          ABORTED
├── InvalidError          validation failed; every cause       INVALID_ARGUMENT
├── BadRequestError       malformed request (kind, selector)   INVALID_ARGUMENT
├── ForbiddenError        refused by a rule, not a field:      PERMISSION_DENIED
│                         content in a terminating namespace,
│                         deleting the default namespace,
│                         admission of a valid object (a
│                         LimitRange's bounds, a quota)
├── TooManyRequestsError  an eviction a PodDisruptionBudget    RESOURCE_EXHAUSTED
│                         refuses now (retry later); carries
│                         the budget's causes
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


class ForbiddenError(ApiError):
    """Kubernetes' 403 Forbidden: `<resource> "<name>" is forbidden: <why>`; `why` is a sentence
    (a rule: a terminating namespace) or the causes admission found (a LimitRange, a quota)."""

    def __init__(self, resource: str, name: str, why: str | list[Cause]) -> None:
        self.causes = [] if isinstance(why, str) else why
        text = why if isinstance(why, str) else "; ".join(str(c) for c in why)
        super().__init__(f'{resource} "{name}" is forbidden: {text}')


class TooManyRequestsError(ApiError):
    """Kubernetes' 429: refused for now, worth retrying later (an eviction a budget does not allow)."""

    temporary = True

    def __init__(self, message: str, causes: list[Cause], *, reason: str = "TooManyRequests") -> None:
        super().__init__(message)
        self.causes = causes
        self.reason = reason


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
