"""The gRPC NodeService: what agents call.

Registration creates or refreshes the Node object, validated as the API
validates a Node, within the node restriction (`restriction`: no labels
reserved to admins, an admin's labels kept). Heartbeats renew the node's Lease
(`protos.leases`, as Kubernetes' node leases) and rewrite the Node only when its
Ready condition must change or was last stamped NODE_STATUS_REFRESH ago. The
renewals of a LEASE_BATCH_WINDOW are written together (`rendezvous`: one etcd
transaction, each a compare-and-swap on its own Lease). The Lease's
leaseDurationSeconds is the larger of the lifecycle controller's grace period
and LEASE_PERIODS heartbeat periods as handed out (stretched on large
clusters), and the controller gives each node that long. Each
agent holds one assignment stream (its authoritative pod set, with the
informer's revision as epoch) and one tunnel; status reports are
compare-and-swap writes of pod status, accepted only for pods bound to the
reporting node. Metrics reports go to the in-memory `MetricsStore`, with only
the usage of pods bound to the reporting node (a report naming another node's
pod is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime

import grpc
import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import (
    AlreadyExistsError,
    ApiError,
    Cause,
    ConflictError,
    InvalidError,
    NotFoundError,
)
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_cidrs import set_pod_cidr
from controlplane.apiserver.status import abort
from controlplane.apiserver.validation import Problems, validate, validate_labels
from controlplane.auth.peer import deny, require_node
from controlplane.clock import utcnow
from controlplane.informer import CacheEvent, Change, Informer
from controlplane.metrics.period import metrics_period
from controlplane.metrics.store import MetricsStore
from controlplane.nodeapi import restriction
from controlplane.nodeapi.assignments import AssignmentIndex, Fingerprint
from controlplane.nodeapi.rendezvous import Rendezvous
from controlplane.nodeapi.volume_reports import VolumeReports
from controlplane.registry.hub import RouteHub
from controlplane.tunnels import TunnelRegistry
from corral.common.logs import clip
from protos import leases
from protos import nodes as nodeutil
from protos import pods as podutil
from protos.conditions import set_condition
from protos.corral.v1 import coordination_pb2, metrics_pb2, node_pb2, node_service_pb2, node_service_pb2_grpc, pod_pb2
from protos.kinds import by_kind, meta
from protos.times import as_datetime

log = structlog.get_logger(__name__)

Context = grpc.aio.ServicerContext[object, object]
CAS_RETRIES = 8
# Heartbeats the control plane takes per second before it stretches the period
# (as Nomad does): 1,000 nodes at 4 s is 250/s; 2,000 nodes get 8 s.
HEARTBEAT_BUDGET_PER_SECOND = 250
# Seconds between rewrites of a healthy node's Ready condition (its lastHeartbeatTime) when
# nothing changes: Kubernetes' nodeStatusReportFrequency. The Lease carries the heartbeats.
NODE_STATUS_REFRESH = 300.0
# Lease duration handed out when none is configured: Kubernetes' 40 s.
DEFAULT_LEASE_DURATION = 40
# A node's Lease lasts at least this many heartbeat periods (as handed out): a stretched period
# on a large cluster must not outlast the node's Lease.
LEASE_PERIODS = 3
# Seconds Lease renewals wait for one another, to be written in one transaction (at 1,000 nodes
# every 4 s, about 50 renewals share one).
LEASE_BATCH_WINDOW = 0.2
# Registrations a replica serves at once; more are refused at once with RESOURCE_EXHAUSTED and the
# agent asks again after a jittered back-off on the same connection. Without a bound, a restarted
# control plane facing 5,000 agents interleaved all their registrations, none finished within the
# agents' 15 s deadline, and every agent reconnected, again and again.
REGISTER_CONCURRENCY = 32
LEASE = by_kind("Lease")
NODE = by_kind("Node")
POD = by_kind("Pod")


def request_label_causes(request: node_service_pb2.RegisterRequest) -> list[Cause]:
    """The API's label rules over the labels a registration asks for (the Node may keep other values)."""
    p = Problems()
    validate_labels(p, "labels", request.labels)
    return p.causes


