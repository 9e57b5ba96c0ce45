"""`_watch_batches`: a list of watch items as WatchBatch messages of about
WATCH_BATCH_BYTES, in order, nothing lost; an object larger than that alone."""

from __future__ import annotations

import itertools

from controlplane.apiserver.handlers import WatchItem
from controlplane.apiserver.service import WATCH_BATCH_BYTES, _watch_batches
from controlplane.store.objects import Change
from protos.corral.v1 import api_pb2, meta_pb2, secret_pb2

KB = 1024


def secret(name: str, size: int) -> secret_pb2.Secret:
    s = secret_pb2.Secret(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    s.data["blob"] = b"x" * size
    return s


def names(batch: api_pb2.WatchBatch) -> list[str]:
    return [e.object.secret.metadata.name for e in batch.events]


def events_size(batch: api_pb2.WatchBatch) -> int:
    return sum(e.ByteSize() for e in batch.events)


def test_big_objects_split_into_batches_of_about_the_limit_in_order() -> None:
    changes = [Change.ADDED, Change.MODIFIED, Change.DELETED]
    items = [WatchItem(changes[i % 3], secret(f"s{i:02d}", 300 * KB)) for i in range(10)]
    batches = list(_watch_batches(items))

    # 300 KB each: three fit under 1 MiB, a fourth would not.
    assert [len(b.events) for b in batches] == [3, 3, 3, 1]
    assert [n for b in batches for n in names(b)] == [f"s{i:02d}" for i in range(10)]
    kinds = [api_pb2.WatchEvent.ADDED, api_pb2.WatchEvent.MODIFIED, api_pb2.WatchEvent.DELETED]
    assert [e.type for b in batches for e in b.events] == [kinds[i % 3] for i in range(10)]
    assert all(len(e.object.secret.data["blob"]) == 300 * KB for b in batches for e in b.events)
    for batch in batches:
        assert events_size(batch) <= WATCH_BATCH_BYTES
        # The message itself: the events and a few bytes of framing each.
        assert batch.ByteSize() <= WATCH_BATCH_BYTES + 16 * len(batch.events)
    for batch, following in itertools.pairwise(batches):  # full: the next event did not fit
        assert events_size(batch) + following.events[0].ByteSize() > WATCH_BATCH_BYTES


def test_small_objects_share_one_batch() -> None:
    items = [WatchItem(Change.ADDED, secret(f"s{i:03d}", 100)) for i in range(500)]
    [batch] = _watch_batches(items)
    assert names(batch) == [f"s{i:03d}" for i in range(500)]


def test_an_object_over_the_limit_goes_alone() -> None:
    items = [
        WatchItem(Change.ADDED, secret("before", 10 * KB)),
        WatchItem(Change.MODIFIED, secret("huge", WATCH_BATCH_BYTES + 512 * KB)),
        WatchItem(Change.DELETED, secret("after", 10 * KB)),
        WatchItem(Change.ADDED, secret("last", 10 * KB)),
    ]
    batches = list(_watch_batches(items))
    assert [names(b) for b in batches] == [["before"], ["huge"], ["after", "last"]]
    assert batches[1].events[0].type == api_pb2.WatchEvent.MODIFIED
    assert events_size(batches[1]) > WATCH_BATCH_BYTES
    assert len(batches[1].events[0].object.secret.data["blob"]) == WATCH_BATCH_BYTES + 512 * KB


def test_nothing_makes_no_message() -> None:
    assert list(_watch_batches([])) == []
