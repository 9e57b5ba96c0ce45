"""The volume controller's shell: feeds `reconcile` from the claim, volume,
class, pod and node caches and carries out its plans (leader only).

Keys: `claim/<namespace>/<name>`, `volume/<name>` and `class` (the default
StorageClass). A claim is synced when it, a pod using it, its volume or any
class changes; a volume when it or its claim changes. Every write is a
compare-and-swap on the cached version: a conflict requeues the key shortly
(the cache brings the newer object meanwhile).

The default StorageClass `local-path` is created once per leader term when
no class of that name exists (as k3s applies its local-storage manifest at
every start): an admin who deletes it gets it back at the next control plane
start; one who wants none marks it non-default
(`storageclass.kubernetes.io/is-default-class: "false"`), which is kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import AlreadyExistsError, ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.volumes.caches import VOLUME_KINDS, VolumeCaches
from controlplane.controllers.volumes.reconcile import ClaimPlan, Consumer, Event, plan_claim, plan_volume
from controlplane.informer import CacheEvent, Informer
from protos import storage as st
from protos.corral.v1 import node_pb2, pod_pb2, storage_pb2
from protos.pods import is_terminal

log = structlog.get_logger(__name__)

CLASS_KEY = "class"
CONFLICT_RETRY = 0.1


def claim_key(namespace: str, name: str) -> str:
    return f"claim/{namespace}/{name}"


class VolumeController:
    name: str = "volumes"
    kinds: tuple[str, ...] = (*VOLUME_KINDS, "Pod", "Node")
    workers: int = 1

    def __init__(self, api: ObjectApi, recorder: EventRecorder, *, now: Callable[[], datetime] = utcnow) -> None:
        self.api = api
        self.recorder = recorder
        self.now = now
        self._caches: VolumeCaches | None = None
        self._pods: Informer | None = None
        self._nodes: Informer | None = None
        self._class_ensured = False

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._caches = VolumeCaches(*(informers[kind] for kind in VOLUME_KINDS))
        self._pods, self._nodes = informers["Pod"], informers["Node"]

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        obj = event.obj
        if isinstance(obj, storage_pb2.PersistentVolumeClaim):
            keys = [claim_key(obj.metadata.namespace, obj.metadata.name)]
            return keys + ([f"volume/{obj.spec.volume_name}"] if obj.spec.volume_name else [])
        if isinstance(obj, storage_pb2.PersistentVolume):
            keys = [f"volume/{obj.metadata.name}"]
            if obj.spec.HasField("claim_ref"):
                keys.append(claim_key(obj.spec.claim_ref.namespace, obj.spec.claim_ref.name))
            return keys
        if isinstance(obj, storage_pb2.StorageClass):
            return [CLASS_KEY, *self._pending_claims()]
        if isinstance(obj, pod_pb2.Pod):
            pods = [p for p in (obj, event.prev) if isinstance(p, pod_pb2.Pod)]
            return sorted({claim_key(p.metadata.namespace, c) for p in pods for _, c in st.claim_names(p.spec)})
        if isinstance(obj, node_pb2.Node):
            before = (
                event.prev.metadata.annotations.get(st.VOLUME_ROOT) if isinstance(event.prev, node_pb2.Node) else None
            )
            if obj.metadata.annotations.get(st.VOLUME_ROOT) not in (None, before):  # not on every heartbeat
                return self._pending_claims()
        return []

    def _pending_claims(self) -> list[str]:
        if self._caches is None:
            return []
        return [
            claim_key(c.metadata.namespace, c.metadata.name) for c in self._caches.claims() if not c.spec.volume_name
        ]

    def all_keys(self) -> Iterable[str]:
        if self._caches is None:
            return [CLASS_KEY]
        claims = [claim_key(c.metadata.namespace, c.metadata.name) for c in self._caches.claims()]
        volumes = [f"volume/{v.metadata.name}" for v in self._caches.volumes()]
        return [CLASS_KEY, *claims, *volumes]

    async def sync(self, key: str) -> float | None:
        try:
            if key == CLASS_KEY:
                await self._ensure_default_class()
                return None
            kind, _, rest = key.partition("/")
            if kind == "claim":
                namespace, _, name = rest.partition("/")
                return await self._sync_claim(namespace, name)
            return await self._sync_volume(rest)
        except ConflictError:
            return CONFLICT_RETRY

    async def _ensure_default_class(self) -> None:
        assert self._caches is not None
        if self._class_ensured:
            return
        if self._caches.storage_class(st.DEFAULT_CLASS_NAME) is None:
            try:
                await self.api.create(st.default_class())
                log.info("default_storage_class_created", name=st.DEFAULT_CLASS_NAME)
            except AlreadyExistsError:
                pass
        self._class_ensured = True

    def _users(self, claim: storage_pb2.PersistentVolumeClaim) -> list[pod_pb2.Pod]:
        assert self._pods is not None
        pods = (p for p in self._pods.items.values() if isinstance(p, pod_pb2.Pod))
        return st.claim_users(claim, pods)

    def _consumer(self, users: list[pod_pb2.Pod]) -> Consumer | None:
        assert self._nodes is not None
        bound = sorted((p.spec.node_name, p.metadata.name) for p in users if p.spec.node_name and not is_terminal(p))
        if not bound:
            return None
        name = bound[0][0]
        node = self._nodes.items.get(name)
        if not isinstance(node, node_pb2.Node):
            return Consumer(name, {}, "")
        return Consumer(name, dict(node.metadata.labels), node.metadata.annotations.get(st.VOLUME_ROOT, ""))

    async def _sync_claim(self, namespace: str, name: str) -> float | None:
        assert self._caches is not None
        claim = self._caches.claim(namespace, name)
        if claim is None:
            return None
        users = self._users(claim)
        plan = plan_claim(
            claim,
            volumes=self._caches.volumes(),
            classes={c.metadata.name: c for c in self._caches.classes()},
            users=users,
            consumer=self._consumer(users),
            now=self.now(),
        )
        await self._carry_out(claim, plan)
        return plan.retry

    async def _carry_out(self, claim: storage_pb2.PersistentVolumeClaim, plan: ClaimPlan) -> None:
        m = claim.metadata
        if plan.delete:
            try:
                await self.api.delete_version(claim)
            except NotFoundError:
                return
            log.info("claim_deleted", namespace=m.namespace, name=m.name)
            return
        if plan.create is not None:
            with contextlib.suppress(AlreadyExistsError):
                await self.api.create(plan.create)
            log.info("volume_provisioned", namespace=m.namespace, claim=m.name, volume=plan.create.metadata.name)
        if plan.bind_volume is not None:
            await self.api.update_status(plan.bind_volume)
        if plan.claim is not None:
            await self.api.update_status(plan.claim)
            if plan.claim.status.phase == st.BOUND and claim.status.phase != st.BOUND:
                log.info("claim_bound", namespace=m.namespace, name=m.name, volume=plan.claim.spec.volume_name)
        await self._record(claim, plan.events)

    async def _record(self, obj: Message, events: Iterable[Event]) -> None:
        for event in events:
            await self.recorder.record(obj, event.type, event.reason, event.message)

    async def _sync_volume(self, name: str) -> float | None:
        assert self._caches is not None
        pv = self._caches.volume(name)
        if pv is None:
            return None
        claim = None
        if pv.spec.HasField("claim_ref"):
            claim = self._caches.claim(pv.spec.claim_ref.namespace, pv.spec.claim_ref.name)
        plan = plan_volume(pv, claim, now=self.now())
        if plan.remove:
            try:
                await self.api.remove(pv)
            except NotFoundError:
                return None
            log.info("volume_deleted", name=name)
            return None
        if plan.status is not None:
            await self.api.update_status(plan.status)
            log.info("volume_phase", name=name, phase=plan.status.status.phase)
        await self._record(pv, plan.events)
        return None
