"""Timestamps a client writes through the API (a gRPC client sends them as raw seconds and nanos,
unchecked by the JSON codec) must be ones that convert to a date: the node lifecycle controller,
the telemetry and every printer turn a Lease's renewTime into one, and protobuf raises on a
Timestamp outside years 1-9999 or with nanos outside 0-999,999,999."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from controlplane.apiserver import errors
from controlplane.apiserver.handlers import ObjectApi
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import coordination_pb2, event_pb2, meta_pb2
from protos.leases import NODE_LEASE_NAMESPACE


def lease(**times: tuple[int, int]) -> coordination_pb2.Lease:
    obj = coordination_pb2.Lease(metadata=meta_pb2.ObjectMeta(name="n1", namespace=NODE_LEASE_NAMESPACE))
    obj.spec.holder_identity = "n1"
    for name, (seconds, nanos) in times.items():
        getattr(obj.spec, name).seconds, getattr(obj.spec, name).nanos = seconds, nanos
    return obj


def event(seconds: int) -> event_pb2.Event:
    obj = event_pb2.Event(metadata=meta_pb2.ObjectMeta(name="e1", namespace="default"), reason="Test", type="Normal")
    obj.involved_object.kind, obj.involved_object.name = "Pod", "p"
    obj.last_timestamp.seconds = seconds
    return obj


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        pytest.param(lease(renew_time=(10**12, 0)), "spec.renewTime", id="renew-time-after-year-9999"),
        pytest.param(lease(acquire_time=(-(10**12), 0)), "spec.acquireTime", id="acquire-time-before-year-1"),
        pytest.param(lease(renew_time=(1, 10**9)), "spec.renewTime", id="nanos-too-large"),
        pytest.param(lease(renew_time=(1, -1)), "spec.renewTime", id="nanos-negative"),
        pytest.param(event(2**62), "lastTimestamp", id="event"),
    ],
)
async def test_a_timestamp_that_is_no_date_is_refused(obj: Message, path: str) -> None:
    api = ObjectApi(ObjectStore(MemoryStore()))
    with pytest.raises(errors.InvalidError, match=rf"{path}: timestamp out of range"):
        await api.create(obj)
