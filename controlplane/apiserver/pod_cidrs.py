"""Nodes' pod subnets: one per Node from the cluster CIDR, claimed in the store so that no two Nodes get one.

The cluster CIDR (`--cluster-cidr`, default 10.42.0.0/16 as k3s; every
replica is given the same) is cut into subnets of `--node-cidr-mask-size`
bits (default 24: 256 subnets of 254 pods), as Kubernetes' range allocator
does. A Node gets one when it registers (`spec.podCIDR`, `spec.podCIDRs`)
and keeps it; it is freed when the Node is deleted.

One key per subnet, `<prefix>/allocations/podcidrs/<network>-<bits>`, whose
value names the Node (JSON: name, when). A claim is the store's
create-if-absent, so two replicas registering two nodes at once never hand
out one subnet. The subnet the agent says its bridge already uses is given
back when free; otherwise a random free one (as the clusterIP allocator: a
few random tries, then a listing, so registering thousands of nodes does not
list every claim each time); the listing also takes back a key already
naming the Node (a registration that claimed it and crashed before writing
the Node). Taking back a key rewrites its time with a compare-and-swap, so
the leader's repair (`controllers/podcidrs`: it frees keys no Node holds
once older than a grace) never frees a key a registration is about to store.
The range exhausted: the Node
registers without one (`PodCidrs.allocate` returns ""), and its agent falls
back to publishing container ports (docs/operations.md).

`PodCidrRange` is the pure part: the subnets in order and whether a value
belongs to the range.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import structlog

from controlplane.clock import utcnow
from controlplane.store import errors as store_errors
from controlplane.store.base import Store
from protos.corral.v1 import node_pb2

log = structlog.get_logger(__name__)

DEFAULT_CLUSTER_CIDR = "10.42.0.0/16"
DEFAULT_NODE_CIDR_MASK_SIZE = 24
_DEFAULT_NETWORK: Final = ipaddress.IPv4Network(DEFAULT_CLUSTER_CIDR)
PAGE = 500
RANDOM_TRIES = 16


class PodCidrRangeError(ValueError):
    """A --cluster-cidr or --node-cidr-mask-size that cannot be used."""


@dataclass(frozen=True)
class PodCidrRange:
    cidr: ipaddress.IPv4Network = _DEFAULT_NETWORK
    mask_size: int = DEFAULT_NODE_CIDR_MASK_SIZE

    @classmethod
    def parse(cls, cidr: str = DEFAULT_CLUSTER_CIDR, mask_size: int = DEFAULT_NODE_CIDR_MASK_SIZE) -> PodCidrRange:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as e:
            raise PodCidrRangeError(f"--cluster-cidr {cidr!r}: {e}") from e
        if not isinstance(network, ipaddress.IPv4Network):
            raise PodCidrRangeError(f"--cluster-cidr {cidr!r}: only IPv4 ranges are supported")
        if not network.prefixlen <= mask_size <= 30:
            raise PodCidrRangeError(
                f"--node-cidr-mask-size {mask_size}: must be between the cluster CIDR's /{network.prefixlen} and 30"
            )
        return cls(network, mask_size)

    @property
    def count(self) -> int:
        return 1 << (self.mask_size - self.cidr.prefixlen)

    def subnet_at(self, index: int) -> str:
        """The `index`-th subnet (0 .. count-1)."""
        size = 1 << (32 - self.mask_size)
        return f"{self.cidr.network_address + index * size}/{self.mask_size}"

    def subnets(self) -> Iterator[str]:
        return (str(s) for s in self.cidr.subnets(new_prefix=self.mask_size))

    def holds(self, subnet: str) -> bool:
        """Whether `subnet` is one of this range's subnets (right size, aligned, inside)."""
        try:
            network = ipaddress.ip_network(subnet, strict=True)
        except ValueError:
            return False
        return (
            isinstance(network, ipaddress.IPv4Network)
            and network.prefixlen == self.mask_size
            and network.subnet_of(self.cidr)
        )


def key_name(subnet: str) -> str:
    """A subnet as an allocation key's last part: `10.42.3.0/24` → `10.42.3.0-24`."""
    return subnet.replace("/", "-")


def subnet_of_key(name: str) -> str:
    return name.replace("-", "/")


def set_pod_cidr(node: node_pb2.Node, subnet: str) -> None:
    node.spec.pod_cidr = subnet
    node.spec.pod_cidrs[:] = [subnet] if subnet else []


