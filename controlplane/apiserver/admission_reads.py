"""What admission reads on every create: the object's Namespace (NamespaceLifecycle,
Pod Security), its namespace's LimitRanges and its ResourceQuotas.

`AdmissionReads` is the boundary. `LiveReads` reads the store each time (tests,
tools); a serving control plane gives `ObjectApi` watch-fed caches instead
(`controlplane.admission_cache`, Kubernetes' listers), which answer from memory
and read the store only where a cache may not know yet. Whoever answers, a
caller that must not act on a stale answer asks with ``live=True``: admission
does so before refusing (a Terminating namespace, a quota over its limit) and
after a quota charge lost its compare-and-swap.

`wrote` tells the reads of this replica's own writes (with the revision they
were stored at), so a cache does not answer from before them: a Namespace or
LimitRange created through this server applies to the very next create.
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.message import Message

from controlplane.store.objects import ObjectStore
from protos.corral.v1 import namespace_pb2, quota_pb2
from protos.kinds import by_kind

NAMESPACE = by_kind("Namespace")
LIMIT_RANGE = by_kind("LimitRange")
RESOURCE_QUOTA = by_kind("ResourceQuota")


class AdmissionReads(Protocol):
    async def namespace(self, name: str, *, live: bool = False) -> namespace_pb2.Namespace | None:
        """The Namespace object of that name, or None (objects may live in a namespace without one)."""
        ...

    async def limit_ranges(self, namespace: str, *, live: bool = False) -> list[quota_pb2.LimitRange]: ...

    async def quotas(self, namespace: str, *, live: bool = False) -> list[quota_pb2.ResourceQuota]: ...

    def wrote(self, obj: Message, revision: int) -> None:
        """This replica stored (or deleted) `obj` at `revision`."""
        ...


class LiveReads:
    """Every read from the store (store errors pass through)."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects

    async def namespace(self, name: str, *, live: bool = False) -> namespace_pb2.Namespace | None:
        del live
        found = await self._objects.get(NAMESPACE, "", name)
        return found if isinstance(found, namespace_pb2.Namespace) else None

    async def limit_ranges(self, namespace: str, *, live: bool = False) -> list[quota_pb2.LimitRange]:
        del live
        listed, _ = await self._objects.list_all(LIMIT_RANGE, namespace)
        return [r for r in listed if isinstance(r, quota_pb2.LimitRange)]

    async def quotas(self, namespace: str, *, live: bool = False) -> list[quota_pb2.ResourceQuota]:
        del live
        listed, _ = await self._objects.list_all(RESOURCE_QUOTA, namespace)
        return [q for q in listed if isinstance(q, quota_pb2.ResourceQuota)]

    def wrote(self, obj: Message, revision: int) -> None:
        del obj, revision
