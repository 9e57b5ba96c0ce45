"""Events: what a controller did to an object and why, for `corral describe`.

Repeats of the same event (same object, reason and message) update one Event
object (count and lastTimestamp) instead of creating new ones, as Kubernetes
does. Recording is best-effort: a failure is logged, never raised.

As Kubernetes' event spam filter, each object gets a burst of `SPAM_BURST`
events per reason, then one more every `SPAM_REFILL` (a ReplicaSet scaled to
1,000 records 25 "Created pod" events, not 1,000 writes to etcd while its pods
start); what the filter drops is logged. `record_all` records one reason's
events for many objects' worth of messages at once (a ReplicaSet's "Created
pod: …" for each of 10,000 pods): the filter is asked before any write is
started, so the dropped ones cost no task each.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import ApiError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow_seconds
from protos.corral.v1 import event_pb2
from protos.kinds import by_kind, info_of, meta
from protos.wellknown import DEFAULT_NAMESPACE

log = structlog.get_logger(__name__)
EVENT = by_kind("Event")
# Kubernetes' defaults (client-go's EventSourceObjectSpamFilter): 25 at once, then one per 5 minutes.
SPAM_BURST = 25
SPAM_REFILL = timedelta(minutes=5)
# Buckets kept at most (the fullest are dropped first: a full bucket is the default state).
MAX_BUCKETS = 4096


@dataclass
class _Bucket:
    tokens: float
    at: datetime


class EventRecorder:
    def __init__(self, api: ObjectApi, component: str, *, now: Callable[[], datetime] = utcnow_seconds) -> None:
        self.api = api
        self.component = component
        self.now = now
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _allowed(self, uid: str, reason: str) -> bool:
        """Take a token from the object's bucket for this reason (False: the burst is spent)."""
        now = self.now()
        bucket = self._buckets.get((uid, reason))
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[(uid, reason)] = _Bucket(SPAM_BURST, now)
        refill = (now - bucket.at) / SPAM_REFILL
        bucket.tokens, bucket.at = min(SPAM_BURST, bucket.tokens + max(0.0, refill)), now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _forget_full(self, now: datetime) -> None:
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.at) / SPAM_REFILL >= SPAM_BURST:
                del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()

    async def record(self, obj: Message, type_: str, reason: str, message: str) -> None:
        m = meta(obj)
        if not self._allowed(m.uid or f"{m.namespace}/{m.name}", reason):
            log.debug("event_dropped_by_spam_filter", reason=reason, object=m.name)
            return
        await self._write(obj, type_, reason, message)

    async def record_all(self, obj: Message, type_: str, reason: str, messages: Sequence[str]) -> None:
        """`record` of each message, written together; once the filter drops one, it drops the
        rest (the bucket does not refill within one call)."""
        m = meta(obj)
        allowed: list[str] = []
        for message in messages:
            if not self._allowed(m.uid or f"{m.namespace}/{m.name}", reason):
                break
            allowed.append(message)
        if len(allowed) < len(messages):
            log.debug(
                "event_dropped_by_spam_filter", reason=reason, object=m.name, dropped=len(messages) - len(allowed)
            )
        await asyncio.gather(*(self._write(obj, type_, reason, message) for message in allowed))

    async def _write(self, obj: Message, type_: str, reason: str, message: str) -> None:
        info, m = info_of(obj), meta(obj)
        digest = hashlib.sha256(f"{info.kind}/{m.uid}/{reason}/{message}".encode()).hexdigest()[:10]
        name = f"{m.name}.{digest}"
        namespace = m.namespace or DEFAULT_NAMESPACE
        try:
            existing = await self.api.find(EVENT, namespace, name)
            if isinstance(existing, event_pb2.Event):
                existing.count += 1
                existing.last_timestamp.FromDatetime(self.now())
                await self.api.write(existing)
                return
            event = event_pb2.Event(reason=reason, message=message, type=type_, count=1)
            event.metadata.name, event.metadata.namespace = name, namespace
            ref = event.involved_object
            ref.kind, ref.api_version, ref.name, ref.namespace, ref.uid = (
                info.kind,
                info.api_version,
                m.name,
                m.namespace,
                m.uid,
            )
            event.source.component = self.component
            event.first_timestamp.FromDatetime(self.now())
            event.last_timestamp.FromDatetime(self.now())
            await self.api.create(event)
        except ApiError as e:
            log.warning("event_not_recorded", reason=reason, object=m.name, error=str(e))
