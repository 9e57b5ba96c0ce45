"""Events: what a controller did to an object and why, for `corral describe`.

Repeats of the same event (same object, reason and message) update one Event
object (count and lastTimestamp) instead of creating new ones, as Kubernetes
does. Recording is best-effort: a failure is logged, never raised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import ApiError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow_seconds
from controlplane.store import errors as store_errors
from protos.corral.v1 import event_pb2
from protos.kinds import by_kind, info_of, meta

log = structlog.get_logger(__name__)
EVENT = by_kind("Event")



class EventRecorder:
    def __init__(self, api: ObjectApi, component: str, *, now: Callable[[], datetime] = utcnow_seconds) -> None:
        self.api = api
        self.component = component
        self.now = now

    async def record(self, obj: Message, type_: str, reason: str, message: str) -> None:
        info, m = info_of(obj), meta(obj)
        digest = hashlib.sha256(f"{info.kind}/{m.uid}/{reason}/{message}".encode()).hexdigest()[:10]
        name = f"{m.name}.{digest}"
        namespace = m.namespace or "default"
        try:
            existing = await self.api.objects.get(EVENT, namespace, name)
            if isinstance(existing, event_pb2.Event):
                existing.count += 1
                existing.last_timestamp.FromDatetime(self.now())
                await self.api.objects.update(existing)
                return
            event = event_pb2.Event(reason=reason, message=message, type=type_, count=1)
            event.metadata.name, event.metadata.namespace = name, namespace
            ref = event.involved_object
            ref.kind, ref.api_version, ref.name, ref.namespace, ref.uid = (
                info.kind, info.api_version, m.name, m.namespace, m.uid)
            event.source.component = self.component
            event.first_timestamp.FromDatetime(self.now())
            event.last_timestamp.FromDatetime(self.now())
            await self.api.create(event)
        except (ApiError, store_errors.StoreError) as e:
            log.warning("event_not_recorded", reason=reason, object=m.name, error=str(e))
