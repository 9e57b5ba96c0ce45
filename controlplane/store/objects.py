"""Typed access to API objects over any `Store`.

Objects are stored as serialized protobuf under
`{prefix}/registry/{plural}/{namespace}/{name}` (cluster-scoped kinds have no
namespace segment). `metadata.resourceVersion` is never stored: it is the key's
etcd mod_revision, filled in on every read, and every update is a
compare-and-swap against it.

With an `Encrypter`, the values of the kinds in ``ENCRYPTED_KINDS`` (Secrets)
are sealed with AES-256-GCM before they reach the store, and opened on every
read, list and watch event (`controlplane.store.encryption`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum

from google.protobuf.message import Message

from controlplane.store.base import EventType, KeyValue, Store
from controlplane.store.encryption import Encrypter
from controlplane.store.errors import DecryptionError
from protos.kinds import KindInfo, info_of, meta

DEFAULT_PREFIX = "/corral"
# Kinds whose stored values are encrypted at rest when the store has a key.
ENCRYPTED_KINDS = frozenset({"Secret"})


class Change(Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class ObjectEvent:
    change: Change
    obj: Message
    # The object before this change; None for ADDED (or when compacted away).
    prev: Message | None
    revision: int


@dataclass(frozen=True)
class ObjectPage:
    items: list[Message]
    revision: int
    more: bool
    # The store key of the last item read, to continue after.
    last_key: str | None


class ObjectStore:
    """Encodes, decodes and addresses objects; the CAS rules live in the Store."""

    def __init__(self, store: Store, prefix: str = DEFAULT_PREFIX, *, encrypter: Encrypter | None = None) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.encrypter = encrypter

    # -- keys ---------------------------------------------------------------

    def prefix_for(self, info: KindInfo, namespace: str = "") -> str:
        base = f"{self.prefix}/registry/{info.plural}/"
        if info.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, info: KindInfo, namespace: str, name: str) -> str:
        if info.namespaced:
            return f"{self.prefix}/registry/{info.plural}/{namespace}/{name}"
        return f"{self.prefix}/registry/{info.plural}/{name}"

    def key_of(self, obj: Message) -> str:
        info = info_of(obj)
        m = meta(obj)
        return self.key(info, m.namespace, m.name)

    # -- encoding -----------------------------------------------------------

    @staticmethod
    def encode(obj: Message) -> bytes:
        copy = type(obj)()
        copy.CopyFrom(obj)
        meta(copy).resource_version = ""
        return copy.SerializeToString(deterministic=True)

    @staticmethod
    def decode(info: KindInfo, value: bytes, revision: int) -> Message:
        obj = info.message()
        obj.ParseFromString(value)
        meta(obj).resource_version = str(revision)
        return obj

    def _sealed(self, obj: Message) -> tuple[str, bytes]:
        """The store key and value of `obj`, encrypted when its kind is."""
        key, value = self.key_of(obj), self.encode(obj)
        if self.encrypter is not None and info_of(obj).kind in ENCRYPTED_KINDS:
            value = self.encrypter.seal(key, value)
        return key, value

    def _opened(self, key: str, value: bytes) -> bytes:
        if not Encrypter.is_sealed(value):
            return value
        if self.encrypter is None:
            raise DecryptionError(key, "the value is encrypted and this server has no encryption key")
        return self.encrypter.open(key, value)

    def _decode_kv(self, info: KindInfo, kv: KeyValue) -> Message:
        return self.decode(info, self._opened(kv.key, kv.value), kv.mod_revision)

    # -- operations ---------------------------------------------------------

    async def get(self, info: KindInfo, namespace: str, name: str) -> Message | None:
        kv = await self.store.get(self.key(info, namespace, name))
        return None if kv is None else self._decode_kv(info, kv)

    async def create(self, obj: Message) -> Message:
        revision = await self.store.create(*self._sealed(obj))
        return self._with_revision(obj, revision)

    async def update(self, obj: Message) -> Message:
        """Write `obj` if the stored revision is still its resourceVersion."""
        expected = int(meta(obj).resource_version or 0)
        revision = await self.store.update(*self._sealed(obj), expected_revision=expected)
        return self._with_revision(obj, revision)

    async def update_many(self, objs: Sequence[Message]) -> list[Message]:
        """CAS-write several objects in one transaction (all or nothing)."""
        items = [(*self._sealed(o), int(meta(o).resource_version or 0)) for o in objs]
        revision = await self.store.update_many(items)
        return [self._with_revision(o, revision) for o in objs]

    async def delete(self, obj: Message) -> int:
        """Delete `obj` if it is unchanged since it was read; returns the revision."""
        expected = int(meta(obj).resource_version or 0)
        return await self.store.delete(self.key_of(obj), expected_revision=expected or None)

    async def list_page(
        self,
        info: KindInfo,
        namespace: str = "",
        *,
        limit: int = 500,
        start_after: str | None = None,
        revision: int | None = None,
    ) -> ObjectPage:
        page = await self.store.list(
            self.prefix_for(info, namespace), limit=limit, start_after=start_after, revision=revision
        )
        items = [self._decode_kv(info, kv) for kv in page.items]
        last = page.items[-1].key if page.items else start_after
        return ObjectPage(items, page.revision, page.more, last)

    async def list_all(self, info: KindInfo, namespace: str = "") -> tuple[list[Message], int]:
        """Every object of a kind, read page by page at one revision."""
        items: list[Message] = []
        page = await self.list_page(info, namespace)
        items.extend(page.items)
        while page.more:
            page = await self.list_page(info, namespace, start_after=page.last_key, revision=page.revision)
            items.extend(page.items)
        return items, page.revision

    async def watch(self, info: KindInfo, namespace: str = "", *, start_revision: int) -> AsyncIterator[ObjectEvent]:
        """Changes to objects of a kind from `start_revision` on (CompactedError if too old)."""
        async for ev in self.store.watch(self.prefix_for(info, namespace), start_revision=start_revision):
            prev = None if ev.prev_value is None else self.decode(info, self._opened(ev.key, ev.prev_value), 0)
            if ev.type is EventType.DELETE:
                if prev is None:
                    continue
                meta(prev).resource_version = str(ev.revision)
                yield ObjectEvent(Change.DELETED, prev, prev, ev.revision)
                continue
            obj = self.decode(info, self._opened(ev.key, ev.value), ev.revision)
            change = Change.ADDED if ev.create_revision == ev.revision else Change.MODIFIED
            yield ObjectEvent(change, obj, prev, ev.revision)

    @staticmethod
    def _with_revision(obj: Message, revision: int) -> Message:
        copy = type(obj)()
        copy.CopyFrom(obj)
        meta(copy).resource_version = str(revision)
        return copy
