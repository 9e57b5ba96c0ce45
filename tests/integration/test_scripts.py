"""The setup scripts: a daemon they start (dockerd) is detached from the caller's session, so
Ctrl-C on `./scripts/up` stops corral but not the engine and every pod's container with it.

Run with fakes first on PATH: a ``dockerd`` that, as Go programs do, dies on SIGINT, and a
``docker`` that answers once that dockerd runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 30.0

FAKE_DOCKERD = f"""#!{sys.executable}
import os, signal, time
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_DFL)  # Go's runtime takes SIGINT back even where the shell ignored it
state = Path(os.environ["FAKE_DOCKER_STATE"])
(state / "dockerd.pid").write_text(str(os.getpid()))
for _ in range(600):
    time.sleep(0.1)
"""

FAKE_DOCKER = """#!/bin/sh
# `docker info` answers once the fake dockerd runs; images "exist".
pid="$(cat "$FAKE_DOCKER_STATE/dockerd.pid" 2>/dev/null)" || exit 1
kill -0 "$pid" 2>/dev/null || exit 1
exit 0
"""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(") ", 1)[1].split()[0] != "Z"


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[dict[str, str]]:
    if not (Path("/bin/busybox").exists() and Path("/usr/sbin/nft").exists()) or os.geteuid() != 0:
        pytest.skip("docker-setup would install packages (needs busybox-static, nftables and root)")
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("dockerd", FAKE_DOCKERD), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DOCKER_STATE": str(state)}
    yield env
    pid_file = state / "dockerd.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_docker_setup_starts_dockerd_outside_the_callers_session(fake_engine: dict[str, str]) -> None:
    # The caller in a session of its own, as a terminal's shell running ./scripts/up.
    caller = subprocess.run(
        [str(REPO / "scripts" / "docker-setup")], env=fake_engine, capture_output=True, text=True,
        timeout=DEADLINE, start_new_session=True, check=False,
    )
    assert caller.returncode == 0, caller.stderr
    assert "starting dockerd" in caller.stderr
    dockerd = int((Path(fake_engine["FAKE_DOCKER_STATE"]) / "dockerd.pid").read_text())

    assert os.getsid(dockerd) == dockerd  # a session (and process group) of its own
    assert os.getpgid(dockerd) == dockerd


def test_ctrl_c_on_the_caller_leaves_dockerd_running(fake_engine: dict[str, str]) -> None:
    # `scripts/up` in a terminal: docker-setup, then corral in the foreground (here: sleep) until Ctrl-C.
    up = subprocess.Popen(
        ["bash", "-c", f"{REPO / 'scripts' / 'docker-setup'} && exec sleep 60"], env=fake_engine,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        pid_file = Path(fake_engine["FAKE_DOCKER_STATE"]) / "dockerd.pid"
        give_up = time.monotonic() + DEADLINE
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < give_up, "dockerd not started"
            time.sleep(0.05)
        dockerd = int(pid_file.read_text())
        # `exec sleep` runs once docker-setup is done: wait for it to be the foreground program.
        while Path(f"/proc/{up.pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < give_up, "docker-setup did not finish"
            time.sleep(0.05)

        os.killpg(up.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground process group
        up.wait(timeout=DEADLINE)

        assert pid_alive(dockerd)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
