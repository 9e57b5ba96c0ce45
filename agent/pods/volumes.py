"""A pod's volumes on the node: where they live, what backs them, who owns them.

Layout (`volume_dir`): `<volumes_dir>/<pod uid>/<volume name>/` for every
emptyDir, configMap, secret and projected volume (`<volumes_dir>` is
`<data dir>/volumes`). What backs a directory:

- a disk emptyDir, a configMap volume and a projected volume without a Secret:
  the node's disk;
- a secret volume, a projected volume with a Secret source, and an emptyDir of
  medium Memory: a tmpfs the agent mounts on the directory (an emptyDir's is
  `sizeLimit` large; without it, the kernel's default, half the node's memory).
  An agent that is not root cannot mount: it keeps these under
  `/dev/shm/corral-<hash of volumes_dir>/<pod uid>/<volume>` instead (the
  node's shared memory filesystem, so still never on disk; that directory is
  0700; no per-volume size).

configMap, secret and projected directories are written by `atomic_writer`
(`sync`) from the files the control plane sent; a container mounts them
read-only. `set_volume_ownership` gives a volume to the pod's fsGroup as the
kubelet does (group owner, setgid directories, group read, and write where the
volume is writable), with fsGroupChangePolicy OnRootMismatch skipping a volume
whose root already has it; other volume kinds (persistent volumes) call it too.

`remove` unmounts and deletes a pod's volume directories with the pod.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import structlog

from agent.pods import atomic_writer, claims
from agent.runtime.errors import ContainerConfigError
from protos import quantity
from protos.corral.v1 import node_service_pb2, pod_pb2

log = structlog.get_logger(__name__)

# The kubelet's masks (pkg/volume/volume_linux.go).
RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110
# Mode of an emptyDir directory: writable by any user the container runs as (as in Kubernetes).
EMPTY_DIR_MODE = 0o777
SHM = Path("/dev/shm")


def is_config(volume: pod_pb2.Volume) -> bool:
    """A volume whose files come from the control plane (configMap, secret, projected)."""
    return volume.HasField("config_map") or volume.HasField("secret") or volume.HasField("projected")


def in_memory(volume: pod_pb2.Volume) -> bool:
    """Whether the volume lives on tmpfs: Secret data, or an emptyDir of medium Memory."""
    if volume.HasField("secret") or any(s.HasField("secret") for s in volume.projected.sources):
        return True
    return not volume.HasField("host_path") and not is_config(volume) and volume.empty_dir.medium == "Memory"


def _shm_root(volumes_dir: Path) -> Path:
    return SHM / f"corral-{hashlib.sha256(str(volumes_dir).encode()).hexdigest()[:12]}"


def _can_mount() -> bool:
    return os.geteuid() == 0


def source_dir(volumes_dir: Path, pod: pod_pb2.Pod, volume: pod_pb2.Volume) -> Path:
    """Where the volume is on the node for this pod: a claim's directory as the control plane
    named it (`claims.claim_paths`; `claims.prepare` checks it before a start), else `volume_dir`."""
    if volume.HasField("persistent_volume_claim"):
        return Path(claims.claim_paths(pod).get(volume.name, "/nonexistent-claim"))
    return volume_dir(volumes_dir, pod.metadata.uid, volume)


def volume_dir(volumes_dir: Path, pod_uid: str, volume: pod_pb2.Volume) -> Path:
    """Where the volume's files are on the node (hostPath volumes are their own path; a claim's
    directory depends on the pod: `source_dir`)."""
    if volume.HasField("host_path"):
        return Path(volume.host_path.path)
    if in_memory(volume) and not _can_mount():
        return _shm_root(volumes_dir) / pod_uid / volume.name
    return volumes_dir / pod_uid / volume.name


def _mount_tmpfs(path: Path, size: str) -> bool:
    """A tmpfs on ``path``; False when one is there already (it is kept)."""
    if os.path.ismount(path):
        return False
    options = "mode=0755" + (f",size={quantity.memory_bytes(size)}" if size else "")
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "corral-volume", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        raise ContainerConfigError(f"cannot mount a tmpfs on {path}: {detail.decode(errors='replace') or e}") from e
    return True


def make_dir(volumes_dir: Path, pod_uid: str, volume: pod_pb2.Volume) -> Path:
    """The volume's directory, made (and its tmpfs mounted) when missing."""
    path = volume_dir(volumes_dir, pod_uid, volume)
    fresh = not path.is_dir()
    shm_root = _shm_root(volumes_dir)
    if shm_root in path.parents:  # only the agent's user may look in (the data dir is 0700 likewise)
        shm_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        shm_root.chmod(0o700)
    path.mkdir(parents=True, exist_ok=True)
    if in_memory(volume) and _can_mount():
        fresh = _mount_tmpfs(path, "" if is_config(volume) else volume.empty_dir.size_limit) or fresh
    if fresh:
        path.chmod(atomic_writer.DIR_MODE if is_config(volume) else EMPTY_DIR_MODE)
    return path


