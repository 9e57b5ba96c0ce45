"""Without the caddy binary the ingress is off, said once at start; the binary is found
beside the agent's Python or on PATH."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import structlog

from agent.network.ingress import caddy
from agent.network.ingress.caddy import find_caddy
from agent.network.ingress.proxy import IngressPorts, IngressProxy


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
