"""The outcome of one probe run: a value, never an exception.

Every probe (HTTP, TCP, exec) returns a `ProbeResult`; its `message` says why,
in the words Kubernetes users know:

    HTTP probe failed with statuscode: 500
    dial tcp 127.0.0.1:81: connection refused
    command exited with 1: <first 200 bytes of output>
    timeout after 1s
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeResult:
    success: bool
    message: str

    @classmethod
    def ok(cls, message: str = "") -> ProbeResult:
        return cls(success=True, message=message)

    @classmethod
    def failed(cls, message: str) -> ProbeResult:
        return cls(success=False, message=message)


def format_seconds(seconds: float) -> str:
    """A timeout for a message: 1s, 0.5s, 2.25s."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def timed_out(timeout: float) -> ProbeResult:
    return ProbeResult.failed(f"timeout after {format_seconds(timeout)}")
