"""Which backend the next connection to a Service port goes to: a pure core.

A `Balancer` holds the ready backends of one Service port, the traffic
weights of their groups and the Service's algorithm, plus what the proxy
tells it: connections opened and closed per backend (for LeastConnections)
and connect failures (passive health). `pick(now)` names the next backend.

Each pick decides, in order:

1. candidates: backends not in `exclude` (already tried for this connection)
   whose group takes traffic — every group when `weights` is empty, else the
   groups with a weight above 0 (a group missing from the map gets nothing);
2. healthy: the candidates not ejected at `now`; when every one is ejected,
   all candidates (trying an ejected backend beats refusing the client);
3. the group, when there are weights: smooth weighted round robin (nginx's)
   over the groups left in step 2 — deterministic, so a group weighted 10
   against 90 gets exactly every tenth connection;
4. the backend within the group: round robin (the next one in backend order
   after the previous pick), or the fewest active connections (ties: round
   robin).

With ClientIP affinity (`affinity_seconds` > 0, Service sessionAffinity),
`pick(now, client=…)` first gives the client the backend its previous pick
went to, when that one is still in step 2's pool (not excluded, its group
taking traffic, not ejected while others are healthy) and the client's
previous pick is less than `affinity_seconds` ago; otherwise it picks as
above. Either way the client is (re)pinned to the backend picked, with `now`
as its last use: affinity lasts `affinity_seconds` after a client's latest
connection, as kube-proxy's. Sticky picks leave the round robin and weights
alone (they decide for new clients only). A backend that leaves (update)
takes its clients' entries with it; at most `MAX_AFFINITY` clients are kept
(the least recently seen go first; the kernel's sets hold as many).

A connect failure ejects the backend for `eject_seconds` (10 s), doubling
with each further failure up to `eject_max` (60 s); a successful connect
resets it. Updating the backends keeps the counts and ejections of those that
remain (by address:port). Nothing here reads a clock: `now` is monotonic
seconds passed in.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from protos.corral.v1 import discovery_pb2

# Clients remembered per affinity table (an nftables set's default size).
MAX_AFFINITY = 65535
ROUND_ROBIN = "RoundRobin"
LEAST_CONNECTIONS = "LeastConnections"
ALGORITHMS = (ROUND_ROBIN, LEAST_CONNECTIONS)


@dataclass(frozen=True)
class Backend:
    address: str
    port: int
    pod: str = ""
    node: str = ""
    # The traffic group (pod-template-hash) that weights refer to.
    group: str = ""

    @property
    def key(self) -> str:
        return f"{self.address}:{self.port}"


def is_tcp(port: discovery_pb2.RoutePort) -> bool:
    """A TCP port (the protocol defaults to TCP): what the node proxy serves."""
    return (port.protocol or "TCP").upper() == "TCP"


def backends_of(port: discovery_pb2.RoutePort) -> list[Backend]:
    return [Backend(b.address, b.port, b.pod, b.node, b.group) for b in port.backends]


def traffic_weights(backends: Sequence[Backend], weights: Mapping[str, int]) -> list[tuple[Backend, int]]:
    """Per backend, its share of the traffic as the smallest integers: a group's weight split
    evenly among its backends (no `weights`: every backend 1). Backends whose group takes no
    traffic (as `Balancer.pick`: weight 0 or missing from the map) are left out; duplicates
    (same address:port) count once."""
    unique: dict[str, Backend] = {}
    for backend in backends:
        unique.setdefault(backend.key, backend)
    if not weights:
        return [(b, 1) for b in unique.values()]
    taking = [b for b in unique.values() if weights.get(b.group, 0) > 0]
    sizes: dict[str, int] = {}
    for b in taking:
        sizes[b.group] = sizes.get(b.group, 0) + 1
    common = math.lcm(*sizes.values()) if sizes else 1
    raw = [(b, int(weights[b.group]) * common // sizes[b.group]) for b in taking]
    divisor = math.gcd(*(w for _, w in raw)) if raw else 1
    return [(b, w // divisor) for b, w in raw]


@dataclass
class _Health:
    active: int = 0
    ejected_until: float = 0.0
    # Length of the latest ejection; 0 once a connect has succeeded.
    eject_for: float = 0.0


class Balancer:
    """Backend selection for one Service port; see the module docstring."""

    def __init__(
        self,
        backends: Sequence[Backend],
        *,
        weights: Mapping[str, int] | None = None,
        algorithm: str = ROUND_ROBIN,
        eject_seconds: float = 10.0,
        eject_max: float = 60.0,
        affinity_seconds: float = 0.0,
    ) -> None:
        if eject_seconds <= 0:
            raise ValueError(f"eject_seconds must be positive, got {eject_seconds}")
        self._eject_seconds = eject_seconds
        self._eject_max = max(eject_max, eject_seconds)
        self._backends: list[Backend] = []
        self._health: dict[str, _Health] = {}
        self._weights: dict[str, int] = {}
        self._algorithm = ROUND_ROBIN
        # Smooth weighted round robin: each group's current weight.
        self._current: dict[str, int] = {}
        # Round robin: index of the previous pick, per group (None: no weights, one pool).
        self._last: dict[str | None, int] = {}
        # ClientIP affinity: client address → (backend key, last pick), oldest last pick first.
        self._affinity_seconds = 0.0
        self._affinity: dict[str, tuple[str, float]] = {}
        self.update(backends, weights=weights, algorithm=algorithm, affinity_seconds=affinity_seconds)

    # -- configuration -------------------------------------------------------------

    def update(
        self,
        backends: Sequence[Backend],
        *,
        weights: Mapping[str, int] | None = None,
        algorithm: str = ROUND_ROBIN,
        affinity_seconds: float = 0.0,
    ) -> set[str]:
        """Replace backends, weights, algorithm and affinity; returns the keys of backends removed."""
        last_keys = {group: self._backends[i].key for group, i in self._last.items() if i < len(self._backends)}
        unique: dict[str, Backend] = {}
        for backend in backends:
            unique.setdefault(backend.key, backend)
        removed = set(self._health) - set(unique)
        self._backends = list(unique.values())
        self._health = {key: self._health.get(key) or _Health() for key in unique}
        self._weights = {group: max(0, int(weight)) for group, weight in (weights or {}).items()}
        self._current = {g: w for g, w in self._current.items() if self._weights.get(g, 0) > 0}
        self._algorithm = algorithm if algorithm in ALGORITHMS else ROUND_ROBIN
        index = {b.key: i for i, b in enumerate(self._backends)}
        # Round robin goes on after the previous pick when it remains, else at the same place.
        self._last = {group: index.get(last_keys.get(group, ""), i) for group, i in self._last.items()}
        if affinity_seconds != self._affinity_seconds:
            self._affinity.clear()
        self._affinity_seconds = max(0.0, affinity_seconds)
        if removed:
            self._affinity = {c: entry for c, entry in self._affinity.items() if entry[0] not in removed}
        return removed

    @property
    def backends(self) -> list[Backend]:
        return list(self._backends)

    def backend_keys(self) -> set[str]:
        return set(self._health)

    # -- what the proxy reports ----------------------------------------------------

    def opened(self, key: str) -> None:
        """A connection to `key` was established: one more active, and it is healthy."""
        health = self._health.get(key)
        if health is not None:
            health.active += 1
            health.eject_for = 0.0
            health.ejected_until = 0.0

    def closed(self, key: str) -> None:
        health = self._health.get(key)
        if health is not None and health.active > 0:
            health.active -= 1

    def failed(self, key: str, now: float) -> float:
        """A connect to `key` failed: eject it; returns for how long (0: unknown backend)."""
        health = self._health.get(key)
        if health is None:
            return 0.0
        health.eject_for = self._eject_seconds if health.eject_for == 0 else min(self._eject_max, health.eject_for * 2)
        health.ejected_until = now + health.eject_for
        return health.eject_for

    def active(self, key: str) -> int:
        health = self._health.get(key)
        return health.active if health is not None else 0

    def ejected(self, key: str, now: float) -> bool:
        health = self._health.get(key)
        return health is not None and health.ejected_until > now

    # -- selection -------------------------------------------------------------------

    def pick(self, now: float, exclude: Collection[str] = (), client: str = "") -> Backend | None:
        """The backend for the next connection (from `client`, for affinity), or None when there is none."""
        candidates = [i for i, b in enumerate(self._backends) if b.key not in exclude and self._takes_traffic(b)]
        if not candidates:
            return None
        healthy = [i for i in candidates if self._health[self._backends[i].key].ejected_until <= now]
        pool = healthy or candidates
        affine = bool(client) and self._affinity_seconds > 0
        chosen = self._sticky(client, now, pool) if affine else None
        if chosen is None:
            chosen = self._balanced(pool)
        if affine:
            self._affinity.pop(client, None)
            self._affinity[client] = (chosen.key, now)
            if len(self._affinity) > MAX_AFFINITY:
                del self._affinity[next(iter(self._affinity))]
        return chosen

    def affine(self, client: str, now: float) -> str | None:
        """The backend key `client` is pinned to at `now`, if any."""
        entry = self._affinity.get(client)
        return entry[0] if entry is not None and now - entry[1] < self._affinity_seconds else None

    def _sticky(self, client: str, now: float, pool: list[int]) -> Backend | None:
        """The backend `client` is pinned to, when it is in `pool`; drops expired entries first."""
        while self._affinity:
            oldest = next(iter(self._affinity))
            if now - self._affinity[oldest][1] < self._affinity_seconds:
                break
            del self._affinity[oldest]
        key = self.affine(client, now)
        return next((self._backends[i] for i in pool if self._backends[i].key == key), None)

    def _balanced(self, pool: list[int]) -> Backend:
        if not self._weights:
            return self._backends[self._pick_member(None, pool)]
        group = self._pick_group(pool)
        members = [i for i in pool if self._backends[i].group == group]
        return self._backends[self._pick_member(group, members)]

    def _takes_traffic(self, backend: Backend) -> bool:
        return not self._weights or self._weights.get(backend.group, 0) > 0

    def _pick_group(self, pool: list[int]) -> str:
        """Smooth weighted round robin (nginx) over the groups with a backend in `pool`."""
        total = 0
        best: str | None = None
        for group in sorted({self._backends[i].group for i in pool}):
            weight = self._weights[group]
            self._current[group] = self._current.get(group, 0) + weight
            total += weight
            if best is None or self._current[group] > self._current[best]:
                best = group
        assert best is not None
        self._current[best] -= total
        return best

    def _pick_member(self, group: str | None, members: list[int]) -> int:
        """Round robin over `members` (ascending indexes), among the least loaded for LeastConnections."""
        if self._algorithm == LEAST_CONNECTIONS:
            least = min(self._health[self._backends[i].key].active for i in members)
            members = [i for i in members if self._health[self._backends[i].key].active == least]
        last = self._last.get(group, -1)
        chosen = next((i for i in members if i > last), members[0])
        self._last[group] = chosen
        return chosen
