"""Where the CLI finds the server and its credentials.

The server: `--server`, then `CORRAL_SERVER`, then the
`server:` key of the config file (`$CORRAL_CONFIG`, default
`~/.config/corral/config.yaml`), then 127.0.0.1:7443.

Several replicas of the control plane are given as ``a:7443,b:7443`` (or, in
the config file, a list); the client moves to the next when one is unavailable.

The credentials (every call is mutual TLS): the cluster CA, an admin client
certificate and its key, as PEM text under ``certificate-authority-data``,
``client-certificate-data`` and ``client-key-data`` of the same file (mode
0600), written by `corral up`, `corral server` (on its machine) and
`corral login` (anywhere, with an admin join token).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from corral.common.pki.credentials import Credentials, write_private
from corral.common.pki.identity import CertificateError

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
    import yaml  # here: `corral agent` reads no config file when given --server, and yaml is 1 MB resident

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


# Config keys of the CLI's credentials (PEM text), as kubeconfig's *-data fields.
CA_KEY = "certificate-authority-data"
CERT_KEY = "client-certificate-data"
KEY_KEY = "client-key-data"


def resolve_credentials(path: Path | None = None) -> Credentials:
    """The admin credentials in the config file that `corral up`, `corral server` or `corral login` wrote."""
    path = path or config_path()
    data = read_config(path)
    values = [data.get(k) for k in (CA_KEY, CERT_KEY, KEY_KEY)]
    if not all(isinstance(v, str) and v for v in values):
        where = f"{path}" if path.exists() else f"{path} (no such file)"
        raise ConfigError(
            f"no credentials in {where}: every call to corral is authenticated. On the server machine, "
            f"`corral up` / `corral server` write them there; elsewhere run `corral login --server HOST:PORT "
            f"--token TOKEN` with a token from `corral token create --role admin`."
        )
    ca, cert, key = (str(v).encode() for v in values)
    credentials = Credentials(ca, cert, key)
    try:
        credentials.check(str(path))
    except CertificateError as e:
        raise ConfigError(str(e)) from e
    return credentials


def write_config(server: str, credentials: Credentials, path: Path | None = None) -> Path:
    """Point the CLI at a cluster with these credentials, keeping other settings in the file (mode 0600)."""
    path = path or config_path()
    try:
        data = read_config(path)
    except ConfigError:
        data = {}
    data["server"] = server
    data[CA_KEY] = credentials.ca.decode()
    data[CERT_KEY] = credentials.cert.decode()
    data[KEY_KEY] = credentials.key.decode()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    import yaml

    write_private(path, yaml.safe_dump(data, sort_keys=False).encode())
    return path
