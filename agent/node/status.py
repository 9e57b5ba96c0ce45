"""What this machine offers, for the Node's status: capacity and allocatable
cpu/memory (psutil), addresses, OS details and the runtimes the agent runs."""

from __future__ import annotations

import platform
import shutil
import socket
from pathlib import Path

import psutil

from protos.corral.v1 import node_pb2

AGENT_VERSION = "corral-0.1.0"
MAX_PODS = 110
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(path).read_text().strip()
        except OSError:
            continue
    return ""


def storage_space(directory: Path) -> tuple[int, int] | None:
    """(total, free) bytes of the file system holding `directory` (or its nearest existing parent)."""
    for candidate in (directory, *directory.parents):
        try:
            usage = shutil.disk_usage(candidate)
        except OSError:
            continue
        return usage.total, usage.free
    return None


def node_status(
    *,
    address: str,
    runtimes: list[str],
    reserved_cpu_millis: int = 0,
    reserved_memory_bytes: int = 0,
    storage_dir: Path | None = None,
) -> node_pb2.NodeStatus:
    """What the node reports at registration; with `storage_dir`, its file system's size and free
    space as ephemeral-storage capacity and allocatable (the scheduler fits new volumes in the latter)."""
    cpus = psutil.cpu_count(logical=True) or 1
    memory = psutil.virtual_memory().total
    status = node_pb2.NodeStatus(runtimes=runtimes)
    status.capacity.update({"cpu": str(cpus), "memory": f"{memory // 1024}Ki", "pods": str(MAX_PODS)})
    status.allocatable.update(
        {
            "cpu": f"{max(0, cpus * 1000 - reserved_cpu_millis)}m",
            "memory": f"{max(0, memory - reserved_memory_bytes) // 1024}Ki",
            "pods": str(MAX_PODS),
        }
    )
    space = storage_space(storage_dir) if storage_dir is not None else None
    if space is not None:
        status.capacity["ephemeral-storage"] = f"{space[0] // 1024}Ki"
        status.allocatable["ephemeral-storage"] = f"{space[1] // 1024}Ki"
    status.addresses.add(type="InternalIP", address=address)
    status.addresses.add(type="Hostname", address=socket.gethostname())
    info = status.node_info
    info.kernel_version = platform.release()
    info.os_image = os_image()
    info.operating_system = platform.system().lower()
    info.architecture = _ARCH.get(platform.machine(), platform.machine())
    info.agent_version = AGENT_VERSION
    info.machine_id = machine_id()
    return status
