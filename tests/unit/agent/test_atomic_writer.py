"""The atomic writer: the kubelet's layout, in-place updates, and a reader that never sees a gap."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.pods import atomic_writer

NOW = datetime(2026, 12, 7, 21, 4, 5, tzinfo=UTC)


def versions(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if p.name.startswith("..") and p.name != "..data")


def test_first_write_lays_out_data_link_and_key_links(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    files = {"app.conf": (b"a=1\n", 0o644), "tls/key.pem": (b"KEY", 0o400)}

    assert atomic_writer.write(target, files, now=NOW) is True

    [version] = versions(target)
    assert version.startswith("..2026_12_07_21_04_05.")
    assert os.readlink(target / "..data") == version
    assert os.readlink(target / "app.conf") == "..data/app.conf"
    assert os.readlink(target / "tls") == "..data/tls"
    assert (target / "app.conf").read_bytes() == b"a=1\n"
    assert (target / "tls" / "key.pem").stat().st_mode & 0o777 == 0o400
    assert (target / version).stat().st_mode & 0o777 == atomic_writer.DIR_MODE


def test_an_update_swaps_versions_drops_old_keys_and_keeps_one_old_version(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    atomic_writer.write(target, {"a": (b"1", 0o644), "gone": (b"x", 0o644)}, now=NOW)
    [first] = versions(target)

    assert atomic_writer.write(target, {"a": (b"2", 0o644), "new": (b"n", 0o600)}, now=NOW) is True

    second = os.readlink(target / "..data")
    assert second != first
    assert (target / "a").read_bytes() == b"2" and (target / "new").read_bytes() == b"n"
    assert not os.path.lexists(target / "gone")
    # The version just replaced stays until the next write (a reader may be resolving into it).
    assert sorted(os.listdir(target)) == sorted(["..data", first, second, "a", "new"])

    assert atomic_writer.write(target, {"a": (b"3", 0o644)}, now=NOW) is True
    third = os.readlink(target / "..data")
    assert versions(target) == sorted([second, third])


@pytest.mark.parametrize(
    ("second", "written"),
    [
        pytest.param({"a": (b"1", 0o644)}, False, id="same"),
        pytest.param({"a": (b"2", 0o644)}, True, id="content"),
        pytest.param({"a": (b"1", 0o600)}, True, id="mode"),
        pytest.param({"a": (b"1", 0o644), "b": (b"", 0o644)}, True, id="added-key"),
        pytest.param({}, True, id="emptied"),
    ],
)
def test_only_a_different_payload_is_written(
    tmp_path: Path, second: dict[str, tuple[bytes, int]], written: bool
) -> None:
    target = tmp_path / "vol"
    atomic_writer.write(target, {"a": (b"1", 0o644)}, now=NOW)
    before = versions(target)

    assert atomic_writer.write(target, second, now=NOW) is written
    assert (versions(target) == before) is not written


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("../escape", id="dot-dot"),
        pytest.param("a/../../b", id="inner-dot-dot"),
        pytest.param("..data", id="writers-own-name"),
        pytest.param("a//b", id="empty-element"),
        pytest.param("", id="empty"),
    ],
)
def test_payload_paths_stay_inside_and_off_the_writers_names(tmp_path: Path, path: str) -> None:
    with pytest.raises(atomic_writer.PayloadError):
        atomic_writer.write(tmp_path / "vol", {path: (b"x", 0o644)}, now=NOW)
    assert not (tmp_path / "escape").exists()


def test_before_swap_sees_the_new_version_only(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    seen: list[tuple[Path, bytes]] = []
    atomic_writer.write(
        target, {"a": (b"new", 0o644)}, now=NOW, before_swap=lambda v: seen.append((v, (v / "a").read_bytes()))
    )
    assert seen == [(target / versions(target)[0], b"new")]


def test_a_looping_reader_never_sees_a_missing_or_partial_file(tmp_path: Path) -> None:
    """200 swaps of a 64 KiB file under a reader thread: every read is one whole version."""
    target = tmp_path / "vol"
    size = 64 * 1024
    atomic_writer.write(target, {"conf": (b"a" * size, 0o644)}, now=NOW)
    done = threading.Event()
    bad: list[str] = []
    reads = [0]

    def reader() -> None:
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            try:
                data = (target / "conf").read_bytes()
            except OSError as e:
                bad.append(f"missing: {e}")
                continue
            reads[0] += 1
            if len(data) != size or data.count(data[:1]) != size:
                bad.append(f"partial: {len(data)} bytes")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(200):
            letter = bytes([ord("b") + i % 20])
            atomic_writer.write(target, {"conf": (letter * size, 0o644)}, now=NOW)
    finally:
        done.set()
        thread.join(timeout=60)
    assert bad == []
    assert reads[0] > 0
    assert len(versions(target)) == 2
