"""The disruption controller's shell: budgets, their pods and the pods' controllers
from the caches; the status written with a compare-and-swap on the budget.

Keys are `namespace/name` of a PodDisruptionBudget. A budget is synced when it
changes, when a pod it selects (before or after the change) changes, and when
a workload of its namespace with replicas changes (its expected pods). The
workload kinds are every kind in the kinds table whose spec has `replicas`, so
a new one is counted without a change here. A write that loses a race with an
eviction (which decrements the status) is retried from the fresh cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.eviction import selects
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.disruption.reconcile import Scale, budget_status
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.index import NamespaceIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer, object_key
from protos.corral.v1 import meta_pb2, pod_pb2, policy_pb2
from protos.kinds import KINDS, KindInfo, meta
from protos.owners import controller_ref

log = structlog.get_logger(__name__)

BUDGET = "PodDisruptionBudget"
POD = "Pod"
CONFLICT_RETRY = 0.1
UNMANAGED = (
    "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. "
    "As a result, the status of the PDB cannot be calculated correctly, which may result in undefined "
    'behavior. To account for these pods please set ".spec.minAvailable" field of the PDB to an integer value.'
)


def has_scale(info: KindInfo) -> bool:
    """Whether the kind's spec has `replicas` (a controller whose pods a budget can count)."""
    spec = info.message.DESCRIPTOR.fields_by_name.get("spec")
    return spec is not None and spec.message_type is not None and "replicas" in spec.message_type.fields_by_name


SCALE_KINDS: tuple[str, ...] = tuple(k.kind for k in KINDS if has_scale(k))


class DisruptionController:
    name: str = "disruption"
    kinds: tuple[str, ...] = (BUDGET, POD, *SCALE_KINDS)
    workers: int = 2

    def __init__(self, api: ObjectApi, events: EventRecorder, *, now: Callable[[], datetime] = utcnow) -> None:
        self.api = api
        self.events = events
        self.now = now
        self._informers: dict[str, Informer] = {}
        self._budgets: NamespaceIndex[policy_pb2.PodDisruptionBudget] | None = None
        self._pods: NamespaceIndex[pod_pb2.Pod] | None = None

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._informers = {kind: informers[kind] for kind in self.kinds}
        self._budgets = NamespaceIndex(informers[BUDGET], policy_pb2.PodDisruptionBudget)
        self._pods = NamespaceIndex(informers[POD], pod_pb2.Pod)

    def _budgets_in(self, namespace: str) -> list[policy_pb2.PodDisruptionBudget]:
        return self._budgets.in_namespace(namespace) if self._budgets is not None else []

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == BUDGET:
            return [object_key(event.obj)]
        namespace = meta(event.obj).namespace
        if kind != POD:
            return [object_key(b) for b in self._budgets_in(namespace)]
        pods = [p for p in (event.obj, event.prev) if isinstance(p, pod_pb2.Pod)]
        return [object_key(b) for b in self._budgets_in(namespace) if any(selects(b, p) for p in pods)]

    def all_keys(self) -> Iterable[str]:
        return [object_key(b) for b in self._informers[BUDGET].items.values()] if self._informers else []

    async def sync(self, key: str) -> float | None:
        pdb = self._informers[BUDGET].items.get(key)
        if not isinstance(pdb, policy_pb2.PodDisruptionBudget) or self._pods is None:
            return None
        namespace = pdb.metadata.namespace
        pods = [p for p in self._pods.in_namespace(namespace) if selects(pdb, p)]
        scales = {ref.uid: self._scale(namespace, ref) for p in pods if (ref := controller_ref(p)) is not None}
        now = self.now()
        result = budget_status(pdb, pods, scales, now)
        await self._warn(pdb, result.unmanaged, result.failed, bool(pods))
        if result.status != pdb.status:
            updated = policy_pb2.PodDisruptionBudget()
            updated.CopyFrom(pdb)
            updated.status.CopyFrom(result.status)
            try:
                await self.api.update_status(updated)
            except ConflictError:
                return CONFLICT_RETRY
            except NotFoundError:
                return None
            log.info(
                "disruption_budget_synced",
                budget=key,
                healthy=result.status.current_healthy,
                desired=result.status.desired_healthy,
                expected=result.status.expected_pods,
                allowed=result.status.disruptions_allowed,
            )
        return None if result.recheck is None else max(0.0, (result.recheck - now).total_seconds())

    async def _warn(
        self, pdb: policy_pb2.PodDisruptionBudget, unmanaged: list[str], failed: str, any_pods: bool
    ) -> None:
        if failed:
            await self.events.record(
                pdb,
                "Warning",
                "CalculateExpectedPodCountFailed",
                f"Failed to calculate the number of expected pods: {failed}",
            )
        elif not any_pods:
            await self.events.record(pdb, "Normal", "NoPods", "No matching pods found")
        elif unmanaged:
            await self.events.record(pdb, "Warning", "UnmanagedPods", UNMANAGED.format(selector=_selector(pdb)))

    def _scale(self, namespace: str, ref: meta_pb2.OwnerReference) -> Scale | None:
        """The controller behind a pod's controllerRef (its own controller when that has
        replicas: a Deployment above its ReplicaSet), or None when it cannot be found."""
        owner = self._owner(namespace, ref)
        if owner is None:
            return None
        above = controller_ref(owner)
        if above is not None and above.kind in SCALE_KINDS:
            top = self._owner(namespace, above)
            return None if top is None else Scale(meta(top).uid, _replicas(top))
        return Scale(meta(owner).uid, _replicas(owner))

    def _owner(self, namespace: str, ref: meta_pb2.OwnerReference) -> Message | None:
        informer = self._informers.get(ref.kind) if ref.kind in SCALE_KINDS else None
        owner = informer.items.get(f"{namespace}/{ref.name}") if informer is not None else None
        return owner if owner is not None and meta(owner).uid == ref.uid else None


def _replicas(obj: Message) -> int:
    value: int = getattr(getattr(obj, "spec"), "replicas")  # noqa: B009 - every SCALE_KINDS spec has replicas
    return value


def _selector(pdb: policy_pb2.PodDisruptionBudget) -> str:
    sel = pdb.spec.selector
    shown = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
    shown += [f"{e.key} {e.operator.lower()} ({','.join(e.values)})" for e in sel.match_expressions]
    return "&".join(shown) or "<everything>"