def set_ready(
    node: node_pb2.Node,
    now: datetime,
    *,
    reason: str = "AgentReady",
    message: str = "corral agent is posting heartbeats",
) -> None:
    """Mark the Ready condition True and stamp the heartbeat time."""
    cond = set_condition(node.status.conditions, nodeutil.NODE_READY, "True", reason=reason, message=message, now=now)
    cond.last_heartbeat_time.FromDatetime(now)


def status_due(node: node_pb2.Node, now: datetime, refresh: float = NODE_STATUS_REFRESH) -> bool:
    """Whether a heartbeat must rewrite the Node: its Ready condition is not the agent's True
    (new, Unknown after a silence, False), or was last stamped `refresh` seconds ago or more."""
    cond = nodeutil.ready_condition(node)
    if cond is None or cond.status != "True" or cond.reason != "AgentReady":
        return True
    stamped = as_datetime(cond.last_heartbeat_time)
    return stamped is None or (now - stamped).total_seconds() >= refresh


class NodeService(node_service_pb2_grpc.NodeServiceServicer):
    def __init__(
        self,
        api: ObjectApi,
        assignments: AssignmentIndex,
        tunnels: TunnelRegistry,
        *,
        heartbeat_period: int = 4,
        lease_duration: int = DEFAULT_LEASE_DURATION,
        lease_batch_window: float = LEASE_BATCH_WINDOW,
        register_concurrency: int = REGISTER_CONCURRENCY,
        status_refresh: float = NODE_STATUS_REFRESH,
        now: Callable[[], datetime] = utcnow,
        routes: RouteHub | None = None,
        metrics: MetricsStore | None = None,
        events: Callable[[Message, str, str, str], Awaitable[None]] | None = None,
        nodes: Informer | None = None,
        share_metrics: Callable[[metrics_pb2.MetricsReport], None] | None = None,
    ) -> None:
        self.api = api
        self.assignments = assignments
        self.tunnels = tunnels
        self.heartbeat_period = heartbeat_period
        # The shortest Lease handed out (the lifecycle controller's grace period).
        self.lease_duration = lease_duration
        # Renewals wait here for one another, then are written together.
        self._lease_batch = Rendezvous(lease_batch_window)
        self.register_concurrency = register_concurrency
        self._registering = 0
        self.status_refresh = status_refresh
        self.now = now
        # Each node's Lease as this replica last wrote it: the next renewal is a CAS over it, with
        # no read (another writer's change fails the CAS and the lease is read again).
        self._leases: dict[str, coordination_pb2.Lease] = {}
        # The serving replica's Node cache: a heartbeat reads the Node from it, not from etcd (a
        # stale copy only delays a due rewrite to the next heartbeat, or fails its CAS).
        self.nodes = nodes
        if nodes is not None:
            nodes.add_listener(self._forget_deleted_node)
        self.connected: set[str] = set()
        self.volume_reports = VolumeReports(api)
        # The service registry's routes, for WatchServices.
        self.routes = routes
        # Where ReportMetrics keeps what agents measure.
        self.metrics = metrics
        # Hands each recorded report to the other replicas (`controlplane.replicas.relay`); never waits.
        self.share_metrics = share_metrics
        # Records an Event (object, type, reason, message): a Node registered without a pod subnet.
        self.events = events

    def _forget_deleted_node(self, event: CacheEvent) -> None:
        """A deleted Node's last Lease is not kept (nodes that come and go by name would grow it)."""
        if event.change is Change.DELETED:
            self._leases.pop(meta(event.obj).name, None)

    def period(self) -> int:
        """The heartbeat period to hand out: the base one, stretched on large clusters."""
        stretched = -(-len(self.connected) // HEARTBEAT_BUDGET_PER_SECOND)
        return max(self.heartbeat_period, stretched)

    def lease_seconds(self) -> int:
        """The leaseDurationSeconds to write: the configured one, or LEASE_PERIODS heartbeat
        periods when longer (the holder is live until renewTime + leaseDurationSeconds)."""
        return max(self.lease_duration, LEASE_PERIODS * self.period())

    # -- registration and heartbeats ----------------------------------------------

    async def Register(
        self, request: node_service_pb2.RegisterRequest, context: Context
    ) -> node_service_pb2.RegisterResponse:
        await require_node(context, request.node_name)
        refused = restriction.registration_causes(request)
        if refused:
            more = f"; and {len(refused) - 5} more" if len(refused) > 5 else ""
            message = "; ".join(str(c) for c in refused[:5]) + more
            log.warning("node_register_refused", node=request.node_name, reason=clip(message, 1024))
            await deny(context, f'node "{request.node_name}" may not set these labels on itself: {message}')
        if self._registering >= self.register_concurrency:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the control plane is registering {self._registering} nodes; ask again after a back-off",
            )
        self._registering += 1
        try:
            node, kept = await self._register(request)
        except ApiError as e:
            await abort(context, e)
        finally:
            self._registering -= 1
        self.volume_reports.forget(request.node_name)
        log.info(
            "node_registered",
            node=request.node_name,
            runtimes=[clip(r) for r in request.status.runtimes[:8]],
            **({"labels_kept": [clip(k) for k in kept]} if kept else {}),
        )
        return node_service_pb2.RegisterResponse(
            node_uid=node.metadata.uid,
            heartbeat_period_seconds=self.period(),
            pod_cidr=node.spec.pod_cidr,
            metrics_period_seconds=self.metrics_period(),
        )

    async def _register(self, request: node_service_pb2.RegisterRequest) -> tuple[node_pb2.Node, list[str]]:
        """Create or refresh the Node (validated as the API validates a Node), with a pod subnet
        (`apiserver.pod_cidrs`) when it has none; with the labels the node asked for that the
        Node keeps with another value."""
        claimed = ""  # a subnet claimed by this call, freed again if no write stores it
        try:
            for _ in range(CAS_RETRIES):
                found = await self.api.find(NODE, "", request.node_name)
                existing = found if isinstance(found, node_pb2.Node) else None
                node = restriction.merged_node(existing, request)
                set_ready(node, self.now())
                causes = request_label_causes(request) or validate(NODE, node)
                if causes:
                    raise InvalidError(NODE.resource, request.node_name, causes)
                if not node.spec.pod_cidr:
                    claimed = claimed or await self.api.pod_cidrs.allocate(request.node_name, request.pod_cidr)
                    set_pod_cidr(node, claimed)
                try:
                    if existing is None:
                        created = await self.api.create(node)
                        assert isinstance(created, node_pb2.Node)
                        result: tuple[node_pb2.Node, list[str]] = (created, [])
                    else:
                        updated = await self.api.write(node)
                        assert isinstance(updated, node_pb2.Node)
                        result = (updated, restriction.labels_kept(existing, request))
                except (ConflictError, AlreadyExistsError):
                    continue
                if claimed and result[0].spec.pod_cidr == claimed:
                    claimed = ""
                    log.info("pod_cidr_allocated", node=request.node_name, pod_cidr=result[0].spec.pod_cidr)
                if not result[0].spec.pod_cidr:
                    await self._no_pod_cidr(result[0])
                return result
            raise ConflictError(f'nodes "{request.node_name}": too many concurrent writers, try again')
        finally:
            if claimed:
                await self.api.pod_cidrs.release(request.node_name, claimed)

    async def _no_pod_cidr(self, node: node_pb2.Node) -> None:
        """Say, on the Node, that the cluster CIDR has no subnet left for it (Kubernetes' reason)."""
        if self.events is not None:
            await self.events(
                node,
                "Warning",
                "CIDRNotAvailable",
                f"no pod subnet left in the cluster CIDR ({self.api.pod_cidrs.range.cidr}, "
                f"{self.api.pod_cidrs.range.count} subnets of /{self.api.pod_cidrs.range.mask_size}): "
                "the node's Docker pods publish their container ports on its addresses instead; "
                "delete a Node or widen --cluster-cidr",
            )

    async def Heartbeat(
        self, request: node_service_pb2.HeartbeatRequest, context: Context
    ) -> node_service_pb2.HeartbeatResponse:
        await require_node(context, request.node_name)
        try:
            await self._heartbeat(request.node_name)
        except ApiError as e:
            await abort(context, e)
        return self._heartbeat_answer()

    async def HeartbeatStream(
        self, request_iterator: AsyncIterator[node_service_pb2.HeartbeatRequest], context: Context
    ) -> AsyncIterator[node_service_pb2.HeartbeatResponse]:
        """Heartbeat for each request of the stream, answered in order; every request names the
        same node, the certificate's."""
        node = ""
        async for request in request_iterator:
            if not node:
                await require_node(context, request.node_name)
                node = request.node_name
            elif request.node_name != node:
                await deny(context, f'a heartbeat stream of node "{node}" cannot speak for "{request.node_name}"')
            try:
                await self._heartbeat(node)
            except ApiError as e:
                await abort(context, e)
            yield self._heartbeat_answer()

    def _heartbeat_answer(self) -> node_service_pb2.HeartbeatResponse:
        return node_service_pb2.HeartbeatResponse(
            heartbeat_period_seconds=self.period(), metrics_period_seconds=self.metrics_period()
        )

    async def _heartbeat(self, name: str) -> None:
        """Renew the node's Lease; rewrite the Node only when its Ready condition is due."""
        for attempt in range(CAS_RETRIES):
            cached = self.nodes.items.get(name) if self.nodes is not None and attempt == 0 else None
            existing = cached if isinstance(cached, node_pb2.Node) else await self.api.find(NODE, "", name)
            if not isinstance(existing, node_pb2.Node):
                self._leases.pop(name, None)
                raise NotFoundError(f'nodes "{name}" not found; register again')
            now = self.now()
            await self._renew_lease(existing, now)
            if not status_due(existing, now, self.status_refresh):
                return
            node = node_pb2.Node()
            node.CopyFrom(existing)
            set_ready(node, now)
            try:
                await self.api.update_status(node)
                return
            except ConflictError:
                continue
        raise ConflictError(f'nodes "{name}": too many concurrent writers, try again')

    async def _renew_lease(self, node: node_pb2.Node, now: datetime) -> None:
        """One CAS write over the Lease as last written here, with the other renewals of the
        batch window; on a conflict (or a first renewal on this replica), read it and try again
        on its own; create it when there is none."""
        name = node.metadata.name
        await self._lease_batch.wait()
        known: coordination_pb2.Lease | None = self._leases.get(name)
        for _ in range(CAS_RETRIES):
            if known is None:
                found = await self.api.find(LEASE, leases.NODE_LEASE_NAMESPACE, name)
                known = found if isinstance(found, coordination_pb2.Lease) else None
            lease = leases.renewed(known, node, now, self.lease_seconds())
            try:
                written = await (self.api.write(lease) if known is not None else self.api.create(lease))
            except (ConflictError, NotFoundError, AlreadyExistsError):
                known = None
                continue
            assert isinstance(written, coordination_pb2.Lease)
            self._leases[name] = written
            return
        self._leases.pop(name, None)
        raise ConflictError(f'leases "{name}": too many concurrent writers, try again')

    # -- assignments --------------------------------------------------------------

    async def WatchAssignments(
        self, request: node_service_pb2.AssignmentsRequest, context: Context
    ) -> AsyncIterator[node_service_pb2.AssignmentSet]:
        """The node's full pod set now, then again whenever it changes."""
        node = request.node_name
        await require_node(context, node)
        await self.assignments.pods.synced.wait()
        event = self.assignments.event_for(node)
        sent: Fingerprint | None = None
        log.info("assignments_stream_opened", node=node)
        self.connected.add(node)
        try:
            while True:
                event.clear()
                current, fingerprint = self.assignments.current(node)
                if fingerprint != sent:
                    yield current
                    sent = fingerprint
                del current  # a copy of each of the node's pods: not kept while the stream waits
                await event.wait()
        finally:
            self.connected.discard(node)
            log.info("assignments_stream_closed", node=node)

    # -- status reports -----------------------------------------------------------

    async def ReportStatus(
        self, request: node_service_pb2.ReportStatusRequest, context: Context
    ) -> node_service_pb2.ReportStatusResponse:
        return await self._report_status(request, context)

    async def StreamStatus(
        self, request_iterator: AsyncIterator[node_service_pb2.ReportStatusRequest], context: Context
    ) -> AsyncIterator[node_service_pb2.ReportStatusResponse]:
        """ReportStatus for each request of the stream, answered in order."""
        async for request in request_iterator:
            yield await self._report_status(request, context)

    async def _report_status(
        self, request: node_service_pb2.ReportStatusRequest, context: Context
    ) -> node_service_pb2.ReportStatusResponse:
        await require_node(context, request.node_name)
        await self._refuse_other_nodes_pods(request, context)
        try:
            await self.volume_reports.record(request, self.now())
            written = await self._write_batched(request.node_name, list(request.pods))
            rest = [r for r in request.pods if r.uid not in written]
            results = await asyncio.gather(*(self._write_status(request.node_name, r) for r in rest))
        except ApiError as e:
            await abort(context, e)
        unknown = [report.uid for report, accepted in zip(rest, results, strict=True) if not accepted]
        return node_service_pb2.ReportStatusResponse(unknown_uids=unknown)

    async def _write_batched(self, node: str, reports: list[node_service_pb2.PodStatusReport]) -> set[str]:
        """Write the status changes the serving informer's cache can vouch for, each a CAS on the
        pod's cached resourceVersion, all issued at once (the store groups them in transactions);
        the uids written.

        A report the cache cannot vouch for (pod not cached, another uid or node, a terminated
        report, or the same status as cached — the cache may lag a newer write) is left to the
        per-pod path, as is a pod whose compare-and-swap failed."""
        cached = self.assignments.pods.items
        batch: list[pod_pb2.Pod] = []
        for report in reports:
            existing = cached.get(f"{report.namespace}/{report.name}")
            if (
                report.terminated
                or not isinstance(existing, pod_pb2.Pod)
                or existing.metadata.uid != report.uid
                or existing.spec.node_name != node
                or existing.status == report.status
            ):
                continue
            pod = pod_pb2.Pod()
            pod.CopyFrom(existing)
            pod.status.CopyFrom(report.status)
            batch.append(pod)
        # Issued together, the store commits them together (with other nodes' reports too).
        results = await asyncio.gather(*(self.api.update_status(p) for p in batch), return_exceptions=True)
        written: set[str] = set()
        for pod, result in zip(batch, results, strict=True):
            if isinstance(result, ConflictError | NotFoundError):
                continue  # it moved: from a fresh read, on the per-pod path
            if isinstance(result, BaseException):
                raise result
            written.add(pod.metadata.uid)
        return written

    async def _refuse_other_nodes_pods(self, request: node_service_pb2.ReportStatusRequest, context: Context) -> None:
        """PERMISSION_DENIED for a report naming a pod bound to another node (node restriction):
        nothing of the report is written."""
        cached = self.assignments.pods.items  # the serving informer's pods: no store read per report
        for report in request.pods:
            await self._refuse_if_elsewhere(
                context,
                request.node_name,
                "status_report_refused",
                "report the status of",
                report.namespace,
                report.name,
                report.uid,
                cached,
            )

    async def _refuse_if_elsewhere(
        self,
        context: Context,
        node: str,
        event: str,
        what: str,
        namespace: str,
        name: str,
        uid: str,
        cached: Mapping[str, Message],
    ) -> None:
        """PERMISSION_DENIED (logged as `event`) when this pod is bound to another node than `node`."""
        elsewhere = restriction.bound_elsewhere(node, namespace, name, uid, cached)
        if elsewhere:
            log.warning(event, node=node, pod=clip(name), namespace=clip(namespace), bound_to=elsewhere)
            await deny(
                context, f'node "{node}" cannot {what} pod {namespace}/{name}, which is bound to node "{elsewhere}"'
            )

    async def _write_status(self, node: str, report: node_service_pb2.PodStatusReport) -> bool:
        """CAS-write one pod's status; False when the pod is gone or not this node's.

        A terminated pod the serving cache shows terminating is deleted at its cached version
        first (no store read per pod of a scale-down); it is read afresh if that version moved."""
        cached = self.assignments.pods.items.get(f"{report.namespace}/{report.name}")
        if (
            report.terminated
            and isinstance(cached, pod_pb2.Pod)
            and cached.metadata.uid == report.uid
            and cached.spec.node_name == node
            and podutil.is_terminating(cached)
        ):
            with contextlib.suppress(ConflictError):
                return await self._delete_terminated(cached)
        for _ in range(CAS_RETRIES):
            existing = await self.api.find(POD, report.namespace, report.name)
            if (
                not isinstance(existing, pod_pb2.Pod)
                or existing.metadata.uid != report.uid
                or existing.spec.node_name != node
            ):
                return False
            if report.terminated and podutil.is_terminating(existing):
                try:
                    return await self._delete_terminated(existing)
                except ConflictError:
                    continue
            if existing.status == report.status:
                return True
            pod = pod_pb2.Pod()
            pod.CopyFrom(existing)
            pod.status.CopyFrom(report.status)
            try:
                await self.api.update_status(pod)
                return True
            except ConflictError:
                continue
            except NotFoundError:
                return False
        return False

    async def _delete_terminated(self, pod: pod_pb2.Pod) -> bool:
        """The node has stopped a terminating pod's containers: delete the object
        (this version of it; gone already is fine)."""
        try:
            await self.api.remove(pod)
        except NotFoundError:
            return False
        log.info(
            "pod_deleted_after_termination",
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            node=pod.spec.node_name,
        )
        return True

    # -- metrics ------------------------------------------------------------------

    def metrics_period(self) -> int:
        """The metrics period to hand out (`controlplane.metrics.period`): 10 s, stretched on large clusters."""
        return metrics_period(len(self.connected))

    async def ReportMetrics(
        self, request: metrics_pb2.MetricsReport, context: Context
    ) -> metrics_pb2.ReportMetricsResponse:
        await require_node(context, request.node_name)
        if self.metrics is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this control plane keeps no metrics")
        report = await self._own_pods_only(request, context)
        self.metrics.record(report, now=time.monotonic())
        if self.share_metrics is not None:
            self.share_metrics(report)
        return metrics_pb2.ReportMetricsResponse()

    async def _own_pods_only(self, request: metrics_pb2.MetricsReport, context: Context) -> metrics_pb2.MetricsReport:
        """The report with only the usage of pods bound to the reporting node (same uid); PERMISSION_DENIED
        when it names a pod bound to another node. Pods the cache does not know as this node's (gone,
        not yet seen, no uid) are left out: their usage would be attributed by name alone."""
        node, cached = request.node_name, self.assignments.pods.items
        for pod in request.pods:
            await self._refuse_if_elsewhere(
                context, node, "metrics_report_refused", "report metrics of", pod.namespace, pod.name, pod.uid, cached
            )
        own = [p for p in request.pods if restriction.bound_here(node, p.namespace, p.name, p.uid, cached)]
        if len(own) == len(request.pods):
            return request
        kept = metrics_pb2.MetricsReport()
        kept.CopyFrom(request)
        del kept.pods[:]
        kept.pods.extend(own)
        return kept

    # -- service routes -----------------------------------------------------------

    async def WatchServices(
        self, request: node_service_pb2.ServicesRequest, context: Context
    ) -> AsyncIterator[node_service_pb2.ServiceRoutes]:
        """Every Service's route at once (full), then the Services that change."""
        await require_node(context, request.node_name)
        if self.routes is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this control plane runs no service registry")
        log.info("services_stream_opened", node=request.node_name)
        try:
            async for message in self.routes.watch():
                yield message
        finally:
            log.info("services_stream_closed", node=request.node_name)

    # -- the tunnel ---------------------------------------------------------------

    async def Tunnel(
        self, request_iterator: AsyncIterator[node_service_pb2.AgentMessage], context: Context
    ) -> AsyncIterator[node_service_pb2.ServerMessage]:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("message") != "hello":
            return
        await require_node(context, first.hello.node_name)
        tunnel = self.tunnels.open(first.hello.node_name)

        async def pump() -> None:
            async for message in request_iterator:
                tunnel.deliver(message)

        reader = asyncio.ensure_future(pump())
        getter: asyncio.Future[node_service_pb2.ServerMessage] | None = None
        try:
            while not reader.done():
                getter = asyncio.ensure_future(tunnel.outgoing.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                else:
                    getter.cancel()
        finally:
            # The stream may end while waiting (the node went away): a pending get would be
            # destroyed pending, one logged error per reconnecting node.
            if getter is not None:
                getter.cancel()
            reader.cancel()
            self.tunnels.close(tunnel)
