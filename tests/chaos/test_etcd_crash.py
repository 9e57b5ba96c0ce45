"""etcd killed (SIGKILL) at random moments under a steady write load, 20 times: every
acknowledged write is read back afterwards, and the data agree with what etcd had
acknowledged before each kill.

Run against the release corral recommends and embeds by default (Debian's etcd-server,
3.4.23), fsync'ing as in production. The checks, after every restart:

- HashKV (etcd's hash of its key-value history) at the last revision seen before the
  kill is the same after it: the replayed history is the one etcd acknowledged (what etcd
  issue 13766 broke in 3.5.0-3.5.2);
- at the end, every acknowledged create and the last acknowledged value of every
  updated key are there, and ``etcdutl snapshot status`` opens the stopped member's
  database at a revision no older than the last acknowledged write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from controlplane.store.embedded import EmbeddedEtcd, etcd_binary
from controlplane.store.errors import StoreError, UnavailableError
from controlplane.store.etcd import EtcdStore
from tests.conftest import etcd_of_major

pytestmark = [pytest.mark.etcd, pytest.mark.chaos, pytest.mark.timeout(300)]

KILLS = 20
WRITERS = 8
DEADLINE = 30.0  # seconds, for anything that waits on etcd
LOAD_SECONDS = (0.1, 0.8)  # the load runs this long (uniformly drawn) before each kill
RNG_SEED = 20
T = TypeVar("T")


@dataclass
class Acknowledged:
    """What etcd said it wrote: created keys and their values, each counter's last value."""

    creates: dict[str, bytes] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    revision: int = 0

    def saw(self, revision: int) -> None:
        self.revision = max(self.revision, revision)


async def writer(store: EtcdStore, n: int, acked: Acknowledged, stop: asyncio.Event) -> None:
    """Creates of new keys and compare-and-swap updates of one counter, as fast as etcd answers."""
    counter = f"/crash/counter/{n}"
    value, revision = 0, await store.create(counter, b"0")
    acked.counters[counter] = 0
    i = 0
    while not stop.is_set():
        i += 1
        try:
            key = f"/crash/keys/{n}/{i}"
            data = f"{n}-{i}".encode() * 20
            acked.saw(await store.create(key, data))
            acked.creates[key] = data
            revision = await store.update(counter, str(value + 1).encode(), expected_revision=revision)
            value += 1
            acked.counters[counter] = value
            acked.saw(revision)
        except UnavailableError:
            # Down, or killed mid-write: the write may or may not have landed (not acknowledged);
            # wait for etcd, then go on from what the counter holds.
            kv = await until_up(lambda: store.get(counter), stop)
            if kv is None:
                return
            value, revision = int(kv.value), kv.mod_revision
        except StoreError as exc:  # anything else is a failure of the test
            raise AssertionError(f"writer {n}: {exc!r}") from exc


async def until_up(call: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T | None:
    """``call()``'s result once etcd answers; None when the test is stopping meanwhile."""
    give_up = time.monotonic() + DEADLINE
    while True:
        try:
            return await call()
        except UnavailableError:
            if time.monotonic() > give_up:
                raise
            if stop.is_set():
                return None
            await asyncio.sleep(0.05)


async def test_sigkill_under_load_20_times_loses_no_acknowledged_write(
    tmp_path: Path, report: Callable[[str], None]
) -> None:
    rng = random.Random(RNG_SEED)
    etcd = EmbeddedEtcd(tmp_path, binary=etcd_of_major("3.4"))
    endpoint = await etcd.start()
    store = await EtcdStore.connect([endpoint], timeout=2.0)
    acked = Acknowledged()
    stop = asyncio.Event()
    writers = [asyncio.create_task(writer(store, n, acked, stop)) for n in range(WRITERS)]
    try:
        for kill in range(KILLS):
            await asyncio.sleep(rng.uniform(*LOAD_SECONDS))
            before = await store.current_revision()
            hashed = await store.hash_kv(before)

            etcd.kill()
            await etcd.start(same_ports=True, deadline=DEADLINE)

            after = await until_up(lambda: store.hash_kv(before), stop)  # noqa: B023 - awaited here
            assert after == hashed, f"kill {kill + 1}: history up to revision {before} differs after the restart"
            assert etcd.endpoint == endpoint
        stop.set()
        await asyncio.wait_for(asyncio.gather(*writers), DEADLINE)

        assert len(acked.creates) > KILLS  # the load did run between kills
        for key, data in acked.creates.items():
            kv = await store.get(key)
            assert kv is not None and kv.value == data, f"acknowledged create of {key} lost"
        for key, value in acked.counters.items():
            kv = await store.get(key)
            # The last acknowledged value, or one more when a write was applied but its answer lost.
            assert kv is not None and int(kv.value) in (value, value + 1), f"{key}: acknowledged {value}, read {kv}"
        report(
            f"etcd {etcd.release} SIGKILLed {KILLS} times under {WRITERS} writers: "
            f"{len(acked.creates)} acknowledged creates and {sum(acked.counters.values())} compare-and-swaps "
            "read back, HashKV unchanged across every restart"
        )
    finally:
        stop.set()
        for task in writers:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*writers, return_exceptions=True)
        await store.close()
        await etcd.stop()

    status = subprocess.run(
        [
            str(etcd_binary("etcdutl")),
            "snapshot",
            "status",
            str(tmp_path / "etcd" / "member" / "snap" / "db"),
            "-w",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["revision"] >= acked.revision
