"""What a replica shares of its agents' metrics with the other replicas (pure: `now` passed in).

- `Peers`: the other replicas, from the keys ``<prefix>/replicas/<holder>``
  (value: the replica's dialable API address), this replica's own key left out.
- `Outbox`: the reports this replica's agents sent since the last flush, the
  newest per node (a later report replaces an earlier one: metrics are
  best-effort, the receiver only needs recent samples), at most `max_nodes`
  (more are dropped and counted). `take(now)` hands the batch out once
  `flush_every` seconds have passed since the previous batch; `split` cuts
  a batch into calls of at most `MAX_CALL_BYTES`.

With no peers nothing is kept: a lone replica does no extra work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.store.base import EventType, WatchEvent
from protos.corral.v1 import metrics_pb2

DEFAULT_FLUSH_EVERY = 2.0
DEFAULT_MAX_NODES = 20_000
# Half the API port's 8 MiB message limit: a batch larger than this goes in several calls.
MAX_CALL_BYTES = 4 * 1024 * 1024


def replicas_prefix(key_prefix: str) -> str:
    return f"{key_prefix.rstrip('/')}/replicas/"


@dataclass
class Peers:
    """The other replicas: holder -> dialable address."""

    prefix: str
    me: str
    addresses: dict[str, str] = field(default_factory=dict)

    def reset(self, items: list[tuple[str, bytes]]) -> None:
        """Start again from a listing of (key, value)."""
        self.addresses.clear()
        for key, value in items:
            self._put(key, value)

    def apply(self, event: WatchEvent) -> None:
        if event.type is EventType.DELETE:
            self.addresses.pop(event.key.removeprefix(self.prefix), None)
        else:
            self._put(event.key, event.value)

    def _put(self, key: str, value: bytes) -> None:
        holder = key.removeprefix(self.prefix)
        address = value.decode("utf-8", "replace")
        if holder and holder != self.me and address:
            self.addresses[holder] = address

    def targets(self) -> list[str]:
        """The peers' addresses, each once (sorted)."""
        return sorted(set(self.addresses.values()))


@dataclass
class Outbox:
    flush_every: float = DEFAULT_FLUSH_EVERY
    max_nodes: int = DEFAULT_MAX_NODES
    reports: dict[str, metrics_pb2.MetricsReport] = field(default_factory=dict)
    dropped: int = 0
    flushed_at: float | None = None

    def add(self, report: metrics_pb2.MetricsReport, *, sharing: bool) -> None:
        """Keep ``report`` for the next batch (only when there are peers to share with)."""
        if not sharing:
            return
        if report.node_name not in self.reports and len(self.reports) >= self.max_nodes:
            self.dropped += 1
            return
        self.reports[report.node_name] = report

    def due(self, now: float) -> float:
        """Seconds from ``now`` until a batch may be taken (0: now)."""
        if self.flushed_at is None:
            return 0.0
        return max(0.0, self.flushed_at + self.flush_every - now)

    def take(self, now: float) -> list[metrics_pb2.MetricsReport]:
        """The batch to send now, or [] when nothing is waiting or the last batch was too recent."""
        if not self.reports or self.due(now) > 0:
            return []
        batch = list(self.reports.values())
        self.reports = {}
        self.flushed_at = now
        return batch


def split(
    batch: list[metrics_pb2.MetricsReport], max_bytes: int = MAX_CALL_BYTES
) -> list[list[metrics_pb2.MetricsReport]]:
    """``batch`` in order, cut into parts of at most ``max_bytes`` serialized (a larger report alone)."""
    parts: list[list[metrics_pb2.MetricsReport]] = []
    size = 0
    for report in batch:
        weight = report.ByteSize() + 8  # the field's tag and length
        if not parts or size + weight > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append(report)
        size += weight
    return parts
