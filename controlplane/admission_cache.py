"""Watch-fed caches of what admission reads on every create (Kubernetes' listers
for NamespaceLifecycle, LimitRanger and ResourceQuota): `AdmissionReads` from
the Namespace, LimitRange and ResourceQuota informers of this replica.

A read answers from the informer when it knows the key (a Namespace by its
name; a namespace's LimitRanges or ResourceQuotas). Where it may not know yet,
it reads the store (`live`):

- the informer has not synced, or has not yet seen a write this replica made
  to the key (`wrote`: a Namespace or LimitRange created through this server
  applies to its very next create);
- the informer has nothing for the key: a Namespace created a moment ago
  through another replica, or a LimitRange or quota just created there. That
  live answer, found or not, is remembered for `ttl` seconds (Kubernetes'
  LimitRanger and ResourceQuota keep theirs 30 s), and forgotten as soon as
  the informer sees any change to the key. So a namespace with no Namespace
  object, LimitRange or quota (the common case) costs one store read per
  kind every `ttl`, not three per create.

What is left is the watch's lag behind another replica's write: a quota or
LimitRange added there to a namespace this cache already knows others of,
a namespace's labels changed there, reach this replica's admission a few
milliseconds later (Kubernetes has the same window). A quota's charge stays a
compare-and-swap on the quota's resourceVersion, so a stale quota in the
cache costs a conflict and a live re-read, never an over-admission; and
admission refuses (Terminating namespace, exceeded quota) only on a live read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.apiserver.admission_reads import AdmissionReads
from controlplane.informer import CacheEvent, Informer, NamespaceIndex
from protos.corral.v1 import namespace_pb2, quota_pb2
from protos.kinds import info_of, meta

__all__ = ["LIVE_LOOKUP_TTL", "AdmissionCache", "KeyedCache"]

# Seconds a live answer for a key the informer had nothing for is reused (Kubernetes: 30 s).
LIVE_LOOKUP_TTL = 30.0
# Remembered live answers beyond which expired ones are dropped (one per namespace in use).
MEMO_LIMIT = 4096

T = TypeVar("T")


@dataclass(frozen=True)
class _Memo(Generic[T]):
    value: T
    expires: float


class KeyedCache(Generic[T]):
    """One informer seen per key (a namespace name): whether it can answer for the key now,
    and the live answers remembered for keys it had nothing for."""

    def __init__(
        self, informer: Informer, key_of: Callable[[Message], str], *, clock: Callable[[], float], ttl: float
    ) -> None:
        self.informer = informer
        self._key_of = key_of
        self._clock = clock
        self._ttl = ttl
        # Key → the revision of the last change the informer saw to it.
        self._changed: dict[str, int] = {}
        # Key → the revision of this replica's last write to it the informer may not have seen.
        self._written: dict[str, int] = {}
        self._memo: dict[str, _Memo[T]] = {}
        informer.add_listener(self._on_event)

    def _on_event(self, event: CacheEvent) -> None:
        key = self._key_of(event.obj)
        self._changed[key] = event.revision
        self._memo.pop(key, None)

    def wrote(self, obj: Message, revision: int) -> None:
        key = self._key_of(obj)
        self._written[key] = max(revision, self._written.get(key, 0))
        self._memo.pop(key, None)

    def current(self, key: str) -> bool:
        """Whether the informer can answer for `key`: synced, and it has seen this replica's writes to it."""
        if not self.informer.synced.is_set():
            return False
        written = self._written.get(key)
        if written is None:
            return True
        if self.informer.revision < written:
            return False
        del self._written[key]
        return True

    async def read(
        self, key: str, cached: Callable[[], T | None], live: Callable[[], Awaitable[T]], *, force_live: bool
    ) -> T:
        """`cached()` when the informer can answer and has something (not None); else a remembered
        live answer; else `live()`, remembered unless the informer saw the key change meanwhile."""
        if not force_live and self.current(key):
            hit = cached()
            if hit is not None:
                return hit
            memo = self._memo.get(key)
            if memo is not None and memo.expires > self._clock():
                return memo.value
        since = self.informer.revision
        value = await live()
        if self.current(key) and self._changed.get(key, 0) <= since:
            self._remember(key, value)
        return value

    def _remember(self, key: str, value: T) -> None:
        now = self._clock()
        if len(self._memo) >= MEMO_LIMIT:
            self._memo = {k: m for k, m in self._memo.items() if m.expires > now}
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
        self._memo[key] = _Memo(value, now + self._ttl)


def _name(obj: Message) -> str:
    return meta(obj).name


def _namespace(obj: Message) -> str:
    return meta(obj).namespace


class AdmissionCache:
    """`AdmissionReads` from the Namespace, LimitRange and ResourceQuota informers, `live` where they may not know."""

    def __init__(
        self,
        namespaces: Informer,
        limit_ranges: Informer,
        quotas: Informer,
        live: AdmissionReads,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = LIVE_LOOKUP_TTL,
    ) -> None:
        self._live = live
        self._namespaces: KeyedCache[namespace_pb2.Namespace | None] = KeyedCache(
            namespaces, _name, clock=clock, ttl=ttl
        )
        self._ranges: KeyedCache[list[quota_pb2.LimitRange]] = KeyedCache(
            limit_ranges, _namespace, clock=clock, ttl=ttl
        )
        self._quotas: KeyedCache[list[quota_pb2.ResourceQuota]] = KeyedCache(quotas, _namespace, clock=clock, ttl=ttl)
        self._ranges_by_ns = NamespaceIndex(limit_ranges, quota_pb2.LimitRange)
        self._quotas_by_ns = NamespaceIndex(quotas, quota_pb2.ResourceQuota)

    async def namespace(self, name: str, *, live: bool = False) -> namespace_pb2.Namespace | None:
        def cached() -> namespace_pb2.Namespace | None:
            found = self._namespaces.informer.items.get(name)
            return found if isinstance(found, namespace_pb2.Namespace) else None

        return await self._namespaces.read(name, cached, lambda: self._live.namespace(name, live=True), force_live=live)

    async def limit_ranges(self, namespace: str, *, live: bool = False) -> list[quota_pb2.LimitRange]:
        return await self._ranges.read(
            namespace,
            lambda: self._ranges_by_ns.in_namespace(namespace) or None,
            lambda: self._live.limit_ranges(namespace, live=True),
            force_live=live,
        )

    async def quotas(self, namespace: str, *, live: bool = False) -> list[quota_pb2.ResourceQuota]:
        return await self._quotas.read(
            namespace,
            lambda: self._quotas_by_ns.in_namespace(namespace) or None,
            lambda: self._live.quotas(namespace, live=True),
            force_live=live,
        )

    def wrote(self, obj: Message, revision: int) -> None:
        kind = info_of(obj).kind
        if kind == "Namespace":
            self._namespaces.wrote(obj, revision)
        elif kind == "LimitRange":
            self._ranges.wrote(obj, revision)
        elif kind == "ResourceQuota":
            self._quotas.wrote(obj, revision)
