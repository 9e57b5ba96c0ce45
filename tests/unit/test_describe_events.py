"""`corral describe` lists an object's events oldest first, to the nanosecond."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from corral.cli import describe
from protos.corral.v1 import event_pb2, workloads_pb2

T0 = datetime(2026, 11, 29, 5, 0, 0, tzinfo=UTC)


def deployment() -> workloads_pb2.Deployment:
    d = workloads_pb2.Deployment()
    d.metadata.name, d.metadata.namespace, d.metadata.uid = "web", "default", "u1"
    return d


def event(
    name: str, message: str, at: datetime, *, kind: str = "Deployment", obj: str = "web", last: bool = True
) -> event_pb2.Event:
    e = event_pb2.Event()
    e.metadata.name, e.metadata.namespace = name, "default"
    e.involved_object.kind, e.involved_object.name, e.involved_object.uid = kind, obj, "u1"
    e.message = message
    if last:
        e.last_timestamp.FromDatetime(at)
    else:
        e.metadata.creation_timestamp.FromDatetime(at)
    return e


class ListingClient:
    """Lists the events it was given, in name order as the store does."""

    def __init__(self, events: list[event_pb2.Event]) -> None:
        self.events = sorted(events, key=lambda e: e.metadata.name)

    def list(self, kind: str, namespace: str) -> tuple[list[Message], int]:
        assert (kind, namespace) == ("Event", "default")
        return list(self.events), 1


def messages(events: list[event_pb2.Event]) -> list[str]:
    return [e.message for e in events]


def test_events_of_one_second_keep_their_order() -> None:
    # Named so that name order is the reverse of time order within the second.
    listed = [
        event("e-c", "scaled 0 to 1", T0 + timedelta(milliseconds=100)),
        event("e-b", "scaled 1 to 2", T0 + timedelta(milliseconds=400)),
        event("e-a", "scaled 2 to 3", T0 + timedelta(milliseconds=900)),
        event("e-z", "earlier", T0 - timedelta(seconds=30)),
    ]
    got = describe.events_for(ListingClient(listed), deployment())  # type: ignore[arg-type]
    assert messages(got) == ["earlier", "scaled 0 to 1", "scaled 1 to 2", "scaled 2 to 3"]


def test_an_event_without_last_timestamp_sorts_by_its_creation_time() -> None:
    listed = [
        event("e-a", "second", T0 + timedelta(milliseconds=700), last=False),
        event("e-b", "first", T0 + timedelta(milliseconds=200)),
        event("e-c", "third", T0 + timedelta(seconds=1)),
    ]
    got = describe.events_for(ListingClient(listed), deployment())  # type: ignore[arg-type]
    assert messages(got) == ["first", "second", "third"]


def test_only_the_objects_own_events_and_the_newest_twenty() -> None:
    listed = [event(f"e-{i:03d}", f"m{i}", T0 + timedelta(milliseconds=10 * i)) for i in range(25)]
    listed.append(event("other", "not web", T0, obj="api"))
    listed.append(event("pod", "a pod named web", T0, kind="Pod"))
    got = describe.events_for(ListingClient(listed), deployment())  # type: ignore[arg-type]
    assert messages(got) == [f"m{i}" for i in range(5, 25)]
