"""The Deployment controller's shell: watch caches in, `reconcile`, CAS writes out.

Keys are Deployment keys ("ns/name"). A ReplicaSet maps to its controller
owner (an orphan to the Deployments of its namespace whose selector matches
it); a pod maps through its owner ReplicaSet to that set's Deployment.

A sync waits until the caches show this controller's own earlier writes (see
`expectations`), reads the Deployment and its namespace's ReplicaSets and pods,
reconciles, and applies the actions in a safe order: deletions, scale-downs,
creations, other updates (scale-ups), then the Deployment's annotations and
status (one raw CAS write) and, for an automatic rollback or an aborted
canary, its template (through `ObjectApi.update`, which bumps the
generation). ReplicaSets are created and updated through `ObjectApi` too
(defaults, validation, generation); a system annotation the controller
removed from a ReplicaSet, which such an update keeps, goes in a second CAS
write. Any conflict is raised so the work queue retries on fresh state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver import labels
from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.deployment.expectations import WriteExpectations
from controlplane.controllers.deployment.plan import Event
from controlplane.controllers.deployment.reconcile import DeploymentActions, reconcile_facts
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.index import NamespaceIndex, PodFactsIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.replicaset.controller import owner_key
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos import owners
from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.kinds import by_kind, meta

log = structlog.get_logger(__name__)
DEPLOYMENT = by_kind("Deployment")
# Writes of a rollback's template, each after re-reading on a conflict.
ROLLBACK_ATTEMPTS = 5


class DeploymentController:
    name: str = "deployment"
    kinds: tuple[str, ...] = ("Deployment", "ReplicaSet", "Pod")

    def __init__(
        self,
        api: ObjectApi,
        recorder: EventRecorder,
        *,
        workers: int = 4,
        now: Callable[[], datetime] = utcnow,
        expectations: WriteExpectations | None = None,
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.workers = workers
        self.now = now
        self.expectations = expectations or WriteExpectations()
        self._informers: dict[str, Informer] = {}
        self._sets_by_ns: NamespaceIndex[workloads_pb2.ReplicaSet] | None = None
        self._pods: PodFactsIndex | None = None
        self._deployments_by_ns: NamespaceIndex[workloads_pb2.Deployment] | None = None

    # -- wiring -----------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._informers = informers
        self._deployments_by_ns = NamespaceIndex(informers["Deployment"], workloads_pb2.Deployment)
        self._sets_by_ns = NamespaceIndex(informers["ReplicaSet"], workloads_pb2.ReplicaSet)
        self._pods = PodFactsIndex.shared(informers["Pod"])

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "Deployment":
            return [object_key(event.obj)]
        keys: set[str] = set()
        for obj in (event.obj, event.prev):
            if obj is None:
                continue
            if kind == "ReplicaSet":
                keys.update(self._replica_set_keys(obj, event.change))
            else:
                keys.update(self._pod_keys(obj))
        return keys

    def _replica_set_keys(self, rs: Message, change: Change) -> list[str]:
        key = owner_key(rs, "Deployment")
        if key is not None:
            return [key]
        if owners.controller_ref(rs) is not None or change is Change.DELETED:
            return []
        assert self._deployments_by_ns is not None
        m = meta(rs)
        return [
            object_key(d)
            for d in self._deployments_by_ns.in_namespace(m.namespace)
            if d.spec.selector.match_labels or d.spec.selector.match_expressions
            if labels.from_label_selector(d.spec.selector).matches(m.labels)
        ]

    def _pod_keys(self, pod: Message) -> list[str]:
        rs_key = owner_key(pod, "ReplicaSet")
        rs = self._informers["ReplicaSet"].items.get(rs_key) if rs_key else None
        key = owner_key(rs, "Deployment") if rs is not None else None
        return [key] if key is not None else []

    def all_keys(self) -> Iterable[str]:
        return list(self._informers["Deployment"].items)

    # -- sync -------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        d = self._informers["Deployment"].items.get(key)
        if not isinstance(d, workloads_pb2.Deployment):
            self.expectations.forget(key)
            return None
        if not self.expectations.satisfied(key, self._informers):
            return self.expectations.remaining(key)
        assert self._sets_by_ns is not None
        assert self._pods is not None
        sets = self._sets_by_ns.in_namespace(d.metadata.namespace)
        # The pods of the namespace's ReplicaSets (new_plan keeps those of the Deployment's).
        pods = [p for rs in sets for p in self._pods.owned_by(rs.metadata.uid)]
        actions = reconcile_facts(d, sets, pods, now=self.now())
        await self._apply(key, d, actions)
        return actions.requeue_after

    async def _apply(self, key: str, d: workloads_pb2.Deployment, actions: DeploymentActions) -> None:
        written: set[str] = set()
        try:
            await self._apply_writes(key, d, actions, written)
        except asyncio.CancelledError:
            raise
        except Exception:
            await self._record(key, d, [e for e in actions.events if e.replica_set in written])
            raise
        await self._record(key, d, list(actions.events))

    async def _apply_writes(
        self, key: str, d: workloads_pb2.Deployment, actions: DeploymentActions, written: set[str]
    ) -> None:
        """Deletions, scale-downs, creations, other updates, the Deployment, the rollback."""
        for rs in actions.delete:
            await self._delete(key, rs)
        writes = [
            *((rs, False) for rs in actions.scale_down),
            *((rs, True) for rs in actions.create),
            *((rs, False) for rs in actions.update),
        ]
        for rs, create in writes:
            await self._write(key, rs, create=create)
            written.add(rs.metadata.name)
        current = d
        if actions.deployment is not None:
            current = await self._write_deployment(key, actions.deployment)
        if actions.rollback is not None:
            await self._roll_back(key, current, actions.rollback)

    async def _write(self, key: str, rs: workloads_pb2.ReplicaSet, *, create: bool) -> None:
        result = await (self.api.create(rs) if create else self.api.update(rs))
        if not create:
            result = await self._drop_removed_annotations(rs, result)
        self.expectations.wrote(key, "ReplicaSet", meta(result).resource_version)
        log.debug(
            "replica_set_written",
            deployment=key,
            replica_set=rs.metadata.name,
            replicas=rs.spec.replicas,
            created=create,
        )

    async def _drop_removed_annotations(self, rs: workloads_pb2.ReplicaSet, written: Message) -> Message:
        """An update keeps system annotations (`corral.io/…`) it does not name, as apply
        does; the ReplicaSet is this controller's, so the ones it removed (a
        BlueGreen scale-down deadline no longer due) go in a second CAS write."""
        assert isinstance(written, workloads_pb2.ReplicaSet)
        removed = set(written.metadata.annotations) - set(rs.metadata.annotations)
        if not removed:
            return written
        updated = workloads_pb2.ReplicaSet()
        updated.CopyFrom(written)
        for name in removed:
            del updated.metadata.annotations[name]
        log.debug("replica_set_annotations_removed", replica_set=rs.metadata.name, annotations=sorted(removed))
        return await self.api.write(updated)

    async def _delete(self, key: str, rs: workloads_pb2.ReplicaSet) -> None:
        m = rs.metadata
        with contextlib.suppress(NotFoundError):
            await self.api.delete("ReplicaSet", m.namespace, m.name, uid=m.uid)
        self.expectations.deleted(key, "ReplicaSet", object_key(rs), m.uid)
        log.info("replica_set_deleted", deployment=key, replica_set=m.name, reason="revision history limit")

    async def _write_deployment(self, key: str, d: workloads_pb2.Deployment) -> workloads_pb2.Deployment:
        written = await self.api.write(d)
        self.expectations.wrote(key, "Deployment", meta(written).resource_version)
        assert isinstance(written, workloads_pb2.Deployment)
        return written

    async def _roll_back(self, key: str, current: workloads_pb2.Deployment, template: pod_pb2.PodTemplateSpec) -> None:
        """Write `template` (written after the status that explains it). Someone else's
        write in between (a scale) is no reason to lose it: re-read and write again,
        unless the template itself changed, which then wins."""
        rolled_back = current.spec.template
        for _ in range(ROLLBACK_ATTEMPTS):
            updated = workloads_pb2.Deployment()
            updated.CopyFrom(current)
            updated.spec.template.CopyFrom(template)
            try:
                written = await self.api.update(updated)
            except ConflictError:
                latest = await self.api.find(DEPLOYMENT, current.metadata.namespace, current.metadata.name)
                if not isinstance(latest, workloads_pb2.Deployment) or latest.spec.template != rolled_back:
                    log.info("deployment_rollback_superseded", deployment=key)
                    return
                current = latest
                continue
            self.expectations.wrote(key, "Deployment", meta(written).resource_version)
            log.warning("deployment_rolled_back", deployment=key)
            return
        raise ConflictError(f'deployments.apps "{current.metadata.name}": rollback kept conflicting')

    async def _record(self, key: str, d: workloads_pb2.Deployment, events: list[Event]) -> None:
        for event in events:
            name = "replica_set_scaled" if event.reason == "ScalingReplicaSet" else "deployment_event"
            log.info(name, deployment=key, reason=event.reason, message=event.message)
            await self.recorder.record(d, event.type, event.reason, event.message)
