"""Secrets through the real API and a real etcd: encrypted in etcd, plain to API clients."""

import asyncio
import os
import stat
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from controlplane.server import ServerConfig, ServerError, start
from controlplane.store.encryption import HEADER, KEY_FILE
from controlplane.store.etcd import EtcdStore
from corral import client as api
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import secret_pb2
from tests.pki import admin_of

pytestmark = pytest.mark.etcd

PLAINTEXT = b"s3cr3t-" + uuid.uuid4().hex.encode()


def secret(value: bytes = PLAINTEXT) -> secret_pb2.Secret:
    s = secret_pb2.Secret()
    s.metadata.name = "db"
    s.string_data["password"] = value.decode()
    return s


@pytest.fixture
async def server(etcd_endpoint: str, tmp_path: Path) -> AsyncIterator[tuple[str, Credentials, str, Path]]:
    prefix = f"/sec/{uuid.uuid4().hex}"
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=prefix, data_dir=tmp_path / "cp")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        yield running.address, admin_of(running), prefix, tmp_path / "cp"


async def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def test_secret_values_are_encrypted_in_etcd_and_plain_through_the_api(
    server: tuple[str, Credentials, str, Path], etcd_endpoint: str
) -> None:
    address, admin, prefix, data_dir = server
    assert stat.S_IMODE(os.stat(data_dir / KEY_FILE).st_mode) == 0o600
    c = api.Client(address, admin)
    created = await call(c.apply, secret())
    watch = c.watch("Secret", "default", resource_version=str(int(created.obj.metadata.resource_version) - 1))
    raw_store = await EtcdStore.connect([etcd_endpoint])
    try:
        raw = await raw_store.get(f"{prefix}/registry/secrets/default/db")
        assert raw is not None
        assert raw.value.startswith(HEADER)
        assert PLAINTEXT not in raw.value and b"password" not in raw.value
    finally:
        await raw_store.close()
    got = await call(c.get, "Secret", "db", "default")
    assert isinstance(got, secret_pb2.Secret) and got.data["password"] == PLAINTEXT and not got.string_data
    listed, _ = await call(c.list, "Secret", "default")
    assert [s.data["password"] for s in listed] == [PLAINTEXT]
    first = await call(next, iter(watch))
    assert first.obj.data["password"] == PLAINTEXT
    c.close()


async def test_a_replica_with_another_key_names_the_key_in_its_error(
    server: tuple[str, Credentials, str, Path], etcd_endpoint: str, tmp_path: Path
) -> None:
    address, admin, prefix, _ = server
    c = api.Client(address, admin)
    await call(c.apply, secret())
    c.close()
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=prefix, data_dir=tmp_path / "other")
    async with AsyncExitStack() as stack:
        other = await start(config, stack)
        c2 = api.Client(other.address, admin_of(other))
        with pytest.raises(api.ClientError, match=r"cannot decrypt .*secrets/default/db.*secrets\.key"):
            await call(c2.get, "Secret", "db", "default")
        c2.close()


async def test_an_unreadable_key_file_stops_the_server(etcd_endpoint: str, tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"too short")
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], data_dir=tmp_path)
    async with AsyncExitStack() as stack:
        with pytest.raises(ServerError, match="secrets.key holds 9 bytes"):
            await start(config, stack)
