"""Write a volume's files so that a reader never sees a missing or partial file (the kubelet's AtomicWriter).

Layout of a volume directory written here::

    ..2026_12_07_21_04_05.123abc/   the files of one version (mode 0755)
    ..data -> ..2026_12_07_21_04_05.123abc
    key -> ..data/key               one symlink per top-level name of the payload

A new version is written into a fresh timestamped directory; then a symlink
`..data_tmp` to it is renamed over `..data` (rename(2) is atomic), so every
path `key -> ..data/key` moves from the whole old version to the whole new one
at once; then the top-level names the new version lacks are removed, and the
versions before the one just replaced last. The version just replaced stays
until the next write: a reader that resolved `..data` to it a moment before
the swap still finds its file (removing it at once, as the kubelet does,
leaves a small window in which such a reader gets "no such file"). A payload equal to what is written (paths,
contents and modes) writes nothing.

`before_swap(directory)` runs on the new version's directory before the swap
(the caller's ownership change: fsGroup), so files never show with the wrong
owner either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

DATA_DIR = "..data"
_DATA_TMP = "..data_tmp"
DIR_MODE = 0o755


class PayloadError(ValueError):
    """A payload path that would leave the volume or hide the writer's own names."""


def check_path(path: str) -> None:
    parts = path.split("/")
    if not path or path.startswith(("/", "..")) or ".." in parts or "" in parts:
        raise PayloadError(f"invalid file path {path!r} in a volume payload")


def _current(target: Path) -> Path | None:
    """The directory of the version `..data` points at (None before the first write)."""
    try:
        return target / os.readlink(target / DATA_DIR)
    except OSError:
        return None


def _same(version: Path, files: Mapping[str, tuple[bytes, int]], mode_of: Callable[[int], int]) -> bool:
    """Whether the written version holds exactly these files, contents and modes (as `mode_of` makes them)."""
    found: set[str] = set()
    for root, _, names in os.walk(version):
        for name in names:
            found.add(os.path.relpath(os.path.join(root, name), version))
    if found != set(files):
        return False
    for path, (data, mode) in files.items():
        full = version / path
        try:
            if full.stat().st_mode & 0o7777 != mode_of(mode) or full.read_bytes() != data:
                return False
        except OSError:
            return False
    return True


def _write_version(target: Path, files: Mapping[str, tuple[bytes, int]], now: datetime) -> Path:
    version = Path(tempfile.mkdtemp(prefix=now.strftime("..%Y_%m_%d_%H_%M_%S."), dir=target))
    version.chmod(DIR_MODE)
    for path, (data, mode) in sorted(files.items()):
        full = version / path
        for parent in reversed(full.relative_to(version).parents[:-1]):
            directory = version / parent
            if not directory.is_dir():
                directory.mkdir()
                directory.chmod(DIR_MODE)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    return version


def write(
    target: Path,
    files: Mapping[str, tuple[bytes, int]],
    *,
    now: datetime,
    before_swap: Callable[[Path], None] | None = None,
    mode_of: Callable[[int], int] = lambda mode: mode,
) -> bool:
    """Make ``target`` hold exactly ``files`` (path → (contents, mode)); False when it already did.
    ``mode_of``: a file's mode once ``before_swap`` has run, given the payload's."""
    for path in files:
        check_path(path)
    target.mkdir(parents=True, exist_ok=True)
    old = _current(target)
    if old is not None and old.is_dir() and _same(old, files, mode_of):
        return False
    version = _write_version(target, files, now)
    if before_swap is not None:
        before_swap(version)
    tmp_link = target / _DATA_TMP
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(version.name)
    tmp_link.replace(target / DATA_DIR)
    wanted = {path.split("/", 1)[0] for path in files}
    for name in sorted(wanted):
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{name}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name in wanted:
            continue
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink()
        else:
            shutil.rmtree(entry)
    kept = {DATA_DIR, version.name, old.name if old is not None else DATA_DIR}
    for entry in target.iterdir():  # older versions (and any a crash left half written)
        if entry.name.startswith("..") and entry.name not in kept and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
    return True


def has_data(target: Path) -> bool:
    """Whether a version has been written (the volume can be mounted)."""
    return (target / DATA_DIR).is_dir()
