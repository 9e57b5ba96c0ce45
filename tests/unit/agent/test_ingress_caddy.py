"""Without the caddy binary the ingress is off, said once at start; the binary is found
beside the agent's Python or on PATH; Caddy's environment (the agent's Go settings, GOGC 200
by default); a burst of changes is one config swap, and no change none."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.network.ingress import caddy
from agent.network.ingress.caddy import caddy_environment, find_caddy
from agent.network.ingress.proxy import IngressPorts, IngressProxy
from protos.corral.v1 import discovery_pb2, ingress_pb2


async def test_without_caddy_the_ingress_is_off_with_one_clear_log_line(tmp_path: Path) -> None:
    proxy = IngressProxy(["127.0.0.1"], IngressPorts(8080, 8443), directory=tmp_path, binary=None)
    proxy.binary = None  # as when find_caddy() finds nothing
    with structlog.testing.capture_logs() as logs:
        await proxy.run()  # returns at once: nothing to serve
    assert [e["event"] for e in logs] == ["ingress_unavailable"]
    assert "corral[ingress]" in logs[0]["message"]


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize(
    ("beside", "on_path", "found"),
    [
        pytest.param(True, True, "beside", id="beside-python-first"),
        pytest.param(False, True, "path", id="then-path"),
        pytest.param(False, False, None, id="none"),
    ],
)
def test_find_caddy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, beside: bool, on_path: bool, found: str | None
) -> None:
    (tmp_path / "venv").mkdir()
    (tmp_path / "bin").mkdir()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "python"))
    if beside:
        executable(tmp_path / "venv" / caddy.BINARY)
    if on_path:
        executable(tmp_path / "bin" / caddy.BINARY)
    got = find_caddy(path=str(tmp_path / "bin") + os.pathsep)
    expected = {"beside": tmp_path / "venv" / caddy.BINARY, "path": tmp_path / "bin" / caddy.BINARY, None: None}
    assert got == (str(expected[found]) if expected[found] else None)


@pytest.mark.parametrize(
    ("agent", "go"),
    [
        pytest.param({}, {"GOGC": "200"}, id="gogc-200-by-default"),
        pytest.param({"GOGC": "100"}, {"GOGC": "100"}, id="the-agents-gogc"),
        pytest.param(
            {"GOMAXPROCS": "1", "GOMEMLIMIT": "64MiB", "GODEBUG": "x=1"},
            {"GOMAXPROCS": "1", "GOMEMLIMIT": "64MiB", "GOGC": "200"},
            id="cores-and-memory-limit-passed-on-nothing-else",
        ),
    ],
)
def test_caddys_environment(agent: dict[str, str], go: dict[str, str]) -> None:
    env = caddy_environment("/d", {"PATH": "/bin", "SECRET": "x", **agent})
    assert env == {"PATH": "/bin", "HOME": "/d", "XDG_DATA_HOME": "/d", "XDG_CONFIG_HOME": "/d", **go}


class FakeCaddy:
    def __init__(self) -> None:
        self.loads: list[dict[str, Any]] = []

    async def load(self, config: dict[str, Any]) -> None:
        self.loads.append(config)


def service(port: int) -> discovery_pb2.ServiceRoute:
    route = discovery_pb2.ServiceRoute(namespace="default", name="a")
    route.ports.add(name="http", protocol="TCP", port=80).backends.add(address="10.0.0.1", port=port)
    return route


async def test_a_burst_of_changes_is_one_config_swap_and_no_change_is_none(tmp_path: Path) -> None:
    proxy = IngressProxy(["127.0.0.1"], IngressPorts(8080, 0), directory=tmp_path, binary="caddy")
    table = ingress_pb2.IngressRoutes()
    table.hosts.add(host="a.test").paths.add(
        path="/", path_type="Prefix", backend=ingress_pb2.IngressRouteBackend(service="default/a", port_name="http")
    )
    proxy.update_ingress(table)
    fake = FakeCaddy()

    async def settled() -> None:
        while proxy.applied != proxy.changes:
            await asyncio.sleep(0.01)

    task = asyncio.create_task(proxy._apply(fake))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(settled(), 10)
        for port in range(9000, 9005):  # endpoints changing in a burst (a rollout step)
            proxy.update({"default/a": service(port)})
            await asyncio.sleep(0)
        await asyncio.wait_for(settled(), 10)
        proxy.update({"default/a": service(9004)})  # the same again: nothing to swap
        await asyncio.wait_for(settled(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(fake.loads) == 2
    dials = fake.loads[-1]["apps"]["http"]["servers"]["http"]["routes"][0]["handle"][0]["routes"][0]["handle"][0]
    assert dials["upstreams"] == [{"dial": "10.0.0.1:9004"}]
