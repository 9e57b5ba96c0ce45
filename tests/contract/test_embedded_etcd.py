"""EmbeddedEtcd: data and ports survive restarts and crashes, the child never
outlives its parent, and EtcdStore reports an outage as temporary and heals.

Each test runs its own etcd in a tmp dir (not the session one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from controlplane.store.base import WatchEvent
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.errors import EmbeddedEtcdError, UnavailableError
from controlplane.store.etcd import EtcdStore

pytestmark = pytest.mark.etcd

DEADLINE = 20.0  # seconds, for anything that polls
T = TypeVar("T")


@pytest.fixture
async def etcd(tmp_path: Path) -> AsyncIterator[EmbeddedEtcd]:
    """An EmbeddedEtcd on tmp_path, not started; stopped at the end whatever happens."""
    embedded = EmbeddedEtcd(tmp_path)
    try:
        yield embedded
    finally:
        await embedded.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as dead.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


async def eventually(check: Callable[[], Awaitable[T]], *, deadline: float = DEADLINE) -> T:
    """``check()``'s result once it stops raising UnavailableError (or the deadline's error)."""
    give_up = time.monotonic() + deadline
    while True:
        try:
            return await check()
        except UnavailableError:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.1)


async def write(endpoint: str, key: str, value: bytes) -> None:
    store = await EtcdStore.connect([endpoint])
    try:
        await store.create(key, value)
    finally:
        await store.close()


async def read(endpoint: str, key: str) -> bytes | None:
    store = await EtcdStore.connect([endpoint])
    try:
        kv = await store.get(key)
        return kv.value if kv else None
    finally:
        await store.close()


async def first_event(store: EtcdStore, revision: int) -> WatchEvent:
    async with contextlib.aclosing(store.watch("/", start_revision=revision)) as events:
        return await asyncio.wait_for(anext(events), DEADLINE)


def saved_ports(etcd: EmbeddedEtcd) -> dict[str, int]:
    ports: dict[str, int] = json.loads(etcd.ports_path.read_text())
    return ports


async def test_data_and_ports_survive_a_stop_and_start(etcd: EmbeddedEtcd) -> None:
    endpoint = await etcd.start()
    assert endpoint == f"127.0.0.1:{saved_ports(etcd)['client']}"
    assert (etcd.data_dir / "etcd").is_dir()
    await write(endpoint, "/k", b"kept")

    await etcd.stop()
    assert not etcd.running
    again = await etcd.start()

    assert again == endpoint  # ports file reused
    assert await read(again, "/k") == b"kept"
    assert etcd.log_path.stat().st_size > 0


async def test_start_after_kill_recovers_the_data(etcd: EmbeddedEtcd) -> None:
    endpoint = await etcd.start()
    await write(endpoint, "/k", b"acknowledged")
    pid = etcd.pid
    assert pid is not None

    etcd.kill()

    assert not pid_alive(pid)
    assert await read(await etcd.start(), "/k") == b"acknowledged"


async def test_taken_ports_are_replaced_and_saved(etcd: EmbeddedEtcd) -> None:
    endpoint = await etcd.start()
    await write(endpoint, "/k", b"v")
    await etcd.stop()
    old_client = saved_ports(etcd)["client"]

    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", old_client))
        squatter.listen()
        moved = await etcd.start()

    assert moved != endpoint
    assert saved_ports(etcd)["client"] == int(moved.rsplit(":", 1)[1]) != old_client
    assert await read(moved, "/k") == b"v"


async def test_start_failure_raises_with_the_log_tail(etcd: EmbeddedEtcd) -> None:
    etcd.data_dir.mkdir(parents=True, exist_ok=True)
    (etcd.data_dir / "etcd").write_text("a file where etcd wants its data directory")

    with pytest.raises(EmbeddedEtcdError) as info:
        await etcd.start(deadline=DEADLINE)

    assert "exited" in str(info.value)
    assert str(etcd.data_dir / "etcd") in str(info.value)  # etcd's own complaint, from the log
    assert not etcd.running


async def read_pid(stdout: asyncio.StreamReader) -> int:
    """The pid from the ``ETCD_PID <pid>`` line (other lines are logs)."""
    while line := await stdout.readline():
        if line.startswith(b"ETCD_PID "):
            return int(line.split()[1])
    raise AssertionError("the parent exited without printing the etcd pid")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
async def test_etcd_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    parent_code = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from pathlib import Path
        from controlplane.store.embedded import EmbeddedEtcd

        etcd = EmbeddedEtcd(Path({str(tmp_path)!r}))
        asyncio.run(etcd.start())
        print("ETCD_PID", etcd.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = await asyncio.create_subprocess_exec(sys.executable, "-c", parent_code, stdout=asyncio.subprocess.PIPE)
    try:
        assert parent.stdout is not None
        etcd_pid = await asyncio.wait_for(read_pid(parent.stdout), DEADLINE)
        assert pid_alive(etcd_pid)

        parent.send_signal(signal.SIGKILL)
        await parent.wait()

        give_up = time.monotonic() + DEADLINE
        while pid_alive(etcd_pid) and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
        assert not pid_alive(etcd_pid)
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_store_reports_an_outage_as_temporary_and_recovers(etcd: EmbeddedEtcd) -> None:
    endpoint = await etcd.start()
    store = await EtcdStore.connect([endpoint], timeout=2.0)
    try:
        revision = await store.create("/k", b"1")
        events = store.watch("/", start_revision=revision)
        first = await asyncio.wait_for(anext(events), DEADLINE)
        assert first.key == "/k"

        etcd.kill()

        with pytest.raises(UnavailableError) as watch_error:
            await asyncio.wait_for(anext(events), DEADLINE)
        assert watch_error.value.temporary
        with pytest.raises(UnavailableError):
            await store.get("/k")

        await etcd.start()
        kv = await eventually(lambda: store.get("/k"))
        assert kv is not None
        assert kv.value == b"1"
        assert await eventually(lambda: first_event(store, revision)) == first
    finally:
        await store.close()


async def test_connect_tries_endpoints_in_order(etcd: EmbeddedEtcd) -> None:
    endpoint = await etcd.start()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"

    store = await EtcdStore.connect([dead, endpoint], timeout=2.0)
    try:
        assert store.endpoint == endpoint
        assert await store.current_revision() >= 1
    finally:
        await store.close()
    with pytest.raises(UnavailableError) as info:
        await EtcdStore.connect([dead], timeout=2.0)
    assert dead in str(info.value)
