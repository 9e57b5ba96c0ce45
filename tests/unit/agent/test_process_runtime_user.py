"""Who the process runtime runs pods as: the agent's user, except on a root agent, which offers
the runtime only with --allow-process-runtime-as-root and then runs pods as an unprivileged user."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.main import PROCESS_USER, AgentConfig, AgentError, open_runtimes, process_runtime_user
from agent.runtime.process import ProcessRuntime
from corral.cli.agent_cmd import agent_cmd


def config(tmp_path: Path, **more: object) -> AgentConfig:
    return AgentConfig(server="127.0.0.1:7443", name="n1", data_dir=tmp_path, runtimes=["process"], **more)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("euid", "allowed", "user"),
    [
        pytest.param(1000, False, "", id="unprivileged-agent"),
        pytest.param(1000, True, "", id="unprivileged-agent-flag-changes-nothing"),
        pytest.param(0, True, PROCESS_USER, id="root-agent-with-the-flag"),
    ],
)
def test_process_runtime_user(tmp_path: Path, euid: int, allowed: bool, user: str) -> None:
    assert process_runtime_user(config(tmp_path, allow_process_runtime_as_root=allowed), euid) == user


def test_a_root_agent_refuses_the_process_runtime_without_the_flag(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="--allow-process-runtime-as-root"):
        process_runtime_user(config(tmp_path), 0)


async def test_open_runtimes_gives_the_process_runtime_its_default_user(tmp_path: Path) -> None:
    runtimes = await open_runtimes(
        config(tmp_path, allow_process_runtime_as_root=True, process_user="1234:1234"), euid=0
    )

    runtime = runtimes["process"]
    assert isinstance(runtime, ProcessRuntime)
    assert runtime._default_user == "1234:1234"
    with pytest.raises(AgentError):
        await open_runtimes(config(tmp_path), euid=0)


@pytest.mark.parametrize("value", ["0", "0:0", "nobody", "1000:x"])
def test_process_user_must_be_a_numeric_non_root_user(value: str) -> None:
    result = CliRunner().invoke(agent_cmd, ["--server", "127.0.0.1:1", "--runtime", "process", "--process-user", value])

    assert result.exit_code == 2
    assert "--process-user" in result.output
