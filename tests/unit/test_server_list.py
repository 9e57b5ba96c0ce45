"""Several control-plane replicas as the CLI's server address."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.cli.config import ConfigError, resolve_server
from corral.client import split_servers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a:7443", ["a:7443"], id="one"),
        pytest.param("a:7443,b:7443", ["a:7443", "b:7443"], id="two"),
        pytest.param(" a:7443 , b:7443 ,", ["a:7443", "b:7443"], id="spaces-and-trailing-comma"),
    ],
)
def test_servers_split_on_commas(text: str, expected: list[str]) -> None:
    assert split_servers(text) == expected


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("CORRAL_CONFIG", str(path))
    monkeypatch.delenv("CORRAL_SERVER", raising=False)
    return path


def test_the_config_file_may_list_replicas(config_file: Path) -> None:
    config_file.write_text("server:\n  - 10.0.0.1:7443\n  - 10.0.0.2:7443\n")

    resolved = resolve_server(None)

    assert resolved.address == "10.0.0.1:7443,10.0.0.2:7443"
    assert resolved.source == str(config_file)


@pytest.mark.parametrize("content", ["server: []\n", "server: [1, 2]\n", "server: {a: b}\n"])
def test_a_server_entry_that_is_not_addresses_is_refused(config_file: Path, content: str) -> None:
    config_file.write_text(content)

    with pytest.raises(ConfigError, match="expected host:port, or a list of them"):
        resolve_server(None)


def test_the_flag_and_the_environment_pass_a_list_through(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_server("a:1,b:2").address == "a:1,b:2"
    monkeypatch.setenv("CORRAL_SERVER", "c:3,d:4")
    assert resolve_server(None).address == "c:3,d:4"
