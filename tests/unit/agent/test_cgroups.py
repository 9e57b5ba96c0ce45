"""Container CPU and memory from cgroup files: the parsers, and the reader over fake cgroup trees
of every layout (cgroup v1 and v2, cgroupfs and systemd drivers, hybrid, a custom parent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.runtime.base import ContainerStats
from agent.runtime.cgroups import (
    CgroupReader,
    Hierarchies,
    Mount,
    parse_cpu_ns,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_working_set,
    working_set,
)

CID = "3d84ed6ad7dc3c9459e27628607c39d0061a5aca1533f79c8a6e142b76a00f01"
PID = 4242

# /proc/self/mountinfo of this machine kind (hybrid: v1 controllers, v2 at /sys/fs/cgroup/unified).
HYBRID_MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
33 31 0:29 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
35 31 0:31 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
40 31 0:36 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,name=systemd
41 31 0:37 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw
"""


# -- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            HYBRID_MOUNTINFO,
            Hierarchies(
                v1={
                    "cpu": Mount(Path("/sys/fs/cgroup/cpu")),
                    "cpuacct": Mount(Path("/sys/fs/cgroup/cpuacct")),
                    "memory": Mount(Path("/sys/fs/cgroup/memory")),
                    "name=systemd": Mount(Path("/sys/fs/cgroup/systemd")),
                },
                v2=Mount(Path("/sys/fs/cgroup/unified")),
            ),
            id="hybrid",
        ),
        pytest.param(
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
            Hierarchies(v2=Mount(Path("/sys/fs/cgroup"))),
            id="v2-only",
        ),
        pytest.param(
            "30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw shared:12 - cgroup cgroup rw,cpu,cpuacct\n",
            Hierarchies(
                v1={
                    "cpu": Mount(Path("/sys/fs/cgroup/cpu,cpuacct")),
                    "cpuacct": Mount(Path("/sys/fs/cgroup/cpu,cpuacct")),
                }
            ),
            id="v1-cpu-and-cpuacct-together",
        ),
        pytest.param(
            "50 40 0:31 /docker/abc /cg\\040mem rw - cgroup cgroup rw,memory\n",
            Hierarchies(v1={"memory": Mount(Path("/cg mem"), "/docker/abc")}),
            id="escaped-path-and-a-mount-of-a-subtree",
        ),
        pytest.param("garbage\n\n12 1 0:1 / /x rw - ext4\n", Hierarchies(), id="no-cgroups"),
    ],
)
def test_parse_mountinfo(text: str, expected: Hierarchies) -> None:
    assert parse_mountinfo(text) == expected


def test_parse_proc_cgroup_per_controller_and_v2() -> None:
    text = "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n"

    v1, v2 = parse_proc_cgroup(text)

    assert v1 == dict.fromkeys(["cpu", "cpuacct", "memory", "name=systemd"], "/docker/abc")
    assert v2 == "/docker/abc"
    assert parse_proc_cgroup("0::/system.slice/docker-x.scope\n") == ({}, "/system.slice/docker-x.scope")


@pytest.mark.parametrize(
    ("text", "v2", "expected"),
    [
        pytest.param("3421126826\n", False, 3_421_126_826, id="v1-cpuacct-usage"),
        pytest.param(
            "usage_usec 3421126\nuser_usec 3393452\nsystem_usec 27674\n", True, 3_421_126_000, id="v2-cpu-stat"
        ),
    ],
)
def test_parse_cpu_ns(text: str, v2: bool, expected: int) -> None:
    assert parse_cpu_ns(text, v2=v2) == expected


@pytest.mark.parametrize(
    ("text", "v2"),
    [
        pytest.param("", False, id="v1-empty"),
        pytest.param("user_usec 5\n", True, id="v2-without-usage"),
    ],
)
def test_unreadable_cpu_figures_are_errors(text: str, v2: bool) -> None:
    with pytest.raises(ValueError):
        parse_cpu_ns(text, v2=v2)


V1_STAT = "cache 1519616\nrss 53248\ninactive_file 1000000\ntotal_inactive_file 1511424\n"
V2_STAT = "anon 6000000\nfile 4000000\ninactive_file 2500000\nactive_file 1500000\n"


@pytest.mark.parametrize(
    ("usage", "stat", "v2", "expected"),
    [
        pytest.param("2129920\n", V1_STAT, False, 2_129_920 - 1_511_424, id="v1-minus-total-inactive-file"),
        pytest.param("10000000\n", V2_STAT, True, 7_500_000, id="v2-minus-inactive-file"),
        pytest.param("1000\n", V1_STAT, False, 1000, id="inactive-above-usage"),
        pytest.param("5000\n", "rss 5000\n", False, 5000, id="no-inactive-file"),
    ],
)
def test_parse_working_set(usage: str, stat: str, v2: bool, expected: int) -> None:
    assert parse_working_set(usage, stat, v2=v2) == expected


def test_working_set_never_goes_below_zero() -> None:
    assert working_set(10, 3) == 7
    assert working_set(10, 10) == 10
    assert working_set(10, 11) == 10


# -- the reader over fake trees -----------------------------------------------------------


def write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


V1_CPU = {"cpuacct.usage": "2000000000\n"}
V1_MEMORY = {"memory.usage_in_bytes": "9000000\n", "memory.stat": "total_inactive_file 1000000\n"}
V2_FILES = {
    "cpu.stat": "usage_usec 3000000\nuser_usec 2000000\n",
    "memory.current": "12000000\n",
    "memory.stat": "inactive_file 2000000\n",
}
V1_STATS = ContainerStats(cpu_ns=2_000_000_000, memory_bytes=8_000_000)
V2_STATS = ContainerStats(cpu_ns=3_000_000_000, memory_bytes=10_000_000)


