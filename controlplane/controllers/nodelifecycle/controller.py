"""The node lifecycle controller's shell: feeds `reconcile.plan_node` from the
Node and Pod caches and carries out its plan.

One key per node. A sync writes the node (Ready Unknown, health taints) with
a compare-and-swap on the cached version, marks the node's pods not ready,
deletes at once the pods already terminating there (the node cannot confirm
their end), evicts the pods that are due (immediate deletes) and returns the seconds until the node's next
deadline, so the grace period and the tolerations run out on time without any
other event.

A node is heard from through its Lease (kube-node-lease/<node>, renewed on each
heartbeat) or its Ready condition's lastHeartbeatTime, whichever is later, and
is given the grace period or its Lease's leaseDurationSeconds, whichever is
longer (the node API stretches the heartbeat period on large clusters and the
Lease with it). A Lease renewal queues its node only when the node does not
look healthy (not Ready, or tainted NoExecute). A healthy node whose plan does
nothing is not queued again either: its deadline waits in `deadlines`, looked
at by one work queue key (HEARTBEAT_MONITOR) at most every MONITOR_TICK. A node
whose Lease was renewed meanwhile is armed again at its new deadline (no sync);
one that was not gets a full sync, which marks it.

Eviction rates, as Kubernetes (`zones`): giving an unhealthy node its NoExecute
taint — which evicts its pods as their tolerations run out — takes a token from
its zone's bucket, at --node-eviction-rate (0.1 nodes/s), the secondary rate in
a zone that is mostly down, none in a small such zone. Without a token the node
is marked (Ready Unknown, NoSchedule, pods not ready) but keeps its pods, and is
looked at again when the bucket refills. Zone states are recomputed at most
every ZONE_STATE_REFRESH seconds.

Whether the whole cluster is disrupted (no node Ready at all) is worked out
on syncs of unhealthy nodes only — a heartbeat of a Ready node costs no scan
of every node. When that changes, every node is queued again, the change is
logged and recorded as an event on every node.

When a full disruption ends (the first node is Ready again), the others get
a grace period from then before their NoExecute taints come back: their
agents reconnect with a jittered back-off (up to 10 s), so after an outage of
the control plane's own network they come back over several seconds, and the
first one back must not get the pods of the others evicted (found by
`tests/chaos/test_partitions.py`). It is what a restarted control plane gives
every node too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from controlplane.apiserver import errors as api_errors
from controlplane.apiserver.handlers import ObjectApi
from controlplane.clock import utcnow
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.index import discard_from
from controlplane.controllers.nodelifecycle.deadlines import Deadlines
from controlplane.controllers.nodelifecycle.reconcile import (
    Eviction,
    Health,
    NodePlan,
    Settings,
    adds_no_execute,
    grace_deadline,
    node_health,
    plan_node,
    pods_matter,
)
from controlplane.controllers.nodelifecycle.tolerations import DefaultTolerations
from controlplane.controllers.nodelifecycle.zones import EvictionRates, ZoneLimits, ZoneState, zone_of, zone_states
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos import leases
from protos.corral.v1 import node_pb2, pod_pb2

log = structlog.get_logger(__name__)

# Seconds before looking again after a write lost a compare-and-swap race
# (the cache brings the newer object meanwhile).
CONFLICT_RETRY = 0.1
# A requeue lands a little after a deadline, never just before it.
DEADLINE_SLACK = 0.01
# Seconds between recomputations of the zones' states (Kubernetes: every node monitor period, 5 s).
ZONE_STATE_REFRESH = 1.0
# Seconds before looking again at a node whose zone allows no eviction now (rate 0).
ZONE_RECHECK = 5.0
# The work queue key of the healthy nodes' heartbeat deadlines (no node is named "").
HEARTBEAT_MONITOR = ""
# Seconds at least between two looks at the healthy nodes' deadlines: a deadline is caught at most
# this much after it runs out, and a thousand nodes cost at most ten looks a second.
MONITOR_TICK = 0.1


@dataclass(frozen=True)
class HeardFrom:
    """A node's Lease as the lifecycle reads it: its renewTime and leaseDurationSeconds."""

    renewed: datetime | None
    duration: timedelta | None


