"""Where the CLI finds the server: `--server`, then `CORRAL_SERVER`, then the
`server:` key of the config file (`$CORRAL_CONFIG`, default
`~/.config/corral/config.yaml`), then 127.0.0.1:7443.

Several replicas of the control plane are given as ``a:7443,b:7443`` (or, in
the config file, a list); the client moves to the next when one is unavailable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_SERVER = "127.0.0.1:7443"


class ConfigError(Exception):
    """The config file exists but cannot be used."""


@dataclass(frozen=True)
class ServerAddress:
    address: str
    # Where the address came from, for error messages.
    source: str


def config_path() -> Path:
    explicit = os.environ.get("CORRAL_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "corral" / "config.yaml"


def read_config(path: Path) -> dict[str, object]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping such as `server: host:port`")
    return data


def resolve_server(flag: str | None) -> ServerAddress:
    if flag:
        return ServerAddress(flag, "--server")
    env = os.environ.get("CORRAL_SERVER")
    if env:
        return ServerAddress(env, "CORRAL_SERVER")
    path = config_path()
    value = read_config(path).get("server")
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return ServerAddress(",".join(value), str(path))
    if value is not None:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: server: expected host:port, or a list of them")
        return ServerAddress(value, str(path))
    return ServerAddress(DEFAULT_SERVER, "default")
