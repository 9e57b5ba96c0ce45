"""A token bucket with time passed in: how fast pods may be evicted.

Immutable: every operation returns the bucket as it is afterwards, so the
rules can be checked with a table of times and no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; full when new."""

    rate: float
    burst: float = 1.0
    tokens: float = 1.0
    # When `tokens` was last brought up to date; None for a new bucket.
    updated: datetime | None = None

    @classmethod
    def full(cls, rate: float, burst: float = 1.0) -> TokenBucket:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        return cls(rate=rate, burst=burst, tokens=burst)

    def at(self, now: datetime) -> TokenBucket:
        """The bucket refilled up to `now` (a clock going backwards adds nothing)."""
        if self.updated is None:
            return replace(self, updated=now)
        elapsed = max(0.0, (now - self.updated).total_seconds())
        tokens = min(self.burst, self.tokens + elapsed * self.rate)
        return replace(self, tokens=tokens, updated=max(now, self.updated))

    def take(self, now: datetime) -> tuple[bool, TokenBucket]:
        """Take one token if there is one: (taken, bucket afterwards)."""
        bucket = self.at(now)
        if bucket.tokens >= 1.0:
            return True, replace(bucket, tokens=bucket.tokens - 1.0)
        return False, bucket

    def wait(self, now: datetime) -> float:
        """Seconds from `now` until a token is available (0 if one is)."""
        missing = 1.0 - self.at(now).tokens
        return max(0.0, missing / self.rate)
