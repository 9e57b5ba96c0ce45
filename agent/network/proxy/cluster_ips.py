"""ClusterIPs made local for the userspace proxy, and the reduced mode where they cannot be.

The userspace proxy must bind `<clusterIP>:<port>`, so the address must be
local. The kernel data path DNATs `<clusterIP>:<port>` in the nat hooks, but
a host process's packet is routed before the `output` hook: on a host
without a default route, connect() to a clusterIP fails (network
unreachable) unless the address is local too. So `ClusterIpAddresses` keeps
exactly the clusterIPs either path serves as /32 addresses on a dummy interface `corral0` (as kube-proxy's IPVS
mode keeps them on `kube-ipvs0`), made at the first address; on a kernel
without the dummy module, on `lo`. `want(addresses)` sets the wanted set and
wakes `run()`, which adds and removes the difference in one `ip -batch` call
(the `ip` command of iproute2; no Python dependency) and then calls
`on_ready` (the proxy retries its binds at once). Stopping removes the
addresses it added. Needs root or CAP_NET_ADMIN.

Where `ip` is missing or not permitted, the failure is logged once
(`cluster_ips_unavailable`) and `on_unavailable` is called: the reduced mode
(`ServiceAddressing.reduce`), in which every Service is served as before
virtual IPs — its port on the node's proxy addresses, DNS answering the
address it was asked on — so ports can clash across Services again.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable, Mapping, Sequence

import structlog

from agent.network.routes import RouteListener
from protos.corral.v1 import discovery_pb2

log = structlog.get_logger(__name__)

DEFAULT_INTERFACE = "corral0"
DEFAULT_BINARY = "ip"


class ClusterIpAddresses:
    def __init__(
        self,
        interface: str = DEFAULT_INTERFACE,
        *,
        binary: str = DEFAULT_BINARY,
        timeout: float = 10.0,
        on_ready: Callable[[], None] | None = None,
        on_unavailable: Callable[[str], None] | None = None,
    ) -> None:
        self.interface = interface
        self.binary = binary
        self.timeout = timeout
        self.on_ready = on_ready
        self.on_unavailable = on_unavailable
        self.device = ""  # the interface in use once made: `interface`, or "lo"
        self.failed = ""
        self._wanted: set[str] = set()
        self._sources: dict[str, set[str]] = {}
        self._applied: set[str] = set()
        self._wake = asyncio.Event()

    def want(self, addresses: set[str], source: str = "proxy") -> None:
        """`source` (the userspace proxy, the kernel path) serves `addresses`: keep their union local."""
        self._sources[source] = set(addresses)
        wanted = set().union(*self._sources.values())
        if wanted != self._wanted:
            self._wanted = wanted
            self._wake.set()

    @property
    def applied(self) -> set[str]:
        return set(self._applied)

    async def _ip(self, *args: str, stdin: str | None = None) -> tuple[int, str]:
        binary = shutil.which(self.binary)
        if binary is None:
            return 127, f"{self.binary}: not found (install iproute2)"
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self.timeout):
                _, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return 124, f"{self.binary} {' '.join(args)}: timed out"
        return proc.returncode or 0, err.decode(errors="replace").strip()

    async def _device(self) -> str:
        """Make the dummy interface (or settle for lo); raise OSError-like text when not permitted."""
        if self.device:
            return self.device
        code, err = await self._ip("link", "add", self.interface, "type", "dummy")
        if code == 0 or "File exists" in err:
            code, err = await self._ip("link", "set", self.interface, "up")
            if code != 0:
                raise _Unavailable(err)
            self.device = self.interface
        elif "not permitted" in err.lower() or code == 127:
            raise _Unavailable(err)
        else:  # no dummy module in this kernel: lo holds them
            log.info("cluster_ips_on_loopback", interface=self.interface, reason=err)
            self.device = "lo"
        return self.device

    async def _sync(self) -> None:
        wanted = set(self._wanted)
        add, remove = sorted(wanted - self._applied), sorted(self._applied - wanted)
        if not add and not remove:
            return
        device = await self._device()
        script = "".join(f"address replace {a}/32 dev {device}\n" for a in add)
        script += "".join(f"address del {a}/32 dev {device}\n" for a in remove)
        code, err = await self._ip("-force", "-batch", "-", stdin=script)
        if code != 0 and ("not permitted" in err.lower() or code in (124, 127)):
            raise _Unavailable(err)
        if code != 0:
            log.warning("cluster_ips_partly_applied", device=device, reason=err)
        self._applied = (self._applied | set(add)) - set(remove)
        log.info("cluster_ips_applied", device=device, added=len(add), removed=len(remove), total=len(self._applied))
        if self.on_ready is not None:
            self.on_ready()

    async def run(self) -> None:
        try:
            while not self.failed:
                await self._wake.wait()
                self._wake.clear()
                try:
                    await self._sync()
                except _Unavailable as e:
                    self.failed = str(e) or "not permitted"
                    log.error(
                        "cluster_ips_unavailable",
                        reason=self.failed,
                        message="clusterIPs cannot be made local (needs root or CAP_NET_ADMIN and iproute2); "
                        "reduced mode: every Service is served on the node's proxy addresses at its port",
                    )
                    if self.on_unavailable is not None:
                        self.on_unavailable(self.failed)
            await asyncio.Event().wait()
        finally:
            if self._applied and self.device:
                script = "".join(f"address del {a}/32 dev {self.device}\n" for a in sorted(self._applied))
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._ip("-force", "-batch", "-", stdin=script))
                self._applied = set()


class _Unavailable(Exception):
    pass


Routes = Mapping[str, discovery_pb2.ServiceRoute]


class ServiceAddressing:
    """A route listener in front of the proxy and DNS: passes routes on as they are, or — in the
    reduced mode — without their clusterIPs (served on node addresses as before virtual IPs)."""

    def __init__(self, inner: Sequence[RouteListener]) -> None:
        self.inner = list(inner)
        self.reduced = False
        self._routes: Routes = {}

    def update(self, routes: Routes) -> None:
        self._routes = routes
        shown: Routes = routes
        if self.reduced:
            stripped: dict[str, discovery_pb2.ServiceRoute] = {}
            for key, route in routes.items():
                copy = discovery_pb2.ServiceRoute()
                copy.CopyFrom(route)
                copy.cluster_ip = ""
                stripped[key] = copy
            shown = stripped
        for listener in self.inner:
            listener.update(shown)

    def reduce(self, reason: str = "") -> None:
        """Switch to the reduced mode for good, and pass the current routes on again."""
        if self.reduced:
            return
        self.reduced = True
        log.warning("services_reduced_mode", reason=reason)
        self.update(self._routes)
