"""The node proxy's per-backend-pod connection counters (what `ReportMetrics` carries for
requests per second), on real sockets."""

from __future__ import annotations

import pytest

from agent.network.proxy.server import ProxyServer
from tests.integration.node.test_proxy import PROXY, Backend, ask_new, free_port, route, route_backend, routes, running

pytestmark = pytest.mark.timeout(30)


async def test_connections_are_counted_per_backend_pod_and_follow_the_backends() -> None:
    a, b, c = [await Backend(name).start() for name in ("web-a", "web-b", "web-c")]
    port = free_port()
    try:
        async with running(ProxyServer([PROXY])) as proxy:
            proxy.update(routes(route("web", port, [route_backend(a), route_backend(b)])))
            assert proxy.stats()["default/web"].backends == {"web-a": 0, "web-b": 0}

            answers = [await ask_new(port) for _ in range(5)]
            counted = proxy.stats()["default/web"]
            copy = proxy.stats()["default/web"]
            copy.backends["web-a"] = 1000  # a copy: the proxy's own counters are untouched

            proxy.update(routes(route("web", port, [route_backend(b), route_backend(c)])))
            after = proxy.stats()["default/web"].backends
    finally:
        for backend in (a, b, c):
            await backend.stop()

    assert answers == ["web-a", "web-b", "web-a", "web-b", "web-a"]
    assert counted.backends == {"web-a": 3, "web-b": 2}
    assert counted.connections_total == 5
    assert after == {"web-b": 2, "web-c": 0}, "a pod no longer a backend is forgotten, a new one starts at 0"
