"""Read-your-writes for a controller's status writes.

A controller that wrote an object's status and is asked to sync the key again
before its cache shows that write must start from what it wrote, not from
the older cached copy: that one would make it act twice (a second Job for a
due time) or fail a compare-and-swap on a stale resourceVersion. A status
write is a CAS on the cached version, so the written object differs from the
cached one only in status, and the next write on top of it does not conflict.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from google.protobuf.message import Message

from protos.kinds import meta

M = TypeVar("M", bound=Message)


def revision(obj: Message) -> int:
    value = meta(obj).resource_version
    return int(value) if value.isdigit() else 0


class LatestWrites(Generic[M]):
    def __init__(self, message_type: type[M]) -> None:
        self._type = message_type
        self._written: dict[str, M] = {}

    def remember(self, key: str, written: Message) -> None:
        if isinstance(written, self._type):
            self._written[key] = written

    def latest(self, key: str, cached: Message | None) -> M | None:
        """The cached object, or our own later write of the same object; None when it is gone."""
        written = self._written.pop(key, None)
        if not isinstance(cached, self._type):
            return None
        if written is not None and meta(written).uid == meta(cached).uid and revision(written) > revision(cached):
            self._written[key] = written
            return written
        return cached