class PodCidrs:
    """Claims and frees Nodes' pod subnets in `store` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        prefix: str = "/corral",
        cluster: PodCidrRange | None = None,
        *,
        now: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.range = cluster or PodCidrRange()
        self.rng = rng or random.Random()
        self.prefix = f"{prefix.rstrip('/')}/allocations/podcidrs/"
        self.now = now

    def key(self, subnet: str) -> str:
        return self.prefix + key_name(subnet)

    def _value(self, node: str) -> bytes:
        return json.dumps({"node": node, "at": self.now().timestamp()}).encode()

    async def listed(self) -> dict[str, str]:
        """Every claimed subnet → the Node it names ("" when unreadable)."""
        return {subnet: claim.node for subnet, claim in (await self.claims()).items()}

    async def _take_back(self, subnet: str, node: str) -> bool:
        """Whether `subnet`'s key names `node`; if so its time is renewed (compare-and-swap: a
        repair that read it before cannot free it now; one that freed it first wins)."""
        key = self.key(subnet)
        kv = await self.store.get(key)
        if kv is None or _owner(kv.value) != node:
            return False
        try:
            await self.store.update(key, self._value(node), expected_revision=kv.mod_revision)
        except (store_errors.NotFoundError, store_errors.ConflictError):
            return False
        return True

    async def _try(self, subnet: str, node: str) -> bool:
        try:
            await self.store.create(self.key(subnet), self._value(node))
        except store_errors.AlreadyExistsError:
            return False
        return True

    async def allocate(self, node: str, wanted: str = "") -> str:
        """A subnet for `node`: `wanted` when it is in the range and free (or already claimed in
        the node's name), else a random one (a few tries: a roomy range is rarely crowded), else,
        from a listing, one claimed in its name or the first free one; "" when the range is
        exhausted."""
        if (
            wanted
            and self.range.holds(wanted)
            and (await self._try(wanted, node) or await self._take_back(wanted, node))
        ):
            return wanted
        count = self.range.count
        for _ in range(min(RANDOM_TRIES, count)):
            subnet = self.range.subnet_at(self.rng.randrange(count))
            if await self._try(subnet, node):
                return subnet
        taken = await self.listed()
        for subnet in sorted(s for s, owner in taken.items() if owner == node and self.range.holds(s)):
            if await self._take_back(subnet, node):
                return subnet
        for subnet in self.range.subnets():
            if subnet not in taken and await self._try(subnet, node):
                return subnet
        log.warning(
            "pod_cidr_range_full",
            node=node,
            cluster_cidr=str(self.range.cidr),
            subnets=self.range.count,
            message="the node registers without a pod subnet; its agent publishes container ports instead",
        )
        return ""

    # -- the leader's repair ---------------------------------------------------------------

    async def claims(self) -> dict[str, Claim]:
        """Every claimed subnet → its claim (owner, time, revision)."""
        found: dict[str, Claim] = {}
        start: str | None = None
        while True:
            page = await self.store.list(self.prefix, limit=PAGE, start_after=start)
            for kv in page.items:
                node, at = _decoded(kv.value)
                found[subnet_of_key(kv.key.removeprefix(self.prefix))] = Claim(node, at, kv.mod_revision)
            if not page.more or not page.items:
                return found
            start = page.items[-1].key

    async def claim_for(self, subnet: str, node: str) -> bool:
        """Claim `subnet` for `node` (a Node holding it without its key); False when taken."""
        return await self._try(subnet, node)

    async def free_claim(self, subnet: str, revision: int) -> bool:
        """Free `subnet`'s key if it is still at `revision`; False when it moved or is gone."""
        try:
            await self.store.delete(self.key(subnet), expected_revision=revision)
        except (store_errors.NotFoundError, store_errors.ConflictError):
            return False
        return True

    async def free(self, node: node_pb2.Node) -> None:
        """Free the subnet a deleted Node held (if the key still names it)."""
        await self.release(node.metadata.name, node.spec.pod_cidr)

    async def release(self, node: str, subnet: str) -> None:
        """Free `subnet` if its key names `node`. Store errors are logged."""
        if not subnet:
            return
        key = self.key(subnet)
        try:
            kv = await self.store.get(key)
            if kv is None or _owner(kv.value) != node:
                return
            await self.store.delete(key, expected_revision=kv.mod_revision)
            log.info("pod_cidr_freed", node=node, pod_cidr=subnet)
        except (store_errors.NotFoundError, store_errors.ConflictError):
            return
        except store_errors.StoreError as e:
            log.warning("pod_cidr_not_freed", node=node, pod_cidr=subnet, reason=str(e))


@dataclass(frozen=True)
class Claim:
    """One subnet's key: the Node it names ("" when unreadable), when (epoch seconds; None when
    unreadable) and its revision."""

    node: str
    at: float | None
    revision: int


def _decoded(value: bytes) -> tuple[str, float | None]:
    """A key's Node and time ("" / None for what cannot be read)."""
    try:
        data = json.loads(value)
    except ValueError:
        return "", None
    if not isinstance(data, dict):
        return "", None
    node, at = data.get("node"), data.get("at")
    return (node if isinstance(node, str) else ""), (
        float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None
    )


def _owner(value: bytes) -> str:
    return _decoded(value)[0]
