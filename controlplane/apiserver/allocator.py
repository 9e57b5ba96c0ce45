"""Service clusterIPs and nodePorts, claimed in the store so that no two Services get one.

One key per address and per node port, under `<prefix>/allocations/`:
`clusterips/<ip>` and `nodeports/<port>`, whose value names the owner
(JSON: namespace/name, uid, when). A claim is the store's create-if-absent,
so two API replicas (or two requests) racing for one address cannot both win,
whatever they read before. The keys are claimed before the Service write and
freed if that write fails; a Service's keys are freed after it is deleted or
stops using them.

A crash between a claim and the Service write (or between a delete and the
free) leaves a key no Service holds: `repair` (the leader's
`ServiceIpRepair`) frees a key whose owner does not hold it once it is older
than a grace period (a claim whose write is still on its way is left alone),
claims the keys of stored Services that miss theirs, and gives a Service
stored before corral allocated clusterIPs an address (the upgrade).

Free addresses are found by trying random ones (a /16 is almost never
crowded); after `RANDOM_TRIES` misses the keys are listed to find a free one,
or to say the range is full.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from controlplane.apiserver.errors import Cause, InvalidError
from controlplane.apiserver.service_ranges import ALLOCATE, Claims, ServiceRanges, claims
from controlplane.clock import utcnow
from controlplane.store import errors as store_errors
from controlplane.store.base import Store
from protos.corral.v1 import service_pb2

log = structlog.get_logger(__name__)

RANDOM_TRIES = 16
PAGE = 500


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str
    at: float = 0.0  # seconds since the epoch

    def encode(self) -> bytes:
        return json.dumps({"namespace": self.namespace, "name": self.name, "uid": self.uid, "at": self.at}).encode()

    @classmethod
    def decode(cls, value: bytes) -> Owner | None:
        try:
            data = json.loads(value)
            return cls(str(data["namespace"]), str(data["name"]), str(data["uid"]), float(data.get("at", 0)))
        except (ValueError, KeyError, TypeError):
            return None

    def holds(self, service: service_pb2.Service) -> bool:
        m = service.metadata
        return (self.namespace, self.name, self.uid) == (m.namespace, m.name, m.uid)


@dataclass
class Claimed:
    """The keys one write claimed (to free again when the write fails)."""

    keys: list[str]


class ServiceAllocator:
    """Claims and frees clusterIPs and nodePorts in `store` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        prefix: str = "/corral",
        ranges: ServiceRanges | None = None,
        *,
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.ranges = ranges or ServiceRanges()
        base = f"{prefix.rstrip('/')}/allocations/"
        self.ip_prefix = base + "clusterips/"
        self.port_prefix = base + "nodeports/"
        self.now = now
        self.rng = rng or random.Random()

    def ip_key(self, ip: str) -> str:
        return self.ip_prefix + ip

    def port_key(self, port: int) -> str:
        return self.port_prefix + str(port)

    def _owner(self, service: service_pb2.Service) -> Owner:
        m = service.metadata
        return Owner(m.namespace, m.name, m.uid, self.now().timestamp())

    # -- checks without claiming (dry runs) --------------------------------------------

    def check(self, service: service_pb2.Service) -> None:
        """Refuse asked-for values outside the ranges (InvalidError naming the field)."""
        causes: list[Cause] = []
        ip = service.spec.cluster_ip
        if ip and ip != "None" and (problem := self.ranges.ip_problem(ip)):
            causes.append(Cause("spec.clusterIPs[0]", f'Invalid value: "{ip}": {problem}'))
        for i, port in enumerate(service.spec.ports):
            if port.node_port and (problem := self.ranges.node_port_problem(port.node_port)):
                causes.append(Cause(f"spec.ports[{i}].nodePort", f"Invalid value: {port.node_port}: {problem}"))
        if causes:
            raise InvalidError("services", service.metadata.name, causes)

    # -- claims ------------------------------------------------------------------------

    async def claim(self, old: service_pb2.Service | None, new: service_pb2.Service) -> tuple[Claimed, Claims]:
        """Claim what `new` needs beyond `old`, filling allocated values into `new`.

        Raises InvalidError (a taken or out-of-range value, a full range; nothing stays claimed)
        and the store's errors. Returns the keys claimed and the plan (its `free_*` to `free`
        once the write is stored)."""
        self.check(new)
        plan = claims(old, new)
        owner = self._owner(new)
        claimed = Claimed([])
        try:
            if plan.ip == ALLOCATE:
                ip = await self._allocate_ip(owner, new.metadata.name)
                claimed.keys.append(self.ip_key(ip))
                new.spec.cluster_ip = ip
                new.spec.cluster_ips[:] = [ip]
            elif plan.ip:
                await self._claim_exact(
                    self.ip_key(plan.ip),
                    owner,
                    new,
                    "spec.clusterIPs[0]",
                    f'Invalid value: ["{plan.ip}"]: failed to allocate IP {plan.ip}: provided IP is already allocated',
                )
                claimed.keys.append(self.ip_key(plan.ip))
            if new.spec.cluster_ip and new.spec.cluster_ip != "None" and not new.spec.cluster_ips:
                new.spec.cluster_ips.append(new.spec.cluster_ip)
            for port in plan.node_ports:
                i = next(i for i, p in enumerate(new.spec.ports) if p.node_port == port)
                await self._claim_exact(
                    self.port_key(port),
                    owner,
                    new,
                    f"spec.ports[{i}].nodePort",
                    f"Invalid value: {port}: provided port is already allocated",
                )
                claimed.keys.append(self.port_key(port))
            held = {p.node_port for p in new.spec.ports if p.node_port}
            for i in plan.allocate_node_ports:
                port = await self._allocate_port(owner, new.metadata.name, i, held)
                claimed.keys.append(self.port_key(port))
                new.spec.ports[i].node_port = port
                held.add(port)
        except BaseException:
            await self.release(claimed)
            raise
        return claimed, plan

    async def _claim_exact(self, key: str, owner: Owner, service: service_pb2.Service, path: str, taken: str) -> None:
        try:
            await self.store.create(key, owner.encode())
        except store_errors.AlreadyExistsError:
            raise InvalidError("services", service.metadata.name, [Cause(path, taken)]) from None

    async def _try(self, key: str, owner: Owner) -> bool:
        try:
            await self.store.create(key, owner.encode())
        except store_errors.AlreadyExistsError:
            return False
        return True

    async def _taken(self, prefix: str) -> set[str]:
        taken: set[str] = set()
        start: str | None = None
        while True:
            page = await self.store.list(prefix, limit=PAGE, start_after=start)
            taken.update(kv.key.removeprefix(prefix) for kv in page.items)
            if not page.more or not page.items:
                return taken
            start = page.items[-1].key

    async def _allocate_ip(self, owner: Owner, name: str) -> str:
        count = self.ranges.ip_count
        for _ in range(min(RANDOM_TRIES, count)):
            ip = self.ranges.ip_at(self.rng.randrange(count))
            if await self._try(self.ip_key(ip), owner):
                return ip
        while True:
            taken = await self._taken(self.ip_prefix)
            free = [i for i in range(count) if self.ranges.ip_at(i) not in taken] if len(taken) < count else []
            if not free:
                raise InvalidError(
                    "services",
                    name,
                    [
                        Cause(
                            "spec.clusterIPs",
                            f"failed to allocate a serviceIP: range is full ({self.ranges.cidr}: "
                            f"{count} addresses, all in use); delete a Service or widen --service-cidr",
                        )
                    ],
                )
            ip = self.ranges.ip_at(self.rng.choice(free))
            if await self._try(self.ip_key(ip), owner):
                return ip

    async def _allocate_port(self, owner: Owner, name: str, index: int, held: set[int]) -> int:
        low, high = self.ranges.node_ports
        for _ in range(min(RANDOM_TRIES, high - low + 1)):
            port = self.rng.randint(low, high)
            if port not in held and await self._try(self.port_key(port), owner):
                return port
        while True:
            taken = {int(k) for k in await self._taken(self.port_prefix) if k.isdigit()} | held
            free = [p for p in range(low, high + 1) if p not in taken]
            if not free:
                raise InvalidError(
                    "services",
                    name,
                    [
                        Cause(
                            f"spec.ports[{index}].nodePort",
                            f"failed to allocate a nodePort: range is full ({self.ranges.node_port_text}); "
                            "delete a NodePort Service or widen --service-node-port-range",
                        )
                    ],
                )
            port = self.rng.choice(free)
            if await self._try(self.port_key(port), owner):
                return port

    # -- frees -------------------------------------------------------------------------

    async def release(self, claimed: Claimed) -> None:
        """Free keys this write claimed (its write failed). Store errors are logged: repair frees them."""
        for key in claimed.keys:
            try:
                await self.store.delete(key)
            except store_errors.NotFoundError:
                pass
            except store_errors.StoreError as e:
                log.warning("allocation_not_freed", key=key, reason=str(e))

    async def free(self, service: service_pb2.Service, ips: list[str], ports: list[int]) -> None:
        """Free the keys of `ips` and `ports` that `service` owns. Store errors are logged (repair frees them)."""
        for key in [*(self.ip_key(ip) for ip in ips if ip and ip != "None"), *(self.port_key(p) for p in ports)]:
            try:
                kv = await self.store.get(key)
                if kv is None:
                    continue
                owner = Owner.decode(kv.value)
                if owner is not None and owner.holds(service):
                    await self.store.delete(key, expected_revision=kv.mod_revision)
            except (store_errors.NotFoundError, store_errors.ConflictError):
                continue
            except store_errors.StoreError as e:
                log.warning("allocation_not_freed", key=key, reason=str(e))

    async def free_all(self, service: service_pb2.Service) -> None:
        """Free everything a deleted Service held."""
        await self.free(service, [service.spec.cluster_ip], [p.node_port for p in service.spec.ports if p.node_port])

    # -- the leader's repair ---------------------------------------------------------------

    async def listed(self) -> dict[str, tuple[Owner | None, int]]:
        """Every allocation key: its owner (None: unreadable) and mod revision."""
        found: dict[str, tuple[Owner | None, int]] = {}
        for prefix in (self.ip_prefix, self.port_prefix):
            start: str | None = None
            while True:
                page = await self.store.list(prefix, limit=PAGE, start_after=start)
                for kv in page.items:
                    found[kv.key] = (Owner.decode(kv.value), kv.mod_revision)
                if not page.more or not page.items:
                    break
                start = page.items[-1].key
        return found

    async def claim_key(self, key: str, service: service_pb2.Service) -> bool:
        """Claim `key` for `service` (a stored Service missing its key); False when taken."""
        return await self._try(key, self._owner(service))

    async def free_key(self, key: str, revision: int) -> bool:
        """Free `key` if it is still at `revision`; False when it moved or is gone."""
        try:
            await self.store.delete(key, expected_revision=revision)
        except (store_errors.NotFoundError, store_errors.ConflictError):
            return False
        return True
