"""The node's ingress proxy: a managed Caddy fed from the node's ingress table.

`IngressProxy` is a route listener (the Services, from `ServiceTable`: the very routes the
node proxy gets, with their ready endpoints, traffic weights and algorithm) and an ingress
listener (the routing table the control plane computes). Every change marks the config
stale; `run()` translates table and routes into Caddy's JSON config (`config.py`, the one
home of routing decisions) and loads it into Caddy (`caddy.py`) when it differs from the
one running (changes within `settle_seconds` of each other make one swap: each swap
closes idle keep-alive connections; with `Upstreams(via_cluster_ip=True)` endpoint
changes of the Services the kernel balances make no new config). A config Caddy refuses
(a port it cannot bind, say) is logged (`ingress_config_refused`) and tried again every
`retry_seconds`; Caddy keeps serving the previous one meanwhile.

Caddy starts once the node has an ingress route (the agent stays light where no Ingress is
served) and is then kept running: when it exits it is started again after the crash-loop
backoff (`corral/common/backoff.py`) and given the current config. It stops with the
agent. Without the caddy binary (the `corral[ingress]` extra is not installed) the ingress
is off, said once at start (`ingress_unavailable`). Port 0 disables HTTP or HTTPS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.network.ingress.caddy import Caddy, CaddyError, ConfigRefused, find_caddy
from agent.network.ingress.config import Listen, Upstreams, caddy_config
from corral.common.backoff import CrashLoopBackoff
from protos.corral.v1 import discovery_pb2, ingress_pb2

if TYPE_CHECKING:
    from agent.network.ingress.certs import Certificates

log = structlog.get_logger(__name__)

DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
RESTART_BACKOFF = CrashLoopBackoff(initial=1.0, cap=30.0, reset_after=60.0)


@dataclass(frozen=True)
class IngressPorts:
    http: int = DEFAULT_HTTP_PORT
    https: int = DEFAULT_HTTPS_PORT

    @property
    def enabled(self) -> bool:
        return bool(self.http or self.https)


class IngressProxy:
    def __init__(
        self,
        addresses: Sequence[str],
        ports: IngressPorts | None = None,
        *,
        directory: Path,
        binary: str | None = None,
        retry_seconds: float = 5.0,
        settle_seconds: float = 0.05,
        upstreams: Upstreams | None = None,
        backoff: CrashLoopBackoff = RESTART_BACKOFF,
        now: dt.datetime | None = None,
    ) -> None:
        """`directory`: Caddy's private working directory (its admin socket, its storage);
        `binary`: the caddy binary (None: `find_caddy()`)."""
        self.addresses = list(dict.fromkeys(addresses))
        self.ports = ports or IngressPorts()
        self.directory = directory
        self.binary = binary if binary is not None else find_caddy()
        self.retry_seconds = retry_seconds
        self.settle_seconds = settle_seconds
        self.upstreams = upstreams or Upstreams()
        self.backoff = backoff
        self.now = now
        self.ingress = ingress_pb2.IngressRoutes()
        self._services: Mapping[str, discovery_pb2.ServiceRoute] = {}
        # Made when the first config is (cryptography is imported only then).
        self._certificates: Certificates | None = None
        self._default: tuple[bytes, bytes] | None = None
        self._wanted = asyncio.Event()
        self._stale = asyncio.Event()
        # The running Caddy, and the (address, port) pairs its loaded config listens on.
        self.caddy: Caddy | None = None
        self.bound: set[tuple[str, int]] = set()
        # Changes seen, and how many of them the loaded config holds.
        self.changes = 0
        self.applied = 0

    # -- listeners -------------------------------------------------------------------------

    def update(self, routes: Mapping[str, discovery_pb2.ServiceRoute]) -> None:
        self._services = routes
        self.changes += 1
        self._stale.set()

    def update_ingress(self, ingress: ingress_pb2.IngressRoutes) -> None:
        self.ingress = ingress
        self.changes += 1
        self._stale.set()
        if ingress.hosts or ingress.HasField("default_backend"):
            self._wanted.set()
        log.info(
            "ingress_routes_applied",
            hosts=[h.host or "*" for h in ingress.hosts][:20],
            certificates=len(ingress.certificates),
            default_backend=ingress.HasField("default_backend"),
        )

    # -- config ----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Caddy's config for the current table and routes."""
        from agent.network.ingress.certs import Certificates, default_certificate

        if self._certificates is None:
            self._certificates = Certificates()
        if self._default is None:
            self._default = default_certificate(self.now or dt.datetime.now(dt.UTC))
        return caddy_config(
            self.ingress,
            self._services,
            listen=Listen(self.addresses, self.ports.http, self.ports.https),
            storage=str(self.directory / "storage"),
            certificates=self._certificates.usable(self.ingress),
            default_certificate=self._default,
            upstreams=self.upstreams,
        )

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        if not self.ports.enabled or not self.addresses:
            log.info("ingress_disabled")
            return
        if self.binary is None:
            log.warning(
                "ingress_unavailable",
                message="no caddy binary (install corral[ingress]): this node serves no Ingress",
            )
            return
        await self._wanted.wait()
        loop = asyncio.get_running_loop()
        state = self.backoff.initial_state()
        while True:
            wait = self.backoff.remaining(state, loop.time())
            if wait > 0:
                await asyncio.sleep(wait)
            started = loop.time()
            caddy = Caddy(self.binary, self.directory)
            try:
                code = await self._serve(caddy)
            finally:
                self.caddy, self.bound = None, set()
                await caddy.stop()
            state = self.backoff.on_exit(state, started_at=started, exited_at=loop.time())
            log.warning("ingress_caddy_exited", code=code, restart_in=self.backoff.remaining(state, loop.time()))

    async def _serve(self, caddy: Caddy) -> int | None:
        """Start Caddy and keep its config current until it exits (its exit code; None: no start)."""
        try:
            await caddy.start()
        except CaddyError as e:
            log.warning("ingress_caddy_start_failed", reason=str(e))
            return None
        self.caddy = caddy
        log.info("ingress_caddy_started", pid=caddy.pid, admin=str(caddy.admin_socket))
        apply = asyncio.create_task(self._apply(caddy))
        try:
            return await caddy.wait()
        finally:
            apply.cancel()
            await asyncio.gather(apply, return_exceptions=True)

    async def _apply(self, caddy: Caddy) -> None:
        loaded: dict[str, Any] | None = None
        self._stale.set()
        while True:
            await self._stale.wait()
            await asyncio.sleep(self.settle_seconds)  # a burst of changes is one config swap
            self._stale.clear()
            changes, config = self.changes, self.config()
            if config == loaded:
                self.applied = changes
                continue
            try:
                await caddy.load(config)
            except CaddyError as e:
                event = "ingress_config_refused" if isinstance(e, ConfigRefused) else "ingress_caddy_unreachable"
                log.warning(event, reason=str(e), retry_in=self.retry_seconds)
                await asyncio.sleep(self.retry_seconds)
                self._stale.set()
                continue
            loaded, self.applied = config, changes
            self.bound = {(a, p) for a in self.addresses for p in (self.ports.http, self.ports.https) if p}
            log.info("ingress_config_loaded", listening=sorted(f"{a}:{p}" for a, p in self.bound))
