"""The assignment journal (agent/pods/journal.py): a burst of sets written coalesced, newest last; a
failed write tried again; the flush on exit, which never puts an older set over a newer one; torn
files; owner-only mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.pods.journal import AssignmentJournal
from protos.corral.v1 import node_service_pb2, pod_pb2

WAIT = 5.0


def assignment(epoch: int) -> node_service_pb2.AssignmentSet:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.uid = f"p{epoch}", f"uid-{epoch}"
    return node_service_pb2.AssignmentSet(epoch=epoch, pods=[p])


def saved_epoch(path: Path) -> int | None:
    saved = AssignmentJournal(path).load()
    return None if saved is None else saved.epoch


async def eventually(check: Callable[[], object]) -> None:
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def writing(journal: AssignmentJournal) -> AsyncIterator[None]:
    task = asyncio.create_task(journal.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- the writer ------------------------------------------------------------------------


async def test_a_burst_of_records_is_written_coalesced_newest_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "assignments.pb"
    journal = AssignmentJournal(path)
    started: list[int] = []
    first_held = threading.Event()
    save = journal._save

    def held_save(a: node_service_pb2.AssignmentSet) -> None:
        started.append(a.epoch)
        if a.epoch == 1:  # a slow card: the burst arrives while the first set is being written
            first_held.wait(WAIT)
        save(a)

    monkeypatch.setattr(journal, "_save", held_save)
    async with writing(journal):
        journal.record(assignment(1))
        await eventually(lambda: started == [1])
        for epoch in range(2, 21):
            journal.record(assignment(epoch))
        first_held.set()
        await eventually(lambda: saved_epoch(path) == 20)
    assert started == [1, 20]


def record_2(journal: AssignmentJournal) -> None:
    journal.record(assignment(2))


def flush(journal: AssignmentJournal) -> None:
    journal.flush()


@pytest.mark.parametrize(
    ("retry", "expected"),
    [
        pytest.param(record_2, 2, id="next-record"),
        pytest.param(flush, 1, id="flush-on-exit"),
    ],
)
async def test_a_failed_write_is_logged_and_tried_again(
    tmp_path: Path, retry: Callable[[AssignmentJournal], None], expected: int
) -> None:
    data_dir = tmp_path / "data"  # not there yet: the write fails
    path = data_dir / "assignments.pb"
    journal = AssignmentJournal(path)
    with capture_logs() as logs:
        async with writing(journal):
            journal.record(assignment(1))
            await eventually(lambda: any(e["event"] == "assignments_save_failed" for e in logs))
            data_dir.mkdir()
            retry(journal)
            await eventually(lambda: saved_epoch(path) is not None)
    failed = next(e for e in logs if e["event"] == "assignments_save_failed")
    assert failed["log_level"] == "warning" and failed["path"] == str(path)
    assert saved_epoch(path) == expected  # the newest set recorded


# -- the flush on exit ---------------------------------------------------------------------


def test_flush_writes_the_newest_pending_set(tmp_path: Path) -> None:
    path = tmp_path / "assignments.pb"
    journal = AssignmentJournal(path)
    journal.flush()
    assert not path.exists()  # nothing recorded, nothing written
    journal.record(assignment(1))
    journal.record(assignment(3))
    journal.flush()
    assert saved_epoch(path) == 3


class CountingExecutor(ThreadPoolExecutor):
    """One thread, so that what is submitted waits in line; counts what was submitted."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_a_write_that_lands_after_the_flush_does_not_undo_it(tmp_path: Path) -> None:
    """The writer's thread starts an older set's write only after the exit's flush wrote a newer one."""
    path = tmp_path / "assignments.pb"
    journal = AssignmentJournal(path)
    executor = CountingExecutor()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(executor)  # shut down with the test's loop
    busy = threading.Event()
    held = loop.run_in_executor(None, busy.wait, WAIT)  # the writer's thread is busy ...
    async with writing(journal):
        journal.record(assignment(1))
        await eventually(lambda: executor.submitted == 2)  # ... so the write of set 1 waits in line
        journal.record(assignment(2))
        journal.flush()
        assert saved_epoch(path) == 2
        busy.set()
        await held
        await loop.run_in_executor(None, lambda: None)  # behind the write of set 1: it has run
    assert saved_epoch(path) == 2


# -- the file --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(None, None, id="missing"),
        pytest.param(b"\x12\x10abc", None, id="torn"),
        pytest.param(b"hello", None, id="foreign"),
        pytest.param(assignment(7).SerializeToString(), 7, id="saved"),
    ],
)
def test_load(tmp_path: Path, content: bytes | None, expected: int | None) -> None:
    path = tmp_path / "assignments.pb"
    if content is not None:
        path.write_bytes(content)
    with capture_logs() as logs:
        assert saved_epoch(path) == expected
    unreadable = [e for e in logs if e["event"] == "assignments_file_unreadable"]
    assert len(unreadable) == (1 if content is not None and expected is None else 0)


@pytest.mark.parametrize(
    "leftover",
    [
        pytest.param(None, id="fresh"),
        pytest.param("assignments.tmp", id="a-torn-temporary-file-left-0644"),
        pytest.param("assignments.pb", id="an-older-file-0644"),
    ],
)
def test_the_file_is_owner_only(tmp_path: Path, leftover: str | None) -> None:
    """The pods in it carry their Secret values."""
    path = tmp_path / "assignments.pb"
    if leftover is not None:
        (tmp_path / leftover).write_bytes(b"")
        os.chmod(tmp_path / leftover, 0o644)
    journal = AssignmentJournal(path)
    journal.record(assignment(1))
    journal.flush()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert saved_epoch(path) == 1
