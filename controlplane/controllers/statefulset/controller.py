"""The StatefulSet controller's shell: watch caches in, `reconcile`, writes out.

Keys are StatefulSet keys ("ns/name"). A pod maps to its controller owner's
key (an orphan to every StatefulSet of its namespace whose selector matches
it, for adoption); a claim to the sets of its namespace whose claim names it
could carry (`<template>-<set>-<N>`). A sync reads the set, its pods and the
claims of its namespace from the informers, reconciles, and writes in this
order: adoption and release, claims' ownerReferences, new claims (one that
exists already is left alone), pod deletions (graceful, with a uid
precondition), new pods (a name still taken — the cache was behind — is
left for the next sync), then the status with a CAS write. A failed write
raises, so the work queue retries on fresh state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver import labels
from controlplane.apiserver.errors import AlreadyExistsError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.history import write_history
from controlplane.controllers.index import ControllerIndex, NamespaceIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.replicaset.controller import failures, owner_key
from controlplane.controllers.statefulset import identity
from controlplane.controllers.statefulset.reconcile import StatefulSetActions, reconcile
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos import owners, revisions, statefulsets
from protos import pods as podutil
from protos.corral.v1 import pod_pb2, storage_pb2, workloads_pb2
from protos.kinds import meta

log = structlog.get_logger(__name__)

KIND = "StatefulSet"


class StatefulSetController:
    name: str = "statefulset"
    kinds: tuple[str, ...] = (KIND, "Pod", "PersistentVolumeClaim", "ControllerRevision")

    def __init__(
        self, api: ObjectApi, recorder: EventRecorder, *, workers: int = 2, now: Callable[[], datetime] = utcnow
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.workers = workers
        self.now = now
        self._sets: Informer | None = None
        self._sets_by_ns: NamespaceIndex[workloads_pb2.StatefulSet] | None = None
        self._pods: ControllerIndex[pod_pb2.Pod] | None = None
        self._claims: NamespaceIndex[storage_pb2.PersistentVolumeClaim] | None = None
        self._revisions: ControllerIndex[workloads_pb2.ControllerRevision] | None = None

    # -- wiring -----------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._sets = informers[KIND]
        self._sets_by_ns = NamespaceIndex(informers[KIND], workloads_pb2.StatefulSet)
        self._pods = ControllerIndex.shared(informers["Pod"], pod_pb2.Pod)
        self._claims = NamespaceIndex(informers["PersistentVolumeClaim"], storage_pb2.PersistentVolumeClaim)
        self._revisions = ControllerIndex.shared(informers["ControllerRevision"], workloads_pb2.ControllerRevision)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == KIND:
            return [object_key(event.obj)]
        keys: set[str] = set()
        for obj in (event.obj, event.prev):
            if obj is None:
                continue
            if kind == "PersistentVolumeClaim":
                keys.update(self._claiming(obj))
                continue
            if kind == "ControllerRevision":
                keys.update(k for k in [owner_key(obj, KIND)] if k is not None)
                continue
            key = owner_key(obj, KIND)
            if key is not None:
                keys.add(key)
            elif owners.controller_ref(obj) is None and event.change is not Change.DELETED:
                keys.update(self._selecting(obj))
        return keys

    def all_keys(self) -> Iterable[str]:
        return list(self._informer().items)

    def _informer(self) -> Informer:
        if self._sets is None:
            raise RuntimeError("StatefulSetController used before bind()")
        return self._sets

    def _in_namespace(self, namespace: str) -> list[workloads_pb2.StatefulSet]:
        assert self._sets_by_ns is not None
        return self._sets_by_ns.in_namespace(namespace)

    def _selecting(self, pod: Message) -> list[str]:
        m = meta(pod)
        return [
            object_key(sts)
            for sts in self._in_namespace(m.namespace)
            if m.name.startswith(f"{sts.metadata.name}-")
            if sts.spec.selector.match_labels or sts.spec.selector.match_expressions
            if labels.from_label_selector(sts.spec.selector).matches(m.labels)
        ]

    def _claiming(self, claim: Message) -> list[str]:
        m = meta(claim)
        return [
            object_key(sts)
            for sts in self._in_namespace(m.namespace)
            if any(
                m.name.startswith(f"{t.metadata.name}-{sts.metadata.name}-") for t in sts.spec.volume_claim_templates
            )
        ]

    # -- sync -------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        sts = self._informer().items.get(key)
        if not isinstance(sts, workloads_pb2.StatefulSet):
            return None
        assert self._pods is not None
        assert self._claims is not None
        pods = [*self._pods.owned_by(sts.metadata.uid), *self._pods.orphans(sts.metadata.namespace)]
        assert self._revisions is not None
        claims = {c.metadata.name: c for c in self._claims.in_namespace(sts.metadata.namespace)}
        history = self._revisions.owned_by(sts.metadata.uid)
        actions = reconcile(sts, pods, claims, now=self.now(), revisions=history)
        if not podutil.is_terminating(sts):
            update = statefulsets.revision(sts)
            # Kubernetes' truncateHistory: the current and update revisions and those pods run.
            keep = {update, sts.status.current_revision or update, *(identity.revision_of(p) for p in pods)}
            hash_ = update.removeprefix(f"{sts.metadata.name}-")
            await write_history(self.api, sts, revisions.plan(sts, hash_, history, keep=keep))
        for pod in (*actions.adopt, *actions.release):
            await self.api.write(pod)
        for claim in actions.update_claims:
            await self.api.write(claim)
        await self._create_claims(sts, actions.create_claims)
        await self._delete(sts, actions.delete)
        await self._create(sts, actions)
        if actions.status is not None:
            updated = workloads_pb2.StatefulSet()
            updated.CopyFrom(sts)
            updated.status.CopyFrom(actions.status)
            await self.api.update_status(updated)
        return actions.requeue_after

    async def _create_claims(
        self, sts: workloads_pb2.StatefulSet, claims: Sequence[storage_pb2.PersistentVolumeClaim]
    ) -> None:
        for claim in claims:
            try:
                await self.api.create(claim)
            except AlreadyExistsError:
                continue
            except Exception as e:
                await self.recorder.record(
                    sts,
                    "Warning",
                    "FailedCreate",
                    f"create Claim {claim.metadata.name} for StatefulSet {sts.metadata.name} failed error: {e}",
                )
                raise
            log.info("stateful_set_claim_created", stateful_set=object_key(sts), claim=claim.metadata.name)
            await self.recorder.record(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Claim {claim.metadata.name} in StatefulSet {sts.metadata.name} success",
            )

    async def _delete(self, sts: workloads_pb2.StatefulSet, pods: Sequence[pod_pb2.Pod]) -> None:
        if not pods:
            return
        results = await asyncio.gather(*(self._delete_one(p) for p in pods), return_exceptions=True)
        errors = failures(results)
        for pod, result in zip(pods, results, strict=True):
            if isinstance(result, BaseException):
                continue
            log.info("stateful_set_pod_deleted", stateful_set=object_key(sts), pod=pod.metadata.name)
            await self.recorder.record(
                sts,
                "Normal",
                "SuccessfulDelete",
                f"delete Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} successful",
            )
        if errors:
            await self.recorder.record(sts, "Warning", "FailedDelete", f"Error deleting: {errors[0]}")
            raise errors[0]

    async def _delete_one(self, pod: pod_pb2.Pod) -> None:
        m = pod.metadata
        try:
            await self.api.delete("Pod", m.namespace, m.name, uid=m.uid)
        except NotFoundError:
            return

    async def _create(self, sts: workloads_pb2.StatefulSet, actions: StatefulSetActions) -> None:
        results = await asyncio.gather(*(self.api.create(p) for p in actions.create), return_exceptions=True)
        errors = [e for e in failures(results) if not isinstance(e, AlreadyExistsError)]
        for pod, result in zip(actions.create, results, strict=True):
            if isinstance(result, BaseException):
                continue
            log.info("stateful_set_pod_created", stateful_set=object_key(sts), pod=pod.metadata.name)
            await self.recorder.record(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Pod {pod.metadata.name} in StatefulSet {sts.metadata.name} successful",
            )
        if errors:
            await self.recorder.record(sts, "Warning", "FailedCreate", f"Error creating: {errors[0]}")
            raise errors[0]
