"""`/metrics` over HTTP for the control plane and the agent alike:
prometheus-client's own server, in a daemon thread.

`--metrics-listen HOST:PORT` says where (`:PORT` alone: the component's own
host — the API's host for a control plane, the first proxy address for an
agent, so several on one machine do not collide; port 0: any free port;
empty: no endpoint). When the address is only the default (`optional`), a
port another process holds is logged and skipped — several control planes or
agents on one machine must still start — while an address given on purpose
that cannot be bound stops the start.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

log = structlog.get_logger(__name__)

# How long stopping waits for the server thread.
STOP_TIMEOUT = 5.0


def exporter_registry(registry: CollectorRegistry | None = None, *, process: bool = True) -> CollectorRegistry:
    """`registry` (or a new one), with what every Prometheus exporter offers unless `process` is off:
    process_*, python_gc_*, python_info."""
    registry = registry if registry is not None else CollectorRegistry()
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class MetricsEndpointError(Exception):
    """The metrics address is malformed or cannot be listened on."""


def parse_listen(text: str, *, default_host: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` as (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise MetricsEndpointError(f'metrics address "{text}": expected HOST:PORT or :PORT')
    return (host or default_host).strip("[]"), int(port_text)


@dataclass
class MetricsEndpoint:
    """A running `/metrics` server; `close` stops it and frees the port."""

    address: str
    server: WSGIServer
    thread: Thread

    async def close(self) -> None:
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()
        await asyncio.to_thread(self.thread.join, STOP_TIMEOUT)
        log.info("metrics_stopped", listen=self.address)


def open_endpoint(
    registry: CollectorRegistry, listen: str, *, default_host: str, optional: bool = False
) -> MetricsEndpoint | None:
    """Serve `registry` at `listen`; None when disabled, or when an optional address is taken."""
    if not listen:
        return None
    host, port = parse_listen(listen, default_host=default_host)
    try:
        server, thread = start_http_server(port, host, registry=registry)
    except OSError as e:
        if optional:
            log.warning("metrics_unavailable", listen=f"{host}:{port}", error=str(e))
            return None
        raise MetricsEndpointError(f"cannot serve metrics on {listen}: {e.strerror or e}") from e
    bound = server.server_address[1]
    address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
    log.info("metrics_serving", listen=address, path="/metrics")
    return MetricsEndpoint(address, server, thread)