class NodeLifecycleController:
    name: str = "nodelifecycle"
    kinds: tuple[str, ...] = ("Node", "Pod", "Lease")
    workers: int = 2

    def __init__(
        self,
        api: ObjectApi,
        recorder: EventRecorder,
        *,
        grace: float = 12.0,
        rates: EvictionRates | None = None,
        now: Callable[[], datetime] = utcnow,
        owned_toleration: float = 5.0,
        bare_toleration: float = 300.0,
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.grace = timedelta(seconds=grace)
        self.now = now
        self.tolerations = DefaultTolerations(owned=owned_toleration, bare=bare_toleration)
        # How fast each zone's unhealthy nodes get NoExecute taints.
        self.limits = ZoneLimits(rates or EvictionRates())
        self._zones: dict[str, tuple[ZoneState, int]] = {}
        self._zones_at: datetime | None = None
        # None until the first sync has looked; then whether no node is Ready.
        self.disrupted: bool | None = None
        # Until when nodes keep their NoExecute taints withheld after a full disruption ended.
        self._settling_until: datetime | None = None
        self._started: datetime | None = None
        self._nodes: Informer | None = None
        self._pods: Informer | None = None
        self._leases: Informer | None = None
        self._queue: WorkQueue | None = None
        self._pods_by_node: dict[str, set[str]] = {}
        self._node_of_pod: dict[str, str] = {}
        # The heartbeat deadlines of the nodes that look healthy (see `deadlines`).
        self.deadlines = Deadlines()

    # -- wiring --------------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        self._nodes, self._pods, self._queue = informers["Node"], informers["Pod"], queue
        self._leases = informers.get("Lease")
        self._pods.add_listener(self._index_pod)

    def _index_pod(self, event: CacheEvent) -> None:
        """Keep an index node → pod keys, so a sync reads only its own node's pods."""
        key = object_key(event.obj)
        old = self._node_of_pod.pop(key, None)
        if old is not None:
            discard_from(self._pods_by_node, old, key)
        node = event.obj.spec.node_name if isinstance(event.obj, pod_pb2.Pod) else ""
        if event.change is not Change.DELETED and node:
            self._node_of_pod[key] = node
            self._pods_by_node.setdefault(node, set()).add(key)

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "Node":
            return [event.obj.metadata.name] if isinstance(event.obj, node_pb2.Node) else []
        if kind == "Lease":
            m = event.obj.metadata  # type: ignore[attr-defined]
            if m.namespace != leases.NODE_LEASE_NAMESPACE or event.change is Change.DELETED:
                return []
            return [m.name] if self._pods_matter(m.name) else []
        nodes = {p.spec.node_name for p in (event.obj, event.prev) if isinstance(p, pod_pb2.Pod)}
        return sorted(n for n in nodes if n and self._pods_matter(n))

    def _pods_matter(self, name: str) -> bool:
        """A pod change can alter its node's plan (a Ready node without NoExecute taints: no)."""
        node = self._nodes.items.get(name) if self._nodes is not None else None
        return not isinstance(node, node_pb2.Node) or pods_matter(node)

    def all_keys(self) -> Iterable[str]:
        return list(self._nodes.items) if self._nodes is not None else []

    # -- sync --------------------------------------------------------------------------

    def _settings(self, now: datetime) -> Settings:
        if self._started is None:
            self._started = now
        return Settings(grace=self.grace, not_before=self._started, tolerations=self.tolerations)

    def _heard(self, node: str) -> HeardFrom:
        """When the node's Lease was last renewed and for how long (None: no Lease seen)."""
        if self._leases is None:
            return HeardFrom(None, None)
        lease = self._leases.items.get(leases.node_lease_key(node))
        return HeardFrom(leases.renew_time(lease), leases.duration(lease))

    def _health(self, node: node_pb2.Node, now: datetime, settings: Settings) -> Health:
        heard = self._heard(node.metadata.name)
        return node_health(node, now=now, settings=settings, renewed=heard.renewed, lease_duration=heard.duration)

    def _pods_on(self, node: str) -> list[pod_pb2.Pod]:
        assert self._pods is not None
        items = (self._pods.items.get(k) for k in self._pods_by_node.get(node, ()))
        return [p for p in items if isinstance(p, pod_pb2.Pod)]

    async def sync(self, key: str) -> float | None:
        assert self._nodes is not None
        if key == HEARTBEAT_MONITOR:
            return self.recheck_deadlines()
        node = self._nodes.items.get(key)
        if not isinstance(node, node_pb2.Node):
            self.deadlines.disarm(key)
            return None
        now = self.now()
        settings = self._settings(now)
        heard = self._heard(key)
        renewed, duration = heard.renewed, heard.duration
        disrupted = await self._disruption(self._health(node, now, settings), now, settings)
        settling = self._settling_until is not None and now < self._settling_until
        pods = self._pods_on(key)
        withheld = disrupted or settling
        plan = plan_node(
            node, pods, now=now, settings=settings, disrupted=withheld, renewed=renewed, lease_duration=duration
        )
        rate_wait: float | None = None
        if not withheld and adds_no_execute(node, plan):
            zone = zone_of(node)
            taken, wait, self.limits = self._zone_limits(now, settings).take(zone, now)
            if not taken:
                rate_wait = ZONE_RECHECK if wait is None else wait
                log.info("node_taint_rate_limited", node=key, zone=zone, retry_in=round(rate_wait, 3))
                plan = plan_node(
                    node, pods, now=now, settings=settings, disrupted=True, renewed=renewed, lease_duration=duration
                )
        try:
            if plan.node is not None:
                await self._write_node(plan.node, plan)
            marked = await self._mark_pods(plan, key)
        except api_errors.ConflictError:
            log.debug("node_lifecycle_conflict", node=key)
            return CONFLICT_RETRY
        except api_errors.NotFoundError:
            return None
        await self._force_delete(plan.force_deletions, key)
        await self._evict(plan.evictions, key)
        if healthy(node, plan) and plan.recheck_at is not None:
            self._arm(key, plan.recheck_at, now)
            return None
        self.deadlines.disarm(key)
        delay = self._delay(plan, now, rate_wait, marked)
        if settling and plan.health is not Health.READY:
            assert self._settling_until is not None
            settled = (self._settling_until - now).total_seconds() + DEADLINE_SLACK
            delay = settled if delay is None else min(delay, settled)
        return delay

    # -- the healthy nodes' heartbeat deadlines ---------------------------------------

    def _arm(self, key: str, at: datetime, now: datetime) -> None:
        """Look at a healthy node again at its deadline, through the heartbeat monitor."""
        self.deadlines.arm(key, at)
        if self._queue is not None:
            self._queue.add_after(HEARTBEAT_MONITOR, (at - now).total_seconds() + DEADLINE_SLACK)

    def recheck_deadlines(self) -> float | None:
        """The heartbeat monitor: each healthy node whose deadline ran out is armed again at its
        new one when its Lease was renewed meanwhile, and queued for a full sync otherwise; the
        seconds until the next deadline (at least MONITOR_TICK)."""
        assert self._nodes is not None
        now = self.now()
        settings = self._settings(now)
        for key in self.deadlines.pop_due(now):
            node = self._nodes.items.get(key)
            if not isinstance(node, node_pb2.Node):
                continue
            heard = self._heard(key)
            deadline = grace_deadline(node, settings, heard.renewed, heard.duration)
            if deadline > now and not pods_matter(node):
                self.deadlines.arm(key, deadline)
            elif self._queue is not None:
                self._queue.add(key)
        following = self.deadlines.next_at()
        if following is None:
            return None
        return max(MONITOR_TICK, (following - now).total_seconds() + DEADLINE_SLACK)

    @staticmethod
    def _delay(plan: NodePlan, now: datetime, rate_wait: float | None, marked: bool) -> float | None:
        delays = [CONFLICT_RETRY if not marked else None, rate_wait]
        if plan.recheck_at is not None:
            delays.append(max(0.0, (plan.recheck_at - now).total_seconds()) + DEADLINE_SLACK)
        known = [d for d in delays if d is not None]
        return min(known) if known else None

    # -- zones -------------------------------------------------------------------------

    def _zone_limits(self, now: datetime, settings: Settings) -> ZoneLimits:
        """The limits with each zone's rate as its state now."""
        self._zone_states(now, settings)
        return self.limits

    def _zone_states(self, now: datetime, settings: Settings) -> dict[str, tuple[ZoneState, int]]:
        """Each zone's state and size, recomputed from every node at most every ZONE_STATE_REFRESH
        seconds (a scan of the whole cluster per unhealthy node's sync would cost O(nodes²))."""
        if self._zones_at is not None and 0 <= (now - self._zones_at).total_seconds() < ZONE_STATE_REFRESH:
            return self._zones
        assert self._nodes is not None
        nodes = [n for n in self._nodes.items.values() if isinstance(n, node_pb2.Node)]
        states = zone_states(
            ((n, self._health(n, now, settings)) for n in nodes), self.limits.rates.unhealthy_zone_threshold
        )
        for zone, (state, size) in states.items():
            if self._zones.get(zone, (ZoneState.NORMAL, 0))[0] is not state:
                log.warning("zone_state_changed", zone=zone or "<none>", state=state.value, nodes=size)
        self._zones, self._zones_at = states, now
        self.limits = self.limits.with_states(states)
        return states

    # -- full disruption -------------------------------------------------------------

    async def _disruption(self, health: Health, now: datetime, settings: Settings) -> bool:
        """Whether no node is Ready (every zone fully disrupted); on a change, requeue every node
        and say so."""
        if health is Health.READY:
            disrupted = False
            if self.disrupted:
                self._zones_at = None  # the zones' states are stale: look again at the next one
        else:
            states = self._zone_states(now, settings)
            disrupted = bool(states) and all(state is ZoneState.FULL_DISRUPTION for state, _ in states.values())
        if disrupted == self.disrupted:
            return disrupted
        previous, self.disrupted = self.disrupted, disrupted
        self._settling_until = now + self.grace if previous and not disrupted else None
        if self._queue is not None:
            for key in self.all_keys():
                self._queue.add(key)
        if disrupted or previous is not None:
            await self._announce(disrupted)
        return disrupted

    async def _announce(self, disrupted: bool) -> None:
        assert self._nodes is not None
        nodes = [n for n in self._nodes.items.values() if isinstance(n, node_pb2.Node)]
        if disrupted:
            message = (
                f"No node is ready (all {len(nodes)}): assuming the control plane is the one cut off; "
                "evicting no pods until a node is ready again"
            )
            log.warning("full_disruption_started", nodes=len(nodes))
            reason, type_ = "FullDisruption", "Warning"
        else:
            message = (
                f"A node is ready again: nodes still unreachable get {self.grace.total_seconds():g}s to "
                "reconnect, then their pods are evicted after their tolerations"
            )
            log.info("full_disruption_ended", nodes=len(nodes))
            reason, type_ = "FullDisruptionEnded", "Normal"
        for node in nodes:
            await self.recorder.record(node, type_, reason, message)

    # -- writes ------------------------------------------------------------------------

    async def _write_node(self, node: node_pb2.Node, plan: NodePlan) -> None:
        written = await self.api.write(node)
        name = node.metadata.name
        taints = [f"{t.key}:{t.effect}" for t in node.spec.taints]
        log.info("node_status_updated", node=name, health=plan.health.value, taints=taints)
        if plan.marked_unknown:
            log.warning("node_unreachable", node=name, grace=self.grace.total_seconds())
            await self.recorder.record(written, "Warning", "NodeNotReady", f"Node {name} status is now: NodeNotReady")

    async def _mark_pods(self, plan: NodePlan, node: str) -> bool:
        """Write the pods marked not ready; False if one lost a race (look again soon)."""
        all_written = True
        for pod in plan.pods_not_ready:
            try:
                written = await self.api.update_status(pod)
            except api_errors.ConflictError:
                all_written = False
                continue
            except api_errors.NotFoundError:
                continue
            m = pod.metadata
            log.info("pod_marked_not_ready", pod=f"{m.namespace}/{m.name}", node=node)
            await self.recorder.record(written, "Warning", "NodeNotReady", f"Node {node} is not ready")
        return all_written

    async def _evict(self, due: Iterable[Eviction], node: str) -> None:
        """Delete the pods that are due (the zone's rate limited the node's NoExecute taint)."""
        for eviction in due:
            await self._delete(eviction, node)

    async def _force_delete(self, pods: Iterable[pod_pb2.Pod], node: str) -> None:
        """Delete terminating pods at once: their node cannot confirm that they stopped."""
        for pod in pods:
            m = pod.metadata
            try:
                await self.api.delete("Pod", m.namespace, m.name, uid=m.uid, grace_period_seconds=0)
            except (api_errors.NotFoundError, api_errors.ConflictError):
                continue
            log.warning("terminating_pod_force_deleted", pod=f"{m.namespace}/{m.name}", node=node)
            await self.recorder.record(
                pod,
                "Warning",
                "ForceDeleted",
                f"Deleted pod {m.namespace}/{m.name} at once: it was terminating and "
                f"node {node} is not ready, so cannot confirm that it stopped",
            )

    async def _delete(self, eviction: Eviction, node: str) -> None:
        m = eviction.pod.metadata
        try:
            await self.api.delete("Pod", m.namespace, m.name, uid=m.uid, grace_period_seconds=0)
        except (api_errors.NotFoundError, api_errors.ConflictError):
            return
        log.warning(
            "pod_evicted", pod=f"{m.namespace}/{m.name}", node=node, taint=eviction.taint, toleration=eviction.seconds
        )
        await self.recorder.record(eviction.pod, "Normal", "TaintManagerEviction", eviction.message(node))


def healthy(node: node_pb2.Node, plan: NodePlan) -> bool:
    """Whether only the node's heartbeat deadline can change its plan: it is Ready with no
    NoExecute taint, and the plan writes, marks, evicts and deletes nothing."""
    return (
        plan.health is Health.READY
        and plan.node is None
        and not (plan.pods_not_ready or plan.evictions or plan.force_deletions)
        and not pods_matter(node)
    )
