"""Rate limits by source address for the join port (pure: `now` passed in).

A token bucket per source address: `burst` calls at once, then `rate` per
second. At most `max_sources` sources are tracked: past that, the one not
seen for longest is forgotten (it starts again with a full bucket), so memory
stays bounded whatever the number of addresses calling.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_RATE = 1.0
DEFAULT_BURST = 20
DEFAULT_MAX_SOURCES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    # Refused since it last had a token: its first refusal is the one worth a log line.
    limited: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    # Seconds until the next call would be allowed (0 when allowed).
    retry_after: float = 0.0
    # The first refusal since the source last got through.
    first_refusal: bool = False


class SourceRateLimiter:
    """See the module docstring."""

    def __init__(
        self, *, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, max_sources: int = DEFAULT_MAX_SOURCES
    ) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError(f"rate must be > 0, burst and max_sources >= 1 (got {rate}, {burst}, {max_sources})")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, source: str, *, now: float) -> Verdict:
        """Spend one of ``source``'s tokens at ``now`` (monotonic seconds), if it has one."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(float(self.burst), now)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.updated) * self.rate)
            bucket.updated = max(bucket.updated, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.limited = False
            return Verdict(True)
        first = not bucket.limited
        bucket.limited = True
        return Verdict(False, (1.0 - bucket.tokens) / self.rate, first)


def peer_address(peer: str) -> str:
    """The address of a gRPC peer string, without its port: "ipv4:10.0.0.7:51234" → "10.0.0.7",
    "ipv6:[::1]:51234" → "::1" (anything else as it is, clipped)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] or rest
        return host.strip("[]")
    return peer[:128]