def v1_tree(root: Path, cgroup: str) -> Hierarchies:
    write(root / "cpuacct" / cgroup, V1_CPU)
    write(root / "memory" / cgroup, V1_MEMORY)
    return Hierarchies(v1={"cpuacct": Mount(root / "cpuacct"), "memory": Mount(root / "memory")})


def v2_tree(root: Path, cgroup: str) -> Hierarchies:
    write(root / cgroup, V2_FILES)
    return Hierarchies(v2=Mount(root))


def hybrid_tree(root: Path, cgroup: str) -> Hierarchies:
    """v1 controllers, and a v2 tree without controllers: it has cpu.stat but no memory files."""
    hierarchies = v1_tree(root, cgroup)
    write(root / "unified" / cgroup, {"cpu.stat": "usage_usec 1\n"})
    return Hierarchies(v1=hierarchies.v1, v2=Mount(root / "unified"))


@pytest.mark.parametrize(
    ("layout", "cgroup", "expected"),
    [
        pytest.param(v1_tree, f"docker/{CID}", V1_STATS, id="v1-cgroupfs"),
        pytest.param(v1_tree, f"system.slice/docker-{CID}.scope", V1_STATS, id="v1-systemd"),
        pytest.param(v2_tree, f"docker/{CID}", V2_STATS, id="v2-cgroupfs"),
        pytest.param(v2_tree, f"system.slice/docker-{CID}.scope", V2_STATS, id="v2-systemd"),
        pytest.param(hybrid_tree, f"docker/{CID}", V1_STATS, id="hybrid-reads-v1"),
    ],
)
def test_containers_are_found_by_id_in_every_docker_layout(
    tmp_path: Path, layout: object, cgroup: str, expected: ContainerStats
) -> None:
    assert callable(layout)
    reader = CgroupReader(layout(tmp_path / "cgroup", cgroup), proc=tmp_path / "proc")

    found = reader.locate(CID)

    assert found is not None
    assert reader.read(found) == expected


@pytest.mark.parametrize(
    ("layout", "proc_cgroup", "cgroup", "expected"),
    [
        pytest.param(
            v1_tree, "4:memory:/corral/{cid}\n2:cpuacct:/corral/{cid}\n0::/\n", "corral/{cid}", V1_STATS, id="v1"
        ),
        pytest.param(
            v2_tree,
            "0::/user.slice/user-1000.slice/docker-{cid}.scope\n",
            "user.slice/user-1000.slice/docker-{cid}.scope",
            V2_STATS,
            id="v2-rootless",
        ),
    ],
)
def test_containers_elsewhere_are_found_by_their_main_process(
    tmp_path: Path, layout: object, proc_cgroup: str, cgroup: str, expected: ContainerStats
) -> None:
    assert callable(layout)
    reader = CgroupReader(layout(tmp_path / "cgroup", cgroup.format(cid=CID)), proc=tmp_path / "proc")
    write(tmp_path / "proc" / str(PID), {"cgroup": proc_cgroup.format(cid=CID)})

    assert reader.locate(CID) is None, "not in a layout Docker makes by default"
    found = reader.locate(CID, PID)

    assert found is not None
    assert reader.read(found) == expected


def test_a_mount_of_a_subtree_maps_the_process_paths_under_it(tmp_path: Path) -> None:
    write(tmp_path / "cpuacct" / "pod" / "c1", V1_CPU)
    write(tmp_path / "memory" / "pod" / "c1", V1_MEMORY)
    # As inside a cgroup namespace: the mount shows the hierarchy from /outer down.
    hierarchies = Hierarchies(
        v1={"cpuacct": Mount(tmp_path / "cpuacct", "/outer"), "memory": Mount(tmp_path / "memory", "/outer")}
    )
    write(tmp_path / "proc" / str(PID), {"cgroup": "3:cpuacct:/outer/pod/c1\n2:memory:/outer/pod/c1\n"})
    reader = CgroupReader(hierarchies, proc=tmp_path / "proc")

    found = reader.locate("c1", PID)

    assert found is not None and reader.read(found) == V1_STATS
    assert Mount(tmp_path, "/outer").directory("/other/c1") is None


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda root: Hierarchies(), id="no-hierarchies"),
        pytest.param(lambda root: v1_tree(root, "docker/someone-else"), id="not-there"),
        pytest.param(
            lambda root: Hierarchies(v1={**v1_tree(root, f"docker/{CID}").v1, "memory": Mount(root / "nowhere")}),
            id="cpu-without-memory",
        ),
    ],
)
def test_no_cgroup_found_is_none(tmp_path: Path, setup: object) -> None:
    assert callable(setup)
    reader = CgroupReader(setup(tmp_path / "cgroup"), proc=tmp_path / "proc")

    assert reader.locate(CID) is None
    assert reader.locate(CID, PID) is None, "a process that is gone tells nothing either"


def test_reading_a_cgroup_that_went_away_raises_file_not_found(tmp_path: Path) -> None:
    reader = CgroupReader(v2_tree(tmp_path, f"docker/{CID}"))
    found = reader.locate(CID)
    assert found is not None
    for name in V2_FILES:
        (tmp_path / "docker" / CID / name).unlink()

    with pytest.raises(FileNotFoundError):
        reader.read(found)


def test_the_host_reader_reads_mountinfo_and_has_no_hierarchies_without_it(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(HYBRID_MOUNTINFO)

    assert CgroupReader.of_host(tmp_path / "mountinfo").hierarchies.v2 == Mount(Path("/sys/fs/cgroup/unified"))
    assert CgroupReader.of_host(tmp_path / "absent").hierarchies == Hierarchies()