# -- fsGroup -------------------------------------------------------------------------


def fs_group_of(pod: pod_pb2.Pod) -> int | None:
    sc = pod.spec.security_context
    return sc.fs_group if sc.HasField("fs_group") else None


def supplementary_groups(pod: pod_pb2.Pod) -> list[int]:
    """The container's supplementary groups: fsGroup, then supplementalGroups."""
    fs_group = fs_group_of(pod)
    return ([] if fs_group is None else [fs_group]) + list(pod.spec.security_context.supplemental_groups)


def _owned_mode(mode: int, *, is_dir: bool, read_only: bool) -> int:
    mask = RO_MASK if read_only else RW_MASK
    if is_dir:
        mask |= stat.S_ISGID | EXEC_MASK
    return mode | mask


def owned_file_mode(mode: int, fs_group: int | None) -> int:
    """A configMap/secret file's mode once the volume is given to ``fs_group`` (read-only volume)."""
    return mode if fs_group is None else _owned_mode(mode, is_dir=False, read_only=True)


def needs_ownership_change(root: Path, fs_group: int, *, read_only: bool) -> bool:
    """The kubelet's requiresPermissionChange: the root's group, permissions and setgid bit."""
    try:
        info = root.stat()
    except OSError:
        return True
    if info.st_gid != fs_group or not stat.S_ISDIR(info.st_mode):
        return True
    wanted = (RO_MASK if read_only else RW_MASK) | EXEC_MASK
    return (info.st_mode & wanted) != wanted or not info.st_mode & stat.S_ISGID


def set_volume_ownership(root: Path, fs_group: int | None, *, policy: str = "", read_only: bool = False) -> None:
    """Give a volume to the pod's fsGroup as the kubelet's SetVolumeOwnership does: every
    file and directory group-owned by it, group read (and write unless ``read_only``),
    directories setgid and searchable; symlinks only re-owned. ``policy`` OnRootMismatch
    skips a volume whose root already has all of it. Nothing without an fsGroup."""
    if fs_group is None:
        return
    if policy == "OnRootMismatch" and not needs_ownership_change(root, fs_group, read_only=read_only):
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, None]:
            path = dirpath if name is None else os.path.join(dirpath, name)
            info = os.lstat(path)
            os.lchown(path, -1, fs_group)
            if stat.S_ISLNK(info.st_mode):
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            os.chmod(path, _owned_mode(stat.S_IMODE(info.st_mode), is_dir=is_dir, read_only=read_only))


# -- configMap, secret and projected files ---------------------------------------------


def sync(
    volumes_dir: Path, pod: pod_pb2.Pod, payload: node_service_pb2.VolumePayload, *, now: datetime | None = None
) -> bool:
    """Write one volume's files (atomically); False when they were already there or withheld."""
    volume = next((v for v in pod.spec.volumes if v.name == payload.volume and is_config(v)), None)
    if volume is None or payload.withheld:
        return False
    target = make_dir(volumes_dir, pod.metadata.uid, volume)
    fs_group = fs_group_of(pod)
    files = {f.path: (f.data, f.mode) for f in payload.files}
    changed = atomic_writer.write(
        target,
        files,
        now=now or datetime.now(UTC),
        before_swap=lambda version: set_volume_ownership(version, fs_group, read_only=True),
        mode_of=lambda mode: owned_file_mode(mode, fs_group),
    )
    if changed:
        set_volume_ownership(target, fs_group, read_only=True)
    return changed


# -- before a start: directories, hostPaths, subPaths ----------------------------------

_MUST_EXIST = {
    "Directory": stat.S_ISDIR,
    "File": stat.S_ISREG,
    "Socket": stat.S_ISSOCK,
    "CharDevice": stat.S_ISCHR,
    "BlockDevice": stat.S_ISBLK,
}


def prepare(pod: pod_pb2.Pod, volumes_dir: Path) -> None:
    """Make the pod's emptyDirs (tmpfs for medium Memory) with the fsGroup's ownership,
    make the hostPaths of type *OrCreate and check the others' types, check that every
    configMap/secret/projected volume has its files; ContainerConfigError for what cannot be."""
    fs_group = fs_group_of(pod)
    policy = pod.spec.security_context.fs_group_change_policy
    for volume in pod.spec.volumes:
        if volume.HasField("host_path"):
            _prepare_host_path(volume.name, volume.host_path)
        elif volume.HasField("persistent_volume_claim"):  # made (and checked) by `claims.prepare`
            claimed = source_dir(volumes_dir, pod, volume)
            if claimed.is_dir():
                read_only = volume.persistent_volume_claim.read_only
                set_volume_ownership(claimed, fs_group, policy=policy, read_only=read_only)
        elif is_config(volume):
            if not atomic_writer.has_data(volume_dir(volumes_dir, pod.metadata.uid, volume)):
                raise ContainerConfigError(f'volume "{volume.name}": its files have not arrived from the control plane')
        else:
            path = make_dir(volumes_dir, pod.metadata.uid, volume)
            set_volume_ownership(path, fs_group, policy=policy)


