"""Shared fixtures: one embedded etcd per session, and a `store` per backend.

``store`` is parametrized ``memory`` / ``etcd``: every test that uses it runs
against the in-memory twin and against a real etcd (the ``etcd`` ones are
marked ``etcd``; deselect them with ``-m "not etcd"``). All etcd tests share
one etcd process, so each test writes under its own ``key_prefix``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from controlplane.store.base import Store
from controlplane.store.embedded import EmbeddedEtcd, etcd_binary
from controlplane.store.errors import EmbeddedEtcdError
from controlplane.store.memory import MemoryStore


@pytest.fixture(scope="session")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of an etcd started once for the whole session."""
    try:
        etcd_binary()
    except EmbeddedEtcdError as exc:
        pytest.skip(str(exc))
    etcd = EmbeddedEtcd(tmp_path_factory.mktemp("etcd-session"))
    # Not tied to any event loop (a plain child process), so each step can
    # run on its own short-lived loop, outside the tests' loops.
    endpoint = asyncio.run(etcd.start())
    try:
        yield endpoint
    finally:
        asyncio.run(etcd.stop())


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses."""
    return f"/t/{uuid.uuid4().hex}/"


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("etcd", id="etcd", marks=pytest.mark.etcd),
    ]
)
def store_endpoint(request: pytest.FixtureRequest) -> str | None:
    """The etcd endpoint for the ``etcd`` param, None for ``memory``."""
    if request.param == "etcd":
        endpoint: str = request.getfixturevalue("etcd_endpoint")
        return endpoint
    return None


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
