"""A background loop of the control plane that fails stops the server, loudly (issue 16, composition roots)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack

import pytest
from structlog.testing import capture_logs

from controlplane.registry.hub import RouteHub
from controlplane.server import ServerConfig, ServerError, start

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]


async def test_a_failed_background_loop_stops_the_server(etcd_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = asyncio.Event()

    async def run(self: RouteHub) -> None:
        await broken.wait()
        raise RuntimeError("route hub broke")

    monkeypatch.setattr(RouteHub, "run", run)
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/bg/{uuid.uuid4().hex}")
    with capture_logs() as events, pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="route hub broke")):
        async with AsyncExitStack() as stack:
            await start(config, stack)
            broken.set()
            # Serves until something stops it; a bound only so that the old, silent behaviour fails.
            await asyncio.wait_for(asyncio.Event().wait(), timeout=30)
    assert {"event": "background_task_failed", "task": "route-hub"}.items() <= next(
        e for e in events if e["event"] == "background_task_failed"
    ).items()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"scheduling_strategy": "Random"}, id="scheduling-strategy"),
        pytest.param({"pod_security": "strict"}, id="pod-security"),
        pytest.param({"lease_ttl": 1}, id="lease-ttl"),
        pytest.param({"join_burst": 0}, id="join-burst"),
    ],
)
async def test_a_bad_setting_is_refused_before_the_store_opens(change: dict[str, object]) -> None:
    # An etcd nobody serves: the refusal must come first.
    config = ServerConfig(listen="127.0.0.1:0", etcd=["127.0.0.1:1"])
    for name, value in change.items():
        setattr(config, name, value)
    async with AsyncExitStack() as stack:
        with pytest.raises(ServerError, match=next(iter(change)).replace("_", "-")):
            await start(config, stack)
