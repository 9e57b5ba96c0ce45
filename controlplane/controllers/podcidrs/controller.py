"""The pod subnet repair (leader only): frees pod subnets no Node holds.

A registration claims `<prefix>/allocations/podcidrs/<subnet>` before it
writes its Node, and a deleted Node's key is freed after the delete: a crash
in between (or a Node deleted while the server was down) leaves a key that
no Node holds, its subnet taken for good. One key, `REPAIR`, synced when the
leader starts and every `period` seconds: the keys are listed, then the
Nodes (from the store, not a cache), and `reconcile.repair` says which keys
to free (each by compare-and-swap on the revision listed, so a registration
that renewed the key since keeps it), which Nodes' keys to claim again, and
which clashes to log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import structlog

from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.podcidrs.reconcile import repair
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer
from protos.corral.v1 import node_pb2

log = structlog.get_logger(__name__)

REPAIR = "repair"
DEFAULT_PERIOD = 60.0
# A claim younger than this may still have its Node write on the way: repair leaves it.
DEFAULT_GRACE = 60.0


class PodCidrRepair:
    name: str = "pod-cidr-repair"
    kinds: tuple[str, ...] = ()
    workers: int = 1

    def __init__(
        self,
        api: ObjectApi,
        *,
        period: float = DEFAULT_PERIOD,
        grace: float = DEFAULT_GRACE,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.api = api
        self.period = period
        self.grace = grace
        self.now = now

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del informers, queue

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        del kind, event
        return []

    def all_keys(self) -> Iterable[str]:
        return [REPAIR]

    async def sync(self, key: str) -> float | None:
        del key
        await self.repair()
        return self.period

    async def repair(self) -> None:
        """One pass (see the module docstring)."""
        cidrs = self.api.pod_cidrs
        claims = await cidrs.claims()  # before the Nodes: a Node written since holds a listed key
        stored, _ = await self.api.watch_start("Node")
        held = {
            item.obj.metadata.name: item.obj.spec.pod_cidr for item in stored if isinstance(item.obj, node_pb2.Node)
        }
        plan = repair(held, claims, now=self.now().timestamp(), grace=self.grace)
        for subnet, revision in plan.free:
            if await cidrs.free_claim(subnet, revision):
                log.info("pod_cidr_leak_freed", pod_cidr=subnet, node=claims[subnet].node)
        for subnet, node in plan.claim:
            if await cidrs.claim_for(subnet, node):
                log.info("pod_cidr_restored", pod_cidr=subnet, node=node)
        for subnet, node, owner in plan.clashes:
            log.warning("pod_cidr_clash", pod_cidr=subnet, node=node, claimed_by=owner)
