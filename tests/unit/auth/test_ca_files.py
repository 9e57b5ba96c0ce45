"""The cluster CA's files under the data dir."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from controlplane.auth import PkiError
from controlplane.auth.ca import ClusterCA
from corral.common.pki import certs

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def test_created_once_with_private_modes_and_reloaded(tmp_path: Path) -> None:
    first = ClusterCA.load_or_create(tmp_path, NOW)
    pki = tmp_path / "pki"
    assert pki.stat().st_mode & 0o777 == 0o700
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (pki / "ca.crt").stat().st_mode & 0o777 == 0o644
    again = ClusterCA.load_or_create(tmp_path, NOW + dt.timedelta(days=1))
    assert again.hash == first.hash


def test_replicas_starting_together_agree_on_one_ca(tmp_path: Path) -> None:
    hashes: list[str] = []
    threads = [
        threading.Thread(target=lambda: hashes.append(ClusterCA.load_or_create(tmp_path, NOW).hash)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(hashes) == 4 and len(set(hashes)) == 1


def test_damaged_files_are_refused_with_the_file_named(tmp_path: Path) -> None:
    ClusterCA.load_or_create(tmp_path, NOW)
    key = tmp_path / "pki" / "ca.key"
    key.chmod(0o644)
    with pytest.raises(PkiError, match="readable by others"):
        ClusterCA.load_or_create(tmp_path, NOW)
    key.chmod(0o600)
    key.write_bytes(certs.key_pem(certs.new_key()))
    with pytest.raises(PkiError, match="is not the key of"):
        ClusterCA.load_or_create(tmp_path, NOW)
    key.unlink()
    with pytest.raises(PkiError, match="ca.key is missing"):
        ClusterCA.load_or_create(tmp_path, NOW)
    (tmp_path / "pki" / "ca.crt").write_text("garbage")
    certs.write_private(key, certs.key_pem(certs.new_key()))
    with pytest.raises(PkiError, match="not a PEM certificate"):
        ClusterCA.load_or_create(tmp_path, NOW)
