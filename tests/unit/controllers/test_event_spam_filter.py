"""The event recorder's spam filter: a burst of 25 events per object and reason, then one per 5 minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import SPAM_BURST, SPAM_REFILL, EventRecorder
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import event_pb2, workloads_pb2

T0 = datetime(2026, 11, 28, tzinfo=UTC)


def replica_set(name: str) -> workloads_pb2.ReplicaSet:
    rs = workloads_pb2.ReplicaSet()
    rs.metadata.name, rs.metadata.namespace, rs.metadata.uid = name, "default", f"uid-{name}"
    return rs


async def events(api: ObjectApi) -> list[event_pb2.Event]:
    items = (await api.list("Event")).items
    return [e for e in items if isinstance(e, event_pb2.Event)]


async def test_a_scale_up_of_many_pods_records_a_burst_then_one_per_refill() -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    clock = [T0]
    recorder = EventRecorder(api, "replicaset-controller", now=lambda: clock[0])
    web = replica_set("web")
    for i in range(SPAM_BURST + 15):
        await recorder.record(web, "Normal", "SuccessfulCreate", f"Created pod: web-{i}")
    assert len(await events(api)) == SPAM_BURST
    # Another reason, and another object, have buckets of their own.
    await recorder.record(web, "Normal", "SuccessfulDelete", "Deleted pod: web-0")
    await recorder.record(replica_set("api"), "Normal", "SuccessfulCreate", "Created pod: api-0")
    assert len(await events(api)) == SPAM_BURST + 2
    # Within the refill period nothing more of that kind; after it, one.
    clock[0] = T0 + SPAM_REFILL / 2
    await recorder.record(web, "Normal", "SuccessfulCreate", "Created pod: web-late")
    assert len(await events(api)) == SPAM_BURST + 2
    clock[0] = T0 + SPAM_REFILL + timedelta(seconds=1)
    await recorder.record(web, "Normal", "SuccessfulCreate", "Created pod: web-later")
    await recorder.record(web, "Normal", "SuccessfulCreate", "Created pod: web-later-still")
    messages = {e.message for e in await events(api)}
    assert "Created pod: web-later" in messages and "Created pod: web-later-still" not in messages


async def test_recording_many_at_once_writes_what_recording_each_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ReplicaSet's 10,000 "Created pod" events: the same Events as one call each, and the
    ones the filter drops start no write."""
    one_by_one, at_once = ObjectApi(ObjectStore(MemoryStore())), ObjectApi(ObjectStore(MemoryStore()))
    web = replica_set("web")
    messages = [f"Created pod: web-{i}" for i in range(SPAM_BURST + 40)]
    sequential = EventRecorder(one_by_one, "replicaset-controller", now=lambda: T0)
    for message in messages:
        await sequential.record(web, "Normal", "SuccessfulCreate", message)
    batched = EventRecorder(at_once, "replicaset-controller", now=lambda: T0)
    writes: list[str] = []
    real = batched._write

    async def counted(obj: Message, type_: str, reason: str, message: str) -> None:
        writes.append(message)
        await real(obj, type_, reason, message)

    monkeypatch.setattr(batched, "_write", counted)
    await batched.record_all(web, "Normal", "SuccessfulCreate", messages)
    assert len(writes) == SPAM_BURST
    assert sorted((e.metadata.name, e.message, e.count) for e in await events(at_once)) == sorted(
        (e.metadata.name, e.message, e.count) for e in await events(one_by_one)
    )
    # The bucket is spent for the next call too, as for `record`.
    await batched.record_all(web, "Normal", "SuccessfulCreate", ["Created pod: web-late"])
    assert len(writes) == SPAM_BURST
