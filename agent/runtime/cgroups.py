"""Container CPU time and memory straight from the cgroup files, as the kubelet's cAdvisor reads them.

The Docker engine's stats API is the slow and fragile way to these figures: each
one-shot call takes about a second (the engine waits for a second sample), and
on some hosts it answers `total_usage: 0` and empty memory stats ("no metrics
received" in the dockerd log) while the kernel's files hold the real numbers.
This module reads those files.

Where a container's cgroup is, per hierarchy (`<mount>` is where the hierarchy
is mounted, found in /proc/self/mountinfo):

- by its id, in the layouts Docker makes: `<mount>/docker/<id>` (cgroupfs
  driver) and `<mount>/system.slice/docker-<id>.scope` (systemd driver), on
  cgroup v1 (the cpuacct and memory hierarchies) and v2 alike;
- otherwise (a `--cgroup-parent`, rootless Docker, …) from the paths in
  /proc/<pid>/cgroup of the container's main process.

The figures:

- CPU: cumulative nanoseconds, v1 `cpuacct.usage`, v2 `usage_usec` of `cpu.stat`;
- memory: the working set, usage minus the inactive file cache (what the
  kubelet counts and evicts on): v1 `memory.usage_in_bytes` minus
  `total_inactive_file` of `memory.stat`, v2 `memory.current` minus `inactive_file`.

Each figure comes from the first hierarchy that has its file: v1 before v2, so
a hybrid host (v1 controllers, and v2 mounted at /sys/fs/cgroup/unified with no
controllers; its `cpu.stat` exists, `memory.current` does not) reads both from v1.

Parsing is pure (text in, numbers out). `CgroupReader` does the file reads over
a `Hierarchies` value, so tests point it at a tree under a temporary directory.
Reading a container whose cgroup has gone (it stopped) raises FileNotFoundError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.runtime.base import ContainerStats

MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
FULL_ID = re.compile(r"^[0-9a-f]{64}$")


# -- where the hierarchies are ------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A mounted cgroup hierarchy: where, and which of its cgroups is the mount's top ("/" mostly)."""

    path: Path
    root: str = "/"

    def directory(self, cgroup: str) -> Path | None:
        """The directory of `cgroup` (a path in the hierarchy, as /proc/<pid>/cgroup gives it); None
        when this mount does not show it."""
        root = self.root.rstrip("/")
        if root and cgroup != root and not cgroup.startswith(root + "/"):
            return None
        relative = cgroup[len(root) :].strip("/")
        return self.path / relative if relative else self.path


@dataclass(frozen=True)
class Hierarchies:
    """The cgroup v1 hierarchies by controller name, and the v2 (unified) one."""

    v1: Mapping[str, Mount] = field(default_factory=dict)
    v2: Mount | None = None


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> Hierarchies:
    """The cgroup hierarchies of a /proc/<pid>/mountinfo; the first mount of each wins."""
    v1: dict[str, Mount] = {}
    v2: Mount | None = None
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        mount = Mount(Path(_unescape(fields[4])), _unescape(fields[3]))
        if tail[0] == "cgroup2" and v2 is None:
            v2 = mount
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option not in ("rw", "ro"):  # the others name the hierarchy's controllers (and flags)
                    v1.setdefault(option, mount)
    return Hierarchies(v1=v1, v2=v2)


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """The cgroup of a process per v1 controller, and its v2 cgroup, from /proc/<pid>/cgroup."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and not controllers:
            v2 = path
        else:
            for controller in controllers.split(","):
                v1[controller] = path
    return v1, v2


def id_cgroups(container_id: str) -> tuple[str, ...]:
    """Where Docker puts a container's cgroup: cgroupfs driver, then systemd driver."""
    return (f"/docker/{container_id}", f"/system.slice/docker-{container_id}.scope")


# -- the figures ----------------------------------------------------------------------


def working_set(usage: int, inactive_file: int) -> int:
    """Usage minus the inactive file cache, as the kubelet counts it (never below zero: usage then)."""
    return usage - inactive_file if inactive_file < usage else usage


def parse_flat_keyed(text: str) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def parse_cpu_ns(text: str, *, v2: bool) -> int:
    """Cumulative CPU time in nanoseconds: v1 `cpuacct.usage` (ns), v2 `cpu.stat` (usage_usec)."""
    if not v2:
        return int(text.strip())
    stat = parse_flat_keyed(text)
    if "usage_usec" not in stat:
        raise ValueError("cpu.stat has no usage_usec")
    return stat["usage_usec"] * 1000