def sub_path_sources(volumes_dir: Path, pod: pod_pb2.Pod, container: pod_pb2.Container) -> dict[str, str]:
    """The host path each subPath mount of the container binds, by its mountPath."""
    volumes = {v.name: v for v in pod.spec.volumes}
    return {
        m.mount_path: sub_path_source(volumes_dir, pod, volumes[m.name], m.sub_path)
        for m in container.volume_mounts
        if m.sub_path and m.name in volumes
    }


def sub_path_source(volumes_dir: Path, pod: pod_pb2.Pod, volume: pod_pb2.Volume, sub_path: str) -> str:
    """The host path a subPath mount binds: the real path of ``sub_path`` in the volume,
    which must stay inside it (a symlink out of the volume is refused, as the kubelet does).
    A missing subPath of an emptyDir or hostPath is made as a directory; a configMap or
    secret file is the file of the version written now (it does not update)."""
    root = source_dir(volumes_dir, pod, volume)
    wanted = root / sub_path
    if not is_config(volume) and not os.path.lexists(wanted):
        try:
            wanted.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ContainerConfigError(f'volume "{volume.name}": cannot make subPath {sub_path}: {e.strerror}') from e
    real_root, real = os.path.realpath(root), os.path.realpath(wanted)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise ContainerConfigError(f'volume "{volume.name}": subPath {sub_path} leads out of the volume')
    if not os.path.exists(real):
        raise ContainerConfigError(f'volume "{volume.name}": subPath {sub_path} does not exist in the volume')
    return real


def _prepare_host_path(name: str, source: pod_pb2.HostPathVolumeSource) -> None:
    path = Path(source.path)
    try:
        if source.type == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif source.type == "FileOrCreate":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
    except OSError as e:
        raise ContainerConfigError(f"volume {name!r}: cannot create hostPath {source.path}: {e.strerror}") from e
    check = _MUST_EXIST.get(source.type)
    if check is None:
        return
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ContainerConfigError(f"volume {name!r}: hostPath {source.path} does not exist") from e
    if not check(mode):
        raise ContainerConfigError(f"volume {name!r}: hostPath {source.path} is not a {source.type}")


# -- sizeLimit of a disk emptyDir ------------------------------------------------------


def size_limited(pod: pod_pb2.Pod) -> list[pod_pb2.Volume]:
    """The pod's disk emptyDirs with a sizeLimit (a Memory one's is its tmpfs size)."""
    return [v for v in pod.spec.volumes if v.empty_dir.size_limit and v.empty_dir.medium != "Memory"]


def disk_usage(root: Path) -> int:
    """Bytes the files under ``root`` take on disk (allocated blocks, as du counts; links not followed)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def over_size_limit(volumes_dir: Path, pod: pod_pb2.Pod) -> str:
    """Why the pod must be evicted, as the kubelet says it: a disk emptyDir grown past its
    sizeLimit ("" when none has)."""
    for volume in size_limited(pod):
        used = disk_usage(volume_dir(volumes_dir, pod.metadata.uid, volume))
        if used > quantity.memory_bytes(volume.empty_dir.size_limit):
            return f'Usage of EmptyDir volume "{volume.name}" exceeds the limit "{volume.empty_dir.size_limit}".'
    return ""


# -- with the pod ----------------------------------------------------------------------


def pods_with_volumes(volumes_dir: Path) -> set[str]:
    """The uids of the pods that have volume directories on this node."""
    found: set[str] = set()
    for root in (volumes_dir, _shm_root(volumes_dir)):
        with contextlib.suppress(OSError):
            found.update(entry.name for entry in root.iterdir() if entry.is_dir())
    return found


def remove(volumes_dir: Path, pod_uid: str) -> None:
    """Unmount the pod's tmpfs volumes and delete its volume directories (missing is fine)."""
    if not pod_uid:
        return
    for root in (volumes_dir / pod_uid, _shm_root(volumes_dir) / pod_uid):
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            if os.path.ismount(entry):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(["umount", str(entry)], check=True, capture_output=True, timeout=30)
                if os.path.ismount(entry):  # still busy: never delete through a mount
                    log.warning("volume_unmount_failed", path=str(entry))
                    continue
            shutil.rmtree(entry, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.rmdir()
