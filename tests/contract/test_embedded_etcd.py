"""EmbeddedEtcd: data and ports survive restarts and crashes, the child never
outlives its parent, and EtcdStore reports an outage as temporary and heals;
the supervisor restarts a killed etcd, and one out of disk once space returns.

Each test runs its own etcd in a tmp dir (not the session one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from controlplane.store.base import WatchEvent
from controlplane.store.embedded import EmbeddedEtcd, etcd_binary
from controlplane.store.errors import EmbeddedEtcdError, UnavailableError
from controlplane.store.etcd import EtcdStore
from controlplane.store.supervisor import EtcdSupervisor
from corral.common.backoff import CrashLoopBackoff
from tests.conftest import ETCD_MAJORS, etcd_of_major

pytestmark = pytest.mark.etcd

DEADLINE = 20.0  # seconds, for anything that polls
T = TypeVar("T")


@pytest.fixture(params=ETCD_MAJORS, ids=[f"etcd{major}" for major in ETCD_MAJORS])
async def etcd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EmbeddedEtcd]:
    """An EmbeddedEtcd of each release line on tmp_path, not started; stopped at the end whatever happens."""
    embedded = EmbeddedEtcd(tmp_path, binary=etcd_of_major(request.param))
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


async def test_the_wheels_release_is_warned_about_at_every_start(tmp_path: Path) -> None:
    etcd = EmbeddedEtcd(tmp_path, binary=etcd_binary())
    try:
        with capture_logs() as logs:
            await etcd.start()
            await etcd.stop()
            await etcd.start()
    finally:
        await etcd.stop()

    warnings = [e for e in logs if e["event"] == "etcd_release_not_recommended"]
    assert len(warnings) == 2
    assert all(e["log_level"] == "warning" and e["version"] == "3.5.1" for e in warnings)
    assert "etcd issue 13766" in warnings[0]["message"] and "apt-get install etcd-server" in warnings[0]["message"]
    assert etcd.release == (3, 5, 1)


async def test_history_is_compacted_after_an_hour(etcd: EmbeddedEtcd) -> None:
    await etcd.start()

    config = etcd.last_output()

    # Without it etcd keeps every revision until its quota raises the NOSPACE alarm.
    assert '"auto-compaction-mode":"periodic"' in config
    assert '"auto-compaction-retention":"1h0m0s"' in config


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
        from controlplane.store.embedded import EmbeddedEtcd, etcd_binary

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


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 160 MiB tmpfs of the test's own (etcd preallocates 64 MB WAL files, two at a time), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until its filesystem is full."""
    with path.open("wb", buffering=0) as f:
        for size in (2**20, 4096):
            with contextlib.suppress(OSError):
                for _ in range(2**20 // size * 1024):
                    f.write(b"\0" * size)


async def write_until_refused(store: EtcdStore) -> None:
    for i in range(200):
        await store.create(f"/big/{i}", b"x" * 100_000)


def told(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    """The supervisor's events a server log shows (debug is not)."""
    return [e for e in logs if e["event"].startswith("embedded_etcd") and e["log_level"] != "debug"]


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_killed_etcd_is_restarted_on_its_ports_by_the_supervisor(etcd: EmbeddedEtcd) -> None:
    endpoint = await etcd.start()
    store = await EtcdStore.connect([endpoint], timeout=2.0)
    supervisor = EtcdSupervisor(etcd, CrashLoopBackoff(initial=0.1, cap=0.5), check_period=0.05)
    task = asyncio.create_task(supervisor.run())
    try:
        await store.create("/k", b"before")
        pid = etcd.pid
        assert pid is not None
        with capture_logs() as logs:
            os.kill(pid, signal.SIGKILL)
            await wait_for(lambda: supervisor.restarts == 1, "the restart")

        assert etcd.endpoint == endpoint
        assert [e["event"] for e in told(logs)] == ["embedded_etcd_exited", "embedded_etcd_restarted"]
        assert logs[0]["reason"] == "killed by SIGKILL"
        assert await eventually(lambda: store.create("/k2", b"after")) > 0
        kv = await store.get("/k")
        assert kv is not None and kv.value == b"before"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def test_a_full_disk_is_one_clear_line_and_etcd_comes_back_when_space_returns(small_disk: Path) -> None:
    etcd = EmbeddedEtcd(small_disk)
    endpoint = await etcd.start()
    store = await EtcdStore.connect([endpoint], timeout=2.0)
    supervisor = EtcdSupervisor(etcd, CrashLoopBackoff(initial=0.1, cap=0.3), check_period=0.05)
    task = asyncio.create_task(supervisor.run())
    filler = small_disk / "filler"
    try:
        await store.create("/kept", b"acknowledged")
        with capture_logs() as logs:
            fill(filler)
            with pytest.raises(UnavailableError):  # etcd dies on its first write that needs space
                await write_until_refused(store)
            # Restarts keep failing while the disk is full: still the one line.
            await wait_for(lambda: supervisor.failed_starts >= 3, "restarts on the full disk")
            said = told(logs)
            assert [e["event"] for e in said] == ["embedded_etcd_disk_full"]
            assert said[0]["log_level"] == "error"
            assert f"the disk holding {small_disk} is full" in said[0]["message"]
            assert "free some space" in said[0]["message"]

            filler.unlink()

            await wait_for(lambda: supervisor.restarts == 1, "the restart once space returned")
        assert [e["event"] for e in told(logs)] == ["embedded_etcd_disk_full", "embedded_etcd_restarted"]
        assert await eventually(lambda: store.create("/after", b"written")) > 0
        kv = await store.get("/kept")
        assert kv is not None and kv.value == b"acknowledged"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
        await etcd.stop()
