"""Admission of new objects against their namespace's LimitRanges and
ResourceQuotas: the reads and compare-and-swaps around the pure rules of
`limit_ranges` and `quota_admission`.

Every create of a namespaced object, whoever makes it (a user, the
ReplicaSet controller), goes through `admit`: a new pod gets its LimitRanges'
default requests and limits and is refused outside their bounds (a PVC
likewise for storage); then the quotas that count the object are charged
with a compare-and-swap of their status (status.used), all in one
transaction, before the object is written. A conflict (another create was
charged meanwhile) re-reads the quotas and decides again, so two creates
racing for the last slot cannot both pass. When the object's write then
fails, `refund` takes the charge back (best effort: the resource quota
controller's recount corrects what a crash leaves).

A quota whose status has not been counted yet (just created, or spec.hard
changed) is counted here, from the stored objects, read after the quota.

LimitRanges and quotas come from `AdmissionReads` (watch-fed caches on a
serving control plane): a first attempt decides on what the cache holds; a
refusal is decided again on a live read before it is returned, and a charge
that lost its compare-and-swap (another create, or a quota the cache held
stale) re-reads live. A namespace without quotas costs no quota arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver import limit_ranges, quota_admission
from controlplane.apiserver.admission_reads import AdmissionReads, LiveReads
from controlplane.apiserver.errors import ConflictError, ForbiddenError, InvalidError
from controlplane.apiserver.validation import validate
from controlplane.store import errors as store_errors
from controlplane.store.objects import ObjectStore
from protos import quota
from protos.corral.v1 import pod_pb2, quota_pb2, storage_pb2
from protos.kinds import KindInfo, UnknownKindError, by_kind, meta

log = structlog.get_logger(__name__)

# Attempts at charging quotas when other writers keep moving them.
CHARGE_ATTEMPTS = 16
REFUND_ATTEMPTS = 4

_QUOTA = by_kind("ResourceQuota")


@dataclass(frozen=True)
class Admitted:
    """What admitting one write charged, to take back if the write fails."""

    namespace: str
    charges: tuple[quota_admission.Charge, ...] = ()


class Admission:
    def __init__(self, objects: ObjectStore, now: Callable[[], datetime], reads: AdmissionReads | None = None) -> None:
        self._objects = objects
        self.now = now
        self.reads: AdmissionReads = reads if reads is not None else LiveReads(objects)

    # -- limit ranges ------------------------------------------------------------------

    async def limit(self, info: KindInfo, obj: Message) -> None:
        """Fill a new pod's defaults from its namespace's LimitRanges and refuse what they forbid."""
        if not isinstance(obj, pod_pb2.Pod | storage_pb2.PersistentVolumeClaim):
            return
        ranges = await self.reads.limit_ranges(meta(obj).namespace)
        if not ranges:
            return
        if isinstance(obj, pod_pb2.Pod):
            if limit_ranges.fill_defaults(obj, ranges):
                causes = validate(info, obj)
                if causes:
                    raise InvalidError(info.resource, obj.metadata.name, causes)
            causes = limit_ranges.pod_violations(obj, ranges)
        else:
            causes = limit_ranges.claim_violations(obj.spec.resources.requests, ranges)
        if causes:
            raise ForbiddenError(info.resource, meta(obj).name, causes)

    # -- quotas ------------------------------------------------------------------------------

    async def charge(self, info: KindInfo, new: Message, old: Message | None, *, dry_run: bool) -> Admitted | None:
        """Charge the write of `new` (over `old`, for an update) to the quotas that count it.

        Raises ForbiddenError when a quota refuses it; with `dry_run`, decides without charging.
        """
        if not info.namespaced:
            return None
        namespace = meta(new).namespace
        quotas = await self.reads.quotas(namespace)
        if not quotas:
            return None
        now = self.now()
        added = quota.increase(quota.object_usage(new, now), quota.object_usage(old, now) if old is not None else {})
        if not added:
            return None
        live = False
        for _ in range(CHARGE_ATTEMPTS):
            if live:
                quotas = await self.reads.quotas(namespace, live=True)
                if not quotas:
                    return None
            recounts = {}
            for rq, names in quota_admission.pertinent(quotas, new):
                if quota_admission.needs_recount(rq, names):
                    recounts[rq.metadata.name] = await self.usage(rq)
            try:
                charges = quota_admission.plan(quotas, new, added, recounts)
            except quota_admission.QuotaRefusal as refusal:
                if not live:  # the cache may hold a quota since freed: refuse only on a live read
                    live = True
                    continue
                raise ForbiddenError(info.resource, meta(new).name, [refusal.cause]) from refusal
            if not charges or dry_run:
                return Admitted(namespace)
            try:
                await self._objects.update_many([c.quota for c in charges])
            except store_errors.ConflictError:
                live = True  # charged meanwhile, or the cache's copy was stale: decide again on a live read
                continue
            for c in charges:
                log.info(
                    "quota_charged",
                    namespace=namespace,
                    quota=c.quota.metadata.name,
                    kind=info.kind,
                    name=meta(new).name,
                    used=dict(c.quota.status.used),
                )
            return Admitted(namespace, tuple(charges))
        raise ConflictError(
            f'{info.resource} "{meta(new).name}": the quotas of namespace {namespace} are changing too fast, try again'
        )

    async def refund(self, admitted: Admitted | None) -> None:
        """Take back what `charge` charged, for a write that failed (best effort)."""
        if admitted is None:
            return
        for charge in admitted.charges:
            name = charge.quota.metadata.name
            for _ in range(REFUND_ATTEMPTS):
                try:
                    found = await self._objects.get(_QUOTA, admitted.namespace, name)
                    if not isinstance(found, quota_pb2.ResourceQuota):
                        break
                    back = quota_admission.refunded(found, charge.charged)
                    if back is None:
                        break
                    await self._objects.update(back)
                    log.info("quota_refunded", namespace=admitted.namespace, quota=name, used=dict(back.status.used))
                    break
                except store_errors.ConflictError:
                    continue
                except store_errors.StoreError as e:
                    log.warning("quota_refund_failed", namespace=admitted.namespace, quota=name, error=str(e))
                    break

    # -- counting -------------------------------------------------------------------------------

    async def usage(self, rq: quota_pb2.ResourceQuota) -> quota.Usage:
        """What the namespace's stored objects use of each of the quota's hard resources
        (read now: call after reading the quota, whose resourceVersion guards the write)."""
        now = self.now()
        usages: list[quota.Usage] = []
        for kind in sorted({k for n in rq.spec.hard if (k := quota.counted_kind(n)) is not None}):
            try:
                info = by_kind(kind)
            except UnknownKindError:
                continue  # a kind this build does not have: nothing of it exists
            objects, _ = await self._objects.list_all(info, rq.metadata.namespace)
            usages += [quota.object_usage(o, now) for o in objects if quota.quota_matches(rq.spec, o)]
        return quota.total(usages, rq.spec.hard)
