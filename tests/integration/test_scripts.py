"""The setup scripts, run with fakes first on PATH.

- docker-setup: a daemon it starts (dockerd) is detached from the caller's session, so Ctrl-C
  on `./scripts/up` stops corral but not the engine and every pod's container with it (a
  fake ``dockerd`` that, as Go programs do, dies on SIGINT; a ``docker`` that answers once
  it runs);
- etcd-setup: Debian's etcd-server is installed without its service being started or
  enabled (a fake ``apt-get``, ``deb-systemd-helper`` and ``update-rc.d``)."""

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
        [str(REPO / "scripts" / "docker-setup")],
        env=fake_engine,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        start_new_session=True,
        check=False,
    )
    assert caller.returncode == 0, caller.stderr
    assert "starting dockerd" in caller.stderr
    dockerd = int((Path(fake_engine["FAKE_DOCKER_STATE"]) / "dockerd.pid").read_text())

    assert os.getsid(dockerd) == dockerd  # a session (and process group) of its own
    assert os.getpgid(dockerd) == dockerd


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_the_caller_leaves_dockerd_running(fake_engine: dict[str, str]) -> None:
    # `scripts/up` in a terminal: docker-setup, then corral in the foreground (here: sleep) until Ctrl-C.
    up = subprocess.Popen(
        ["bash", "-c", f"{REPO / 'scripts' / 'docker-setup'} && exec sleep 60"],
        env=fake_engine,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # A terminal's shell runs its foreground job with SIGINT at its default; this test may itself run
        # with SIGINT ignored (a background job of a script, as CI starts it), which children would inherit.
        preexec_fn=_sigint_default,
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


FAKE_APT_GET = """#!/bin/sh
# Records its calls; `install etcd-server` checks that no service may start (policy-rc.d
# answers 101, as Debian's postinst asks it) and "installs" an etcd that prints its version.
echo "apt-get $*" >>"$FAKE_APT_LOG"
case "$*" in
  *install*etcd-server*)
    "$CORRAL_ETCD_SETUP_POLICY" etcd start; echo "policy-rc.d etcd start: $?" >>"$FAKE_APT_LOG"
    printf '#!/bin/sh\\necho "etcd Version: 3.4.23"\\n' >"$CORRAL_ETCD_SETUP_BINARY"
    chmod 755 "$CORRAL_ETCD_SETUP_BINARY";;
  *install*nginx-light*)
    "$CORRAL_NGINX_SETUP_POLICY" nginx start; echo "policy-rc.d nginx start: $?" >>"$FAKE_APT_LOG"
    printf '#!/bin/sh\\necho "nginx version: nginx/1.22.1" >&2\\n' >"$CORRAL_NGINX_SETUP_BINARY"
    chmod 755 "$CORRAL_NGINX_SETUP_BINARY";;
esac
"""

FAKE_RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >>"$FAKE_APT_LOG"
"""


@pytest.fixture
def fake_debian(tmp_path: Path) -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("etcd-setup installs only as root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (
        ("apt-get", FAKE_APT_GET),
        ("deb-systemd-helper", FAKE_RECORDER),
        ("update-rc.d", FAKE_RECORDER),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "debian_version").write_text("12.0\n")
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_APT_LOG": str(tmp_path / "calls.log"),
        "CORRAL_ETCD_SETUP_BINARY": str(tmp_path / "etcd"),
        "CORRAL_ETCD_SETUP_POLICY": str(tmp_path / "policy-rc.d"),
        "CORRAL_ETCD_SETUP_DEBIAN_VERSION": str(tmp_path / "debian_version"),
        "CORRAL_NGINX_SETUP_BINARY": str(tmp_path / "nginx"),
        "CORRAL_NGINX_SETUP_POLICY": str(tmp_path / "policy-rc.d"),
        "CORRAL_NGINX_SETUP_DEBIAN_VERSION": str(tmp_path / "debian_version"),
        "CORRAL_NGINX_SETUP_SERVICE_PID": str(tmp_path / "nginx-service.pid"),
    }


def etcd_setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / "etcd-setup"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_etcd_setup_installs_etcd_server_without_starting_or_enabling_its_service(
    fake_debian: dict[str, str],
) -> None:
    result = etcd_setup(fake_debian)

    assert result.returncode == 0, result.stderr
    calls = Path(fake_debian["FAKE_APT_LOG"]).read_text().splitlines()
    assert calls == [
        "apt-get update -qq",
        "apt-get install -y -qq etcd-server",
        "policy-rc.d etcd start: 101",  # Debian's postinst may not start etcd.service
        "deb-systemd-helper disable etcd.service",  # nor is it started at boot
        "update-rc.d etcd disable",
    ]
    assert not Path(fake_debian["CORRAL_ETCD_SETUP_POLICY"]).exists()  # the temporary policy is gone
    assert f"etcd Version: 3.4.23 at {fake_debian['CORRAL_ETCD_SETUP_BINARY']}" in result.stderr

    again = etcd_setup(fake_debian)  # installed: nothing to do

    assert again.returncode == 0
    assert len(Path(fake_debian["FAKE_APT_LOG"]).read_text().splitlines()) == len(calls)


def test_etcd_setup_off_debian_says_so_and_fails_only_when_required(fake_debian: dict[str, str]) -> None:
    Path(fake_debian["CORRAL_ETCD_SETUP_DEBIAN_VERSION"]).unlink()

    best_effort = etcd_setup(fake_debian)
    required = etcd_setup(fake_debian, "--require")

    assert best_effort.returncode == 0
    assert "not Debian" in best_effort.stderr and "not recommended for production" in best_effort.stderr
    assert required.returncode == 1
    assert not Path(fake_debian["FAKE_APT_LOG"]).exists()


def nginx_setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "scripts" / "nginx-setup"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_nginx_setup_installs_nginx_light_and_keeps_its_service_off_the_ports(fake_debian: dict[str, str]) -> None:
    # Debian's nginx service runs (a process of ours stands in for it): it is stopped. Like an
    # nginx master it handles SIGQUIT itself: a plain `sleep` would inherit the SIGQUIT that a
    # non-interactive shell ignores for background jobs (scripts/test runs pytest that way).
    service = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGQUIT, signal.SIG_DFL); print('ready', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert service.stdout is not None and service.stdout.readline() == "ready\n"
    Path(fake_debian["CORRAL_NGINX_SETUP_SERVICE_PID"]).write_text(f"{service.pid}\n")
    try:
        result = nginx_setup(fake_debian)
        assert "stopping Debian's nginx service" in result.stderr, result.stderr
        assert service.wait(timeout=DEADLINE) == -signal.SIGQUIT
    finally:
        service.kill()
        service.communicate()

    assert result.returncode == 0, result.stderr
    calls = Path(fake_debian["FAKE_APT_LOG"]).read_text().splitlines()
    assert calls == [
        "apt-get update -qq",
        "apt-get install -y -qq nginx-light",
        "policy-rc.d nginx start: 101",  # Debian's postinst may not start nginx.service
        "deb-systemd-helper disable nginx.service",  # nor is it started at boot
        "update-rc.d nginx disable",
    ]
    assert not Path(fake_debian["CORRAL_NGINX_SETUP_POLICY"]).exists()
    assert f"nginx/1.22.1 at {fake_debian['CORRAL_NGINX_SETUP_BINARY']}" in result.stderr
    assert "stopping Debian's nginx service" in result.stderr

    again = nginx_setup(fake_debian)  # installed: no apt-get again

    assert again.returncode == 0
    assert not [c for c in Path(fake_debian["FAKE_APT_LOG"]).read_text().splitlines()[len(calls) :] if "apt" in c]


def test_nginx_setup_off_debian_says_so_and_fails_only_when_required(fake_debian: dict[str, str]) -> None:
    Path(fake_debian["CORRAL_NGINX_SETUP_DEBIAN_VERSION"]).unlink()

    best_effort = nginx_setup(fake_debian)
    required = nginx_setup(fake_debian, "--require")

    assert best_effort.returncode == 0 and "not Debian" in best_effort.stderr and "Caddy" in best_effort.stderr
    assert required.returncode == 1
    assert not Path(fake_debian["FAKE_APT_LOG"]).exists()
