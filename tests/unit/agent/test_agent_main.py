"""`run_agent` reads top to bottom: flags checked first, runtimes closed on a failed start, a failed loop logged."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.main import AgentConfig, AgentError, run_agent
from agent.node.credentials import NodeCredentials
from agent.node.session import Session
from agent.pods.manager import PodManager
from agent.runtime.fake import FakeRuntime

SERVER = "127.0.0.1:1"  # nobody serves here


@pytest.fixture
def joins(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each join (or certificate load) instead of doing it."""
    seen: list[str] = []

    async def ensure(self: NodeCredentials) -> None:
        seen.append(self.identity.name)

    monkeypatch.setattr(NodeCredentials, "ensure", ensure)
    return seen


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[FakeRuntime]:
    seen: list[FakeRuntime] = []

    async def close(self: FakeRuntime) -> None:
        seen.append(self)

    monkeypatch.setattr(FakeRuntime, "close", close)
    return seen


def config(tmp_path: Path, **more: object) -> AgentConfig:
    fields: dict[str, object] = {
        "runtimes": ["fake"],
        "address": "127.0.0.1",
        "proxy_addresses": ["127.0.0.1"],
        "dns_port": 0,
    }
    return AgentConfig(server=SERVER, name="n1", data_dir=tmp_path, **(fields | more))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("more", "flag"),
    [
        pytest.param({"termination_drain": -1.0}, "--termination-drain", id="termination-drain"),
        pytest.param({"metrics_period": 0.5}, "--metrics-period", id="metrics-period"),
        pytest.param({"proxy_mode": "ipvs"}, "--proxy-mode", id="proxy-mode"),
        pytest.param(
            {"proxy_mode": "nftables", "proxy_addresses": ["::1"]}, "--proxy-mode nftables", id="nftables-ipv6"
        ),
        pytest.param({"restart_backoff": 0.0}, "--restart-backoff", id="restart-backoff"),
        pytest.param({"ingress_proxy": "traefik"}, "--ingress-proxy", id="ingress-proxy"),
        pytest.param({"runtimes": ["podman"]}, 'unknown runtime "podman"', id="runtime"),
    ],
)
async def test_a_bad_flag_is_refused_before_any_join(
    tmp_path: Path, joins: list[str], closed: list[FakeRuntime], more: dict[str, object], flag: str
) -> None:
    with pytest.raises(AgentError, match=flag):
        await run_agent(config(tmp_path / "agent", **more))
    assert joins == []
    assert not (tmp_path / "agent").exists()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


async def test_runtimes_are_closed_when_a_later_step_fails(
    tmp_path: Path, joins: list[str], closed: list[FakeRuntime], taken_port: int
) -> None:
    with pytest.raises(AgentError, match="metrics"):
        await run_agent(config(tmp_path, metrics_listen=f"127.0.0.1:{taken_port}"))
    assert joins == ["n1"]
    assert len(closed) == 1


async def test_a_failed_loop_is_logged_and_stops_the_agent(
    tmp_path: Path, joins: list[str], closed: list[FakeRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run(self: PodManager) -> None:
        raise RuntimeError("manager broke")

    async def connect(self: Session) -> None:  # no control plane here
        await asyncio.Event().wait()

    monkeypatch.setattr(PodManager, "run", run)
    monkeypatch.setattr(Session, "run", connect)
    with capture_logs() as events, pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="manager broke")):
        await run_agent(config(tmp_path))
    failed = [e for e in events if e["event"] == "agent_task_failed"]
    assert [e["task"] for e in failed] == ["pod-manager"]
    assert len(closed) == 1
