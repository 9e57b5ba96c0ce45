"""The object API's behaviour, independent of gRPC: apply, create, update,
get, list, watch and delete over an `ObjectStore`.

Every write is a compare-and-swap; `apply` re-reads and retries on conflict
(its merge is recomputed from the fresh object, so nothing is overwritten
blindly). Store errors become API errors in `_translated`, the one place.

`ObjectApi` is also the one door controllers and the node API have to the
store: besides the user's verbs it has `find`, `write`, `update_status`,
`bind`, `bind_all` and `remove`, which store exactly what they are given (a
compare-and-swap on its resourceVersion, no defaults, validation or
admission: what those writers own) and raise only API errors. The store
handle itself is private; informers read through `ObjectSource`.

Every create, whoever asks (a user, a controller), and every update that adds
to what a quota counts, passes `admission`: LimitRanges fill and bound a new
pod's resources, ResourceQuotas are charged before the write. What it reads
for that (the Namespace, LimitRanges, quotas) comes from `AdmissionReads`: the
serving control plane's watch-fed caches, or the store (`LiveReads`).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import structlog
from google.protobuf.message import Message

from controlplane.apiserver import batch, labels, limits, storage
from controlplane.apiserver.admission import Admission
from controlplane.apiserver.admission_reads import AdmissionReads
from controlplane.apiserver.allocator import ServiceAllocator
from controlplane.apiserver.apply import merge_applied, spec_changed
from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.deletion import IMMORTAL_NAMESPACES, plan_deletion
from controlplane.apiserver.errors import (
    AlreadyExistsError,
    BadRequestError,
    Cause,
    ConflictError,
    FencedError,
    ForbiddenError,
    GoneError,
    InvalidError,
    NotFoundError,
    StorageFullError,
    UnavailableError,
)
from controlplane.apiserver.eviction import check_and_decrement, plan_eviction
from controlplane.apiserver.pod_cidrs import PodCidrs, set_pod_cidr
from controlplane.apiserver.pod_security import ClusterPolicy, enforced_level, pod_spec_of, violations
from controlplane.apiserver.reserved_ports import reserved_port_causes
from controlplane.apiserver.service_ranges import keep_allocated, node_address_ports
from controlplane.apiserver.validation import validate, validate_update
from controlplane.clock import utcnow
from controlplane.store import errors as store_errors
from controlplane.store.base import MAX_BATCH
from controlplane.store.objects import Change, ObjectStore
from protos import quota
from protos.corral.v1 import (
    batch_pb2,
    namespace_pb2,
    node_pb2,
    pod_pb2,
    policy_pb2,
    quota_pb2,
    service_pb2,
    storage_pb2,
    workloads_pb2,
)
from protos.kinds import KindInfo, UnknownKindError, by_kind, info_of, meta, resolve
from protos.pods import is_terminating
from protos.storage import claim_users, has_class
from protos.wellknown import DEFAULT_NAMESPACE

log = structlog.get_logger(__name__)

DEFAULT_PAGE = 500
MAX_PAGE = 5000
# Keep a List response well under gRPC's 4 MiB default receive cap.
MAX_PAGE_BYTES = 2 * 1024 * 1024
APPLY_RETRIES = 8
# The most pods `ObjectApi.bind_all` binds in one transaction.
BIND_BATCH = MAX_BATCH


Objects = list[Message]  # named here because ObjectApi.list shadows `list` in its body


class ApplyOutcome(Enum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ListResult:
    items: Objects
    resource_version: int
    continue_token: str


@dataclass(frozen=True)
class WatchItem:
    change: Change
    obj: Message


WatchItems = list[WatchItem]


def kind_info(kind: str) -> KindInfo:
    try:
        return resolve(kind)
    except UnknownKindError as e:
        raise BadRequestError(str(e)) from e


def parse_selector(text: str) -> labels.Selector:
    try:
        return labels.parse(text)
    except labels.SelectorError as e:
        raise BadRequestError(f"invalid label selector: {e}") from e


@contextmanager
def _translated(info: KindInfo, name: str) -> Iterator[None]:
    """Map storage errors to API errors, with kubectl-style messages."""
    what = f'{info.plural}{"." + info.group if info.group else ""} "{name}"'
    try:
        yield
    except store_errors.NotFoundError as e:
        raise NotFoundError(f"{what} not found") from e
    except store_errors.AlreadyExistsError as e:
        raise AlreadyExistsError(f"{what} already exists") from e
    except store_errors.ConflictError as e:
        raise ConflictError(
            f"Operation cannot be fulfilled on {what}: the object has been modified; "
            "please apply your changes to the latest version and try again"
        ) from e
    except store_errors.CompactedError as e:
        raise GoneError(
            f"resourceVersion {e.requested_revision} is too old (compacted at {e.compact_revision}); list again"
        ) from e
    except store_errors.WatchOverflowError as e:
        raise GoneError(str(e)) from e
    except store_errors.DatabaseFullError as e:
        raise StorageFullError(str(e)) from e
    except store_errors.FencedError as e:
        raise FencedError(str(e)) from e
    except store_errors.StoreError as e:
        if e.temporary:
            raise UnavailableError(f"storage unavailable: {e}") from e
        raise


def keep_replicas(manifest: Message, existing: Message, prepared: Message) -> None:
    """A Deployment, ReplicaSet or StatefulSet manifest without `spec.replicas` leaves the stored
    count alone (an autoscaler, or `corral scale`, owns it), as `kubectl apply` does."""
    scalable = workloads_pb2.Deployment | workloads_pb2.ReplicaSet | workloads_pb2.StatefulSet
    if (
        isinstance(manifest, scalable)
        and isinstance(existing, scalable)
        and isinstance(prepared, scalable)
        and not manifest.spec.HasField("replicas")
    ):
        prepared.spec.replicas = existing.spec.replicas


def listen_port_clashes(service: service_pb2.Service, others: Iterable[service_pb2.Service]) -> list[Cause]:
    """A LoadBalancer Service's ports on node addresses that another LoadBalancer Service has.

    Every node serves a LoadBalancer Service's ports on its addresses (as k3s'
    ServiceLB), across namespaces. (nodePorts are claimed in the store by the
    allocator; ClusterIP ports can repeat freely.) Ports the stored version of
    `service` has already are not checked again: when two Services that clash
    were written concurrently, both can still be re-applied (the node proxies
    serve the older one).
    """
    key = (service.metadata.namespace, service.metadata.name)
    had: set[int] = set()
    used: dict[int, str] = {}
    for other in sorted(others, key=lambda s: (s.metadata.namespace, s.metadata.name)):
        ports = {port for port, _ in node_address_ports(other) if port not in {p.node_port for p in other.spec.ports}}
        if (other.metadata.namespace, other.metadata.name) == key:
            had = ports
            continue
        for listen in ports:
            used.setdefault(listen, f"{other.metadata.namespace}/{other.metadata.name}")
    causes = []
    for port, field in node_address_ports(service):
        if field.endswith(".port") and port in used and port not in had:
            causes.append(
                Cause(
                    field,
                    f"port {port} is already used on the nodes' addresses by LoadBalancer Service {used[port]}",
                )
            )
    return causes


def encode_continue(revision: int, last_key: str) -> str:
    raw = json.dumps({"r": revision, "k": last_key}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[int, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["r"]), str(data["k"])
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise BadRequestError(f'invalid continue token "{token[:40]}"') from e


# Names made from generateName: Kubernetes' alphabet (no vowels, no 0/1/3:
# no words, no look-alikes), 5 characters: 27^5 = 14.3 million suffixes. A
# clash with an existing object is retried with a fresh suffix, as the
# Kubernetes API server does since 1.30 (without it, one in three 1,000-pod
# scale-ups hit a clash and the ReplicaSet's slow start stopped for a retry).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NAME_SUFFIX_LENGTH = 5
GENERATE_NAME_ATTEMPTS = 8
# As Kubernetes' name generator: generateName is cut to 58 characters before the suffix, so a
# generated name stays within 63 (a DaemonSet of a 250-character name still gets its pods).
MAX_GENERATED_BASE = 63 - NAME_SUFFIX_LENGTH


def random_name_suffix() -> str:
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(NAME_SUFFIX_LENGTH))


def generated_name(generate_name: str, suffix: str) -> str:
    return f"{generate_name[:MAX_GENERATED_BASE]}{suffix}"


class ObjectApi:
    """What the ObjectService does, as plain async methods."""

    def __init__(
        self,
        objects: ObjectStore,
        *,
        now: Callable[[], datetime] = utcnow,
        new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
        policy: ClusterPolicy | None = None,
        name_suffix: Callable[[], str] = random_name_suffix,
        reserved_ports: Callable[[], Awaitable[Mapping[int, str]]] | None = None,
        admission_reads: AdmissionReads | None = None,
        allocator: ServiceAllocator | None = None,
        pod_cidrs: PodCidrs | None = None,
    ) -> None:
        self._objects = objects
        # Services' clusterIPs and nodePorts, claimed in the store.
        self.allocator = allocator or ServiceAllocator(objects.store, objects.prefix)
        # Nodes' pod subnets: claimed at registration (NodeService), freed here when a Node is deleted.
        self.pod_cidrs = pod_cidrs or PodCidrs(objects.store, objects.prefix)
        # The control plane's own ports (port → its use), which no Service may take; None: not checked.
        self.reserved_ports = reserved_ports
        self.name_suffix = name_suffix
        # The cluster policy users' pods are held to; None: none (the controllers' own writes).
        self.policy = policy
        self.now = now
        self.new_uid = new_uid
        # LimitRanges and ResourceQuotas, for every create (the controllers' too); None: read from the store.
        self._admission = Admission(objects, lambda: self.now(), admission_reads)
        self._reads = self._admission.reads

    # -- preparing objects ----------------------------------------------------

    def _prepared(self, obj: Message, *, need_name: bool = True) -> tuple[KindInfo, Message]:
        info = info_of(obj)
        prepared = type(obj)()
        prepared.CopyFrom(obj)
        apply_defaults(info, prepared)
        m = meta(prepared)
        if not m.name and m.generate_name and not need_name:
            m.name = generated_name(m.generate_name, self.name_suffix())
        causes = validate(info, prepared)
        if causes:
            raise InvalidError(info.resource, m.name, causes)
        return info, prepared

    def _stamp_new(self, info: KindInfo, obj: Message) -> None:
        m = meta(obj)
        m.uid = self.new_uid()
        m.resource_version = ""
        m.generation = 1
        m.creation_timestamp.FromDatetime(self.now().replace(microsecond=0))
        m.ClearField("deletion_timestamp")
        m.ClearField("deletion_grace_period_seconds")
        if info.kind not in ("Node", "Event") and obj.DESCRIPTOR.fields_by_name.get("status"):
            obj.ClearField("status")
        if isinstance(obj, pod_pb2.Pod):
            obj.status.phase = "Pending"
        if isinstance(obj, namespace_pb2.Namespace):
            obj.status.phase = "Active"
        if isinstance(obj, storage_pb2.PersistentVolumeClaim | storage_pb2.PersistentVolume):
            obj.status.phase = "Pending"  # the volume controller binds (a volume: makes it Available)

    async def _check_listen_ports(self, info: KindInfo, obj: Message) -> None:
        """Refuse a Service on a control plane port, or whose listen port an older Service already has."""
        if not isinstance(obj, service_pb2.Service):
            return
        with _translated(info, ""):
            reserved = await self.reserved_ports() if self.reserved_ports is not None else {}
            services, _ = await self._objects.list_all(info)
        causes = reserved_port_causes(obj, reserved)
        causes += listen_port_clashes(obj, [s for s in services if isinstance(s, service_pb2.Service)])
        if causes:
            raise InvalidError(info.resource, obj.metadata.name, causes)

    async def _namespace_of(self, info: KindInfo, obj: Message) -> Message | None:
        """The Namespace object a namespaced object lives in, if one exists (corral lets
        objects live in a namespace that has none). One a cache knows as Terminating is read
        again from the store: a refusal is never decided on a stale cache."""
        if not info.namespaced:
            return None
        namespace = meta(obj).namespace
        with _translated(by_kind("Namespace"), namespace):
            found = await self._reads.namespace(namespace)
            if found is not None and is_terminating(found):
                found = await self._reads.namespace(namespace, live=True)
        return found

    def _needs_namespace(self, obj: Message) -> bool:
        """Whether the pod security check of `obj` reads its namespace's labels."""
        return self.policy is not None and pod_spec_of(obj) is not None

    def _pod_security(self, obj: Message, found: Message | None) -> list[Cause]:
        """What the object's pod spec asks for that its namespace's level (or the cluster's) forbids."""
        if self.policy is None or pod_spec_of(obj) is None:
            return []
        labels_ = meta(found).labels if found is not None else None
        return violations(self.policy, enforced_level(self.policy, meta(obj).namespace, labels_), obj)

    @staticmethod
    def _check_not_terminating(info: KindInfo, obj: Message, found: Message | None) -> None:
        """Refuse new content in a namespace being deleted, as Kubernetes' NamespaceLifecycle does."""
        if found is not None and is_terminating(found):
            raise ForbiddenError(
                f"{info.plural}{'.' + info.group if info.group else ''}",
                meta(obj).name or meta(obj).generate_name,
                f"unable to create new content in namespace {meta(obj).namespace} because it is being terminated",
            )

    def _check_pod_security(self, info: KindInfo, causes: list[Cause], existing: Message | None, new: Message) -> None:
        """Refuse a pod spec its level forbids, unless an update leaves the stored pod spec as it was
        (as Kubernetes exempts such updates: labels, replicas)."""
        if not causes:
            return
        if existing is not None and pod_spec_of(existing) == pod_spec_of(new):
            return
        raise InvalidError(info.resource, meta(new).name, causes)

    # -- writes ---------------------------------------------------------------

    async def create(self, obj: Message, *, dry_run: bool = False) -> Message:
        info, prepared = self._prepared(obj, need_name=False)
        namespace = await self._namespace_of(info, prepared)
        self._check_not_terminating(info, prepared, namespace)
        await self._default_class(prepared)
        self._check_pod_security(info, self._pod_security(prepared, namespace), None, prepared)
        await self._check_listen_ports(info, prepared)
        m = meta(prepared)
        if meta(obj).name or not m.generate_name:
            return await self._insert(info, prepared, dry_run=dry_run)
        for _ in range(GENERATE_NAME_ATTEMPTS - 1):
            try:
                return await self._insert(info, prepared, dry_run=dry_run)
            except AlreadyExistsError:
                log.info("generated_name_taken", kind=info.kind, namespace=m.namespace, name=m.name)
                m.name = generated_name(m.generate_name, self.name_suffix())
        return await self._insert(info, prepared, dry_run=dry_run)

    async def _insert(self, info: KindInfo, prepared: Message, *, dry_run: bool) -> Message:
        """Store an already defaulted and validated object as a new one."""
        new = type(prepared)()
        new.CopyFrom(prepared)
        self._stamp_new(info, new)
        if isinstance(new, batch_pb2.Job):
            batch.generate_selector(new)
        m = meta(new)
        with _translated(info, m.name):
            if dry_run and await self._objects.get(info, m.namespace, m.name) is not None:
                raise store_errors.AlreadyExistsError(m.name)
            await self._admission.limit(info, new)
            if isinstance(new, service_pb2.Service):
                self.allocator.check(new)
            await self._claim_pod_cidr(None, new, dry_run=dry_run)
            charged = await self._admission.charge(info, new, None, dry_run=dry_run)
            if dry_run:
                return new
            try:
                claimed = None
                if isinstance(new, service_pb2.Service):
                    claimed, _ = await self.allocator.claim(None, new)
                try:
                    created = await self._objects.create(new)
                except BaseException:
                    if claimed is not None:
                        await self.allocator.release(claimed)
                    raise
            except Exception:
                await self._admission.refund(charged)
                raise
        self._wrote(created)
        log.info("object_created", kind=info.kind, namespace=m.namespace, name=m.name)
        return created

    async def _replace(self, info: KindInfo, existing: Message, merged: Message) -> Message:
        """Store `merged` over `existing` (a compare-and-swap), charged to the quotas for what it adds."""
        await self._claim_pod_cidr(existing, merged)
        charged = await self._admission.charge(info, merged, existing, dry_run=False)
        try:
            if isinstance(merged, service_pb2.Service) and isinstance(existing, service_pb2.Service):
                updated = await self._replace_service(existing, merged)
            else:
                updated = await self._objects.update(merged)
        except Exception:
            await self._admission.refund(charged)
            raise
        self._wrote(updated)
        return updated

    async def _claim_pod_cidr(self, existing: Message | None, new: Message, *, dry_run: bool = False) -> None:
        """A Node's spec.podCIDR that the write gives (not kept from `existing`): one of the cluster
        CIDR's subnets, claimed for the node as registration claims it (a claim it already holds
        is kept), so no other node gets it. Every node routes that subnet to this node. A claim
        made for a write that then fails stays the node's, and is given back at its registration."""
        if not isinstance(new, node_pb2.Node) or not new.spec.pod_cidr:
            return
        if isinstance(existing, node_pb2.Node) and existing.spec.pod_cidr == new.spec.pod_cidr:
            return
        cidrs, name, subnet = self.pod_cidrs, new.metadata.name, new.spec.pod_cidr
        if not cidrs.range.holds(subnet):
            why = f"must be one of the cluster CIDR {cidrs.range.cidr}'s /{cidrs.range.mask_size} subnets"
            raise InvalidError("nodes", name, [Cause("spec.podCIDR", f'{why}, got "{subnet[:64]}"')])
        if dry_run:
            return
        got = await cidrs.allocate(name, subnet)
        if got != subnet:
            await cidrs.release(name, got)
            owner = (await cidrs.listed()).get(subnet) or "another node"
            raise InvalidError("nodes", name, [Cause("spec.podCIDR", f"{subnet} is the pod subnet of {owner}")])

    def _wrote(self, obj: Message, revision: int = 0) -> None:
        """Tell the admission reads of a write by this replica (at the object's resourceVersion)."""
        self._reads.wrote(obj, revision or int(meta(obj).resource_version or 0))

    async def _replace_service(self, existing: service_pb2.Service, merged: service_pb2.Service) -> Message:
        """Claim the clusterIP and nodePorts `merged` adds, write it, then free what it no longer holds."""
        claimed, plan = await self.allocator.claim(existing, merged)
        try:
            stored = await self._objects.update(merged)
        except BaseException:
            await self.allocator.release(claimed)
            raise
        if plan.free_ip or plan.free_node_ports:
            await self.allocator.free(existing, [plan.free_ip], plan.free_node_ports)
        return stored

    async def update(self, obj: Message, *, dry_run: bool = False) -> Message:
        """Replace spec, labels and annotations if resourceVersion is current."""
        info, prepared = self._prepared(obj)
        m = meta(prepared)
        if not m.resource_version:
            raise BadRequestError("update needs metadata.resourceVersion (use apply to overwrite)")
        await self._check_listen_ports(info, prepared)
        namespace = await self._namespace_of(info, prepared) if self._needs_namespace(prepared) else None
        security = self._pod_security(prepared, namespace)
        with _translated(info, m.name):
            existing = await self._objects.get(info, m.namespace, m.name)
            if existing is None:
                raise store_errors.NotFoundError(m.name)
            if meta(existing).resource_version != m.resource_version:
                raise store_errors.ConflictError(m.name, int(m.resource_version), int(meta(existing).resource_version))
            merged = self._merged(info, existing, prepared)
            self._check_pod_security(info, security, existing, merged)
            if dry_run:
                await self._admission.charge(info, merged, existing, dry_run=True)
                return merged
            return await self._replace(info, existing, merged)

    async def apply(self, obj: Message, *, dry_run: bool = False) -> tuple[Message, ApplyOutcome]:
        info, prepared = self._prepared(obj)
        m = meta(prepared)
        await self._check_listen_ports(info, prepared)
        namespace = await self._namespace_of(info, prepared)
        security = self._pod_security(prepared, namespace)
        for _ in range(APPLY_RETRIES):
            with _translated(info, m.name):
                existing = await self._objects.get(info, m.namespace, m.name)
                if existing is None:
                    self._check_not_terminating(info, prepared, namespace)
                    await self._default_class(prepared)  # at create only, as Kubernetes' admission
                    self._check_pod_security(info, security, None, prepared)
                    try:
                        return await self._insert(info, prepared, dry_run=dry_run), ApplyOutcome.CREATED
                    except AlreadyExistsError:
                        continue
                keep_replicas(obj, existing, prepared)
                merged = self._merged(info, existing, prepared)
                self._check_pod_security(info, security, existing, merged)
                if merged == existing:
                    return existing, ApplyOutcome.UNCHANGED
                if dry_run:
                    await self._admission.charge(info, merged, existing, dry_run=True)
                    return merged, ApplyOutcome.CONFIGURED
                try:
                    updated = await self._replace(info, existing, merged)
                except store_errors.ConflictError:
                    continue
            log.info("object_configured", kind=info.kind, namespace=m.namespace, name=m.name)
            return updated, ApplyOutcome.CONFIGURED
        raise ConflictError(f'{info.resource} "{m.name}": too many concurrent writers, try again')

    def _merged(self, info: KindInfo, existing: Message, prepared: Message) -> Message:
        merged = merge_applied(existing, prepared)
        if isinstance(existing, service_pb2.Service) and isinstance(merged, service_pb2.Service):
            keep_allocated(existing, merged)
        if isinstance(existing, node_pb2.Node) and isinstance(merged, node_pb2.Node) and not merged.spec.pod_cidr:
            set_pod_cidr(merged, existing.spec.pod_cidr)  # the control plane's, kept as a Service's clusterIP
        causes = validate_update(info, existing, merged)
        if causes:
            raise InvalidError(info.resource, meta(prepared).name, causes)
        if spec_changed(existing, merged):
            meta(merged).generation = meta(existing).generation + 1
        return merged

    async def delete(
        self, kind: str, namespace: str, name: str, *, uid: str = "", grace_period_seconds: int | None = None
    ) -> Message:
        """Delete an object; with `uid`, only that incarnation of the name.

        A pod a node may be running is deleted gracefully (see `deletion`): it
        is marked terminating and returned as marked; its node deletes it once
        its containers have stopped. `grace_period_seconds` (pods only; None:
        the pod's terminationGracePeriodSeconds) 0 deletes it at once.

        Status writes by controllers and agents do not make a delete fail: the
        object is re-read and the delete retried, as long as the uid holds.
        """
        info = kind_info(kind)
        namespace = self._namespace(info, namespace)
        if grace_period_seconds is not None and (problem := limits.seconds_problem(grace_period_seconds)):
            raise BadRequestError(f"gracePeriodSeconds {problem}")
        if info.kind == "Namespace" and name in IMMORTAL_NAMESPACES:
            raise ForbiddenError(info.plural, name, "this namespace may not be deleted")
        for _ in range(APPLY_RETRIES):
            with _translated(info, name):
                existing = await self._objects.get(info, namespace, name)
                if existing is None:
                    raise store_errors.NotFoundError(name)
                if uid and meta(existing).uid != uid:
                    raise store_errors.ConflictError(name, 0, 0)
                try:
                    return await self._delete_version(existing, grace_period_seconds)
                except store_errors.ConflictError:
                    continue
        raise ConflictError(f'{info.resource} "{name}": too many concurrent writers, try again')

    async def evict(
        self, namespace: str, name: str, *, uid: str = "", grace_period_seconds: int | None = None
    ) -> Message:
        """Delete a pod as `delete` does, unless its PodDisruptionBudget does not allow it now
        (TooManyRequestsError; the rules are in `eviction`). The budget's disruption is taken
        with a compare-and-swap on the budget (a concurrent eviction or controller write
        re-reads both and decides again) before the pod is deleted."""
        info, budgets_info = by_kind("Pod"), by_kind("PodDisruptionBudget")
        namespace = namespace or DEFAULT_NAMESPACE
        if grace_period_seconds is not None and (problem := limits.seconds_problem(grace_period_seconds)):
            raise BadRequestError(f"gracePeriodSeconds {problem}")
        for _ in range(APPLY_RETRIES):
            with _translated(info, name):
                pod = await self._objects.get(info, namespace, name)
                if not isinstance(pod, pod_pb2.Pod):
                    raise store_errors.NotFoundError(name)
                if uid and pod.metadata.uid != uid:
                    raise store_errors.ConflictError(name, 0, 0)
                budgets, _ = await self._objects.list_all(budgets_info, namespace)
            plan = plan_eviction(pod, [b for b in budgets if isinstance(b, policy_pb2.PodDisruptionBudget)])
            if plan.budget is not None:
                taken = check_and_decrement(plan.budget, name, self.now())
                try:
                    with _translated(budgets_info, plan.budget.metadata.name):
                        await self._objects.update(taken)
                except ConflictError:
                    continue
                log.info("disruption_budget_taken", namespace=namespace, pod=name, budget=taken.metadata.name)
            elif plan.exact_version:
                try:
                    return await self.delete_version(pod, grace_period_seconds=grace_period_seconds)
                except ConflictError:
                    continue
            log.info("pod_evicted", namespace=namespace, name=name)
            return await self.delete(
                "Pod", namespace, name, uid=pod.metadata.uid, grace_period_seconds=grace_period_seconds
            )
        raise ConflictError(f'{info.resource} "{name}": too many concurrent writers, try again')

    async def delete_version(self, obj: Message, *, grace_period_seconds: int | None = None) -> Message:
        """Delete exactly this version of an object (a compare-and-swap on its
        resourceVersion), gracefully for a pod a node may be running.

        Returns the object deleted, or the pod as marked terminating. Raises
        ConflictError when the object changed since it was read, and
        NotFoundError when it is gone: for controllers, which re-read.
        """
        with _translated(info_of(obj), meta(obj).name):
            return await self._delete_version(obj, grace_period_seconds)

    async def _delete_version(self, obj: Message, grace_period_seconds: int | None) -> Message:
        info, m = info_of(obj), meta(obj)
        in_use = isinstance(obj, storage_pb2.PersistentVolumeClaim) and await self._claim_in_use(obj)
        plan = plan_deletion(obj, grace_period_seconds, self.now(), in_use=in_use)
        if plan.refused:
            raise ConflictError(f'Operation cannot be fulfilled on {info.plural} "{m.name}": {plan.refused}')
        if plan.now:
            self._wrote(obj, await self._objects.delete(obj))
            log.info("object_deleted", kind=info.kind, namespace=m.namespace, name=m.name)
            await self._free_allocations(obj)
            return obj
        if plan.update is None:
            return obj
        marked = await self._objects.update(plan.update)
        self._wrote(marked)
        if isinstance(plan.update, namespace_pb2.Namespace):
            log.info("namespace_terminating", name=m.name)
        elif isinstance(plan.update, pod_pb2.Pod):
            log.info(
                "pod_terminating",
                namespace=m.namespace,
                name=m.name,
                node=plan.update.spec.node_name,
                grace=plan.update.metadata.deletion_grace_period_seconds,
            )
        else:
            log.info("object_terminating", kind=info.kind, namespace=m.namespace, name=m.name)
        return marked

    async def _claim_in_use(self, claim: storage_pb2.PersistentVolumeClaim) -> bool:
        """Whether a pod that has not finished uses the claim (Kubernetes' pvc-protection)."""
        pods, _ = await self._objects.list_all(by_kind("Pod"), claim.metadata.namespace)
        return claim_users(claim, (p for p in pods if isinstance(p, pod_pb2.Pod))) != []

    async def _default_class(self, obj: Message) -> None:
        """A claim without storageClassName gets the default StorageClass, if there is one
        (Kubernetes' DefaultStorageClass admission); "" means no class and stays."""
        if not isinstance(obj, storage_pb2.PersistentVolumeClaim) or has_class(obj):
            return
        info = by_kind("StorageClass")
        with _translated(info, ""):
            classes, _ = await self._objects.list_all(info)
        name = storage.default_class_name(c for c in classes if isinstance(c, storage_pb2.StorageClass))
        if name is not None:
            obj.spec.storage_class_name = name

    # -- the controllers' and the node API's writes ------------------------------
    # Stored as given: the writer owns defaults and validity (status, bindings,
    # conditions, its own objects); each is a compare-and-swap on the object's
    # resourceVersion, so a stale read fails with ConflictError (re-read, retry).

    async def find(self, info: KindInfo, namespace: str, name: str) -> Message | None:
        """The stored object, or None: no NotFoundError, no namespace default."""
        with _translated(info, name):
            return await self._objects.get(info, namespace, name)

    async def write(self, obj: Message) -> Message:
        """Store this object over the version it was read at (its resourceVersion)."""
        with _translated(info_of(obj), meta(obj).name):
            return await self._objects.update(obj)

    async def update_status(self, obj: Message) -> Message:
        """`write`, for a change to status (phase, conditions) by the object's controller or node."""
        return await self.write(obj)

    async def bind(self, pod: pod_pb2.Pod) -> pod_pb2.Pod:
        """Store the scheduler's binding of a pod (spec.nodeName, PodScheduled)."""
        bound = await self.write(pod)
        assert isinstance(bound, pod_pb2.Pod)
        return bound

    async def bind_all(self, pods: Sequence[pod_pb2.Pod]) -> list[pod_pb2.Pod]:
        """`bind` for up to BIND_BATCH pods in one transaction: all or none
        (ConflictError when any of them moved or is gone)."""
        if len(pods) > BIND_BATCH:
            raise ValueError(f"bind_all takes at most {BIND_BATCH} pods, not {len(pods)}")
        with _translated(by_kind("Pod"), ""):
            written = await self._objects.update_many(pods)
        return [p for p in written if isinstance(p, pod_pb2.Pod)]

    async def remove(self, obj: Message) -> None:
        """Delete exactly this version of an object now: no grace period (see `delete_version`)."""
        with _translated(info_of(obj), meta(obj).name):
            await self._objects.delete(obj)
            await self._free_allocations(obj)

    async def _free_allocations(self, obj: Message) -> None:
        """What a deleted object held: a Service's clusterIP and nodePorts, a Node's pod subnet."""
        if isinstance(obj, service_pb2.Service):
            await self.allocator.free_all(obj)
        elif isinstance(obj, node_pb2.Node):
            await self.pod_cidrs.free(obj)

    async def quota_usage(self, rq: quota_pb2.ResourceQuota) -> quota.Usage:
        """What the quota's namespace uses of each of its hard resources, counted from the stored
        objects now (the resource quota controller's recount; read the quota first)."""
        with _translated(by_kind("ResourceQuota"), rq.metadata.name):
            return await self._admission.usage(rq)

    # -- reads ----------------------------------------------------------------

    @staticmethod
    def _namespace(info: KindInfo, namespace: str) -> str:
        if not info.namespaced:
            return ""
        return namespace or DEFAULT_NAMESPACE

    async def get(self, kind: str, namespace: str, name: str) -> Message:
        info = kind_info(kind)
        namespace = self._namespace(info, namespace)
        with _translated(info, name):
            obj = await self._objects.get(info, namespace, name)
        if obj is None:
            with _translated(info, name):
                raise store_errors.NotFoundError(name)
        return obj

    async def list(
        self,
        kind: str,
        namespace: str = "",
        *,
        selector: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> ListResult:
        """One page of objects matching the selector; `namespace=""` means all."""
        info = kind_info(kind)
        sel = parse_selector(selector)
        limit = DEFAULT_PAGE if limit <= 0 else min(limit, MAX_PAGE)
        revision: int | None = None
        start_after: str | None = None
        if continue_token:
            revision, start_after = decode_continue(continue_token)
        items: Objects = []
        size = 0
        more = True
        with _translated(info, ""):
            while more and len(items) < limit and size < MAX_PAGE_BYTES:
                page = await self._objects.list_page(
                    info,
                    namespace if info.namespaced else "",
                    limit=limit - len(items),
                    start_after=start_after,
                    revision=revision,
                )
                revision, start_after, more = page.revision, page.last_key, page.more
                for obj in page.items:
                    if sel.matches(meta(obj).labels):
                        items.append(obj)
                        size += obj.ByteSize()
        token = encode_continue(revision or 0, start_after) if more and start_after else ""
        return ListResult(items, revision or 0, token)

    async def watch(
        self,
        kind: str,
        namespace: str = "",
        *,
        selector: str = "",
        resource_version: str = "",
    ) -> AsyncIterator[WatchItem]:
        """Changes after `resource_version`; without one, ADDED for what exists first."""
        if not resource_version:
            existing, revision = await self.watch_start(kind, namespace, selector=selector)
            for added in existing:
                yield added
            resource_version = str(revision)
        info = kind_info(kind)
        sel = parse_selector(selector)
        ns = namespace if info.namespaced else ""
        after = limits.parse_resource_version(resource_version)
        if after is None or after == limits.MAX_RESOURCE_VERSION:
            raise BadRequestError(
                f'invalid resourceVersion "{resource_version}": '
                f"must be a number from 0 to {limits.MAX_RESOURCE_VERSION - 1}"
            )
        start = after + 1
        with _translated(info, ""):
            async for ev in self._objects.watch(info, ns, start_revision=start):
                item = _filtered(ev.change, ev.obj, ev.prev, sel)
                if item is not None:
                    yield item

    async def watch_start(self, kind: str, namespace: str = "", *, selector: str = "") -> tuple[WatchItems, int]:
        """What a watch without a resourceVersion starts with: ADDED for each matching object,
        and the revision they were read at (the watch goes on after it)."""
        info = kind_info(kind)
        sel = parse_selector(selector)
        listed, revision = await self._list_all(info, namespace if info.namespaced else "")
        return [WatchItem(Change.ADDED, obj) for obj in listed if sel.matches(meta(obj).labels)], revision

    async def _list_all(self, info: KindInfo, namespace: str) -> tuple[Objects, int]:
        with _translated(info, ""):
            return await self._objects.list_all(info, namespace)


def _filtered(change: Change, obj: Message, prev: Message | None, sel: labels.Selector) -> WatchItem | None:
    """Selector semantics for watches: leaving the selection reads as DELETED."""
    if sel.empty:
        return WatchItem(change, obj)
    now_in = sel.matches(meta(obj).labels)
    was_in = prev is not None and sel.matches(meta(prev).labels)
    if change is Change.DELETED:
        return WatchItem(change, obj) if now_in else None
    if now_in:
        return WatchItem(Change.ADDED if not was_in else change, obj)
    if was_in:
        return WatchItem(Change.DELETED, obj)
    return None