def parse_working_set(usage_text: str, stat_text: str, *, v2: bool) -> int:
    """The working set from v1 `memory.usage_in_bytes` and `memory.stat`, or v2 `memory.current` and `memory.stat`."""
    stat = parse_flat_keyed(stat_text)
    inactive = stat.get("inactive_file" if v2 else "total_inactive_file", 0)
    return working_set(int(usage_text.strip()), inactive)


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A cgroup directory to read one figure from, and whether it is cgroup v2."""

    directory: Path
    v2: bool


@dataclass(frozen=True)
class ContainerCgroup:
    """Where a container's CPU time and memory are read."""

    cpu: Source
    memory: Source


# The file that tells whether a directory holds a figure: (v1 controller, v1 file, v2 file).
_CPU = ("cpuacct", "cpuacct.usage", "cpu.stat")
_MEMORY = ("memory", "memory.usage_in_bytes", "memory.current")


class CgroupReader:
    """Finds containers' cgroups and reads their figures (see the module docstring)."""

    def __init__(self, hierarchies: Hierarchies, *, proc: Path = Path("/proc")) -> None:
        self.hierarchies = hierarchies
        self._proc = proc

    @classmethod
    def of_host(cls, mountinfo: Path = MOUNTINFO) -> CgroupReader:
        """The hierarchies this process sees; none (everything falls back) when mountinfo is unreadable."""
        try:
            return cls(parse_mountinfo(mountinfo.read_text()))
        except OSError:
            return cls(Hierarchies())

    def locate(self, container_id: str, pid: int | None = None) -> ContainerCgroup | None:
        """The container's cgroup by its (full) id, else by its main process; None when not found."""
        v1_paths: dict[str, list[str]] = {"cpuacct": [], "memory": []}
        v2_paths: list[str] = []
        if FULL_ID.match(container_id):
            for cgroup in id_cgroups(container_id):
                v1_paths["cpuacct"].append(cgroup)
                v1_paths["memory"].append(cgroup)
                v2_paths.append(cgroup)
        if pid:
            try:
                v1, v2 = parse_proc_cgroup((self._proc / str(pid) / "cgroup").read_text())
            except OSError:
                v1, v2 = {}, None
            for controller, paths in v1_paths.items():
                if controller in v1:
                    paths.append(v1[controller])
            if v2 is not None:
                v2_paths.append(v2)
        cpu = self._find(_CPU, v1_paths["cpuacct"], v2_paths)
        memory = self._find(_MEMORY, v1_paths["memory"], v2_paths)
        if cpu is None or memory is None:
            return None
        return ContainerCgroup(cpu=cpu, memory=memory)

    def _find(self, files: tuple[str, str, str], v1_paths: list[str], v2_paths: list[str]) -> Source | None:
        controller, v1_file, v2_file = files
        mount = self.hierarchies.v1.get(controller)
        if mount is not None:
            for cgroup in v1_paths:
                directory = mount.directory(cgroup)
                if directory is not None and (directory / v1_file).is_file():
                    return Source(directory, v2=False)
        if self.hierarchies.v2 is not None:
            for cgroup in v2_paths:
                directory = self.hierarchies.v2.directory(cgroup)
                if directory is not None and (directory / v2_file).is_file():
                    return Source(directory, v2=True)
        return None

    @staticmethod
    def read(cgroup: ContainerCgroup) -> ContainerStats:
        """The figures now; FileNotFoundError when the cgroup is gone, ValueError when a file makes no sense."""
        cpu_file = "cpu.stat" if cgroup.cpu.v2 else "cpuacct.usage"
        cpu = parse_cpu_ns((cgroup.cpu.directory / cpu_file).read_text(), v2=cgroup.cpu.v2)
        memory = cgroup.memory.directory
        usage = (memory / ("memory.current" if cgroup.memory.v2 else "memory.usage_in_bytes")).read_text()
        stat = (memory / "memory.stat").read_text()
        return ContainerStats(cpu_ns=cpu, memory_bytes=parse_working_set(usage, stat, v2=cgroup.memory.v2))
