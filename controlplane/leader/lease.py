"""When the leader renews its lease, and when it must presume the lease gone.

Pure: times are the caller's monotonic clock (the event loop's), passed in.

etcd starts a lease's time to live again when a keep-alive *arrives*, which is
after the leader *sent* it; measuring from the send time therefore never
overestimates what is left. The leader renews every ttl/3, retries a failed
renewal every ttl/10, and gives up the moment ``valid_until`` passes: by then
etcd may have expired the lease and another replica may lead. (That bound is
for liveness, stepping down promptly; safety comes from fencing, because a
paused process cannot act on any bound.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

RENEWALS_PER_TTL = 3
RETRIES_PER_TTL = 10


@dataclass(frozen=True)
class LeaseClock:
    """What the leader knows about its lease, in its own clock's seconds."""

    ttl: float
    # The lease surely lives until then: the send time of the last confirmed
    # grant or renewal plus the ttl etcd granted.
    valid_until: float
    # When to send the next keep-alive.
    next_renewal: float

    @classmethod
    def granted(cls, ttl: float, *, sent_at: float) -> LeaseClock:
        """A lease of ``ttl`` seconds, asked for at ``sent_at``."""
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, got {ttl}")
        return cls(ttl=ttl, valid_until=sent_at + ttl, next_renewal=sent_at + ttl / RENEWALS_PER_TTL)

    def renewed(self, *, sent_at: float, ttl: float) -> LeaseClock:
        """A keep-alive sent at ``sent_at`` was answered with ``ttl`` seconds."""
        return replace(
            self,
            valid_until=max(self.valid_until, sent_at + ttl),
            next_renewal=sent_at + self.ttl / RENEWALS_PER_TTL,
        )

    def failed(self, *, now: float) -> LeaseClock:
        """A keep-alive failed at ``now`` (etcd unreachable): retry soon, never
        later than the moment the lease may be gone."""
        return replace(self, next_renewal=min(now + self.ttl / RETRIES_PER_TTL, self.valid_until))

    def expired(self, now: float) -> bool:
        """True once the lease may have expired in etcd: leadership is over."""
        return now >= self.valid_until

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until the next keep-alive is due."""
        return max(0.0, self.next_renewal - now)
