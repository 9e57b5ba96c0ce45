"""`corral server`: configure logs, start the control plane, map startup errors
to one line each."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from controlplane.server import ServerConfig, ServerError, serve
from controlplane.store.errors import StoreError
from corral import logs


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "corral"


def run_server(*, listen: str, etcd: str, data_dir: str | None, log_level: str) -> None:
    logs.configure(log_level)
    endpoints = [e.strip() for e in etcd.split(",") if e.strip()]
    config = ServerConfig(
        listen=listen,
        etcd=endpoints,
        data_dir=Path(data_dir) if data_dir else (None if endpoints else default_data_dir()),
    )
    if config.data_dir is not None:
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        asyncio.run(serve(config))
    except (ServerError, StoreError) as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot start the server: {e}") from e
