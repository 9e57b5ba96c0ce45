"""A pod's securityContext and volumes, as runtime spec fields.

`spec_fields` is pure: the container's securityContext overrides the pod's
field by field, and every volumeMount becomes a `Mount` (hostPath: the host
path; emptyDir: a directory `<volumes_dir>/<pod uid>/<volume name>`, or a
tmpfs for medium Memory). `prepare` makes those directories (and checks or
makes hostPaths by their type) before a start; `remove` deletes a pod's
emptyDirs with the pod.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path
from typing import Any

from agent.pods import claims
from agent.runtime.base import Mount
from agent.runtime.errors import ContainerConfigError
from protos.corral.v1 import pod_pb2

# Mode of an emptyDir directory: writable by any user the container runs as (as in Kubernetes).
EMPTY_DIR_MODE = 0o777

# hostPath types whose path must already exist, and the check of each.
_MUST_EXIST = {
    "Directory": stat.S_ISDIR,
    "File": stat.S_ISREG,
    "Socket": stat.S_ISSOCK,
    "CharDevice": stat.S_ISCHR,
    "BlockDevice": stat.S_ISBLK,
}


def user_of(pod: pod_pb2.Pod, container: pod_pb2.Container) -> str:
    """The user to run as, "uid" or "uid:gid", from runAsUser / runAsGroup (container, then pod).

    "": the image's own user.
    """
    sc, psc = container.security_context, pod.spec.security_context
    uid = sc.run_as_user if sc.HasField("run_as_user") else (psc.run_as_user if psc.HasField("run_as_user") else None)
    gid = (
        sc.run_as_group if sc.HasField("run_as_group") else (psc.run_as_group if psc.HasField("run_as_group") else None)
    )
    if uid is None:
        return ""
    return f"{uid}:{gid}" if gid is not None else str(uid)


def _run_as_non_root(pod: pod_pb2.Pod, container: pod_pb2.Container) -> bool:
    sc, psc = container.security_context, pod.spec.security_context
    if sc.HasField("run_as_non_root"):
        return sc.run_as_non_root
    return psc.HasField("run_as_non_root") and psc.run_as_non_root


def empty_dir_path(volumes_dir: Path, pod_uid: str, volume: str) -> Path:
    return volumes_dir / pod_uid / volume


def mounts_of(pod: pod_pb2.Pod, container: pod_pb2.Container, volumes_dir: Path) -> list[Mount]:
    volumes = {v.name: v for v in pod.spec.volumes}
    claimed = claims.claim_paths(pod)
    mounts: list[Mount] = []
    for vm in container.volume_mounts:
        volume = volumes.get(vm.name)
        if volume is None:  # the API server refuses such pods
            continue
        if volume.HasField("persistent_volume_claim"):  # claims.prepare checked the directory before a start
            read_only = vm.read_only or volume.persistent_volume_claim.read_only
            mounts.append(Mount(target=vm.mount_path, source=claimed.get(vm.name, ""), read_only=read_only))
        elif volume.HasField("host_path"):
            mounts.append(Mount(target=vm.mount_path, source=volume.host_path.path, read_only=vm.read_only))
        elif volume.empty_dir.medium == "Memory":
            mounts.append(Mount(target=vm.mount_path, read_only=vm.read_only, tmpfs=True))
        else:
            source = str(empty_dir_path(volumes_dir, pod.metadata.uid, volume.name))
            mounts.append(Mount(target=vm.mount_path, source=source, read_only=vm.read_only))
    return mounts


def spec_fields(pod: pod_pb2.Pod, container: pod_pb2.Container, volumes_dir: Path) -> dict[str, Any]:
    """The `ContainerSpec` keyword arguments for security settings and mounts."""
    sc = container.security_context
    escalation = sc.HasField("allow_privilege_escalation") and sc.allow_privilege_escalation
    privileged = sc.HasField("privileged") and sc.privileged
    return {
        "user": user_of(pod, container),
        "run_as_non_root": _run_as_non_root(pod, container),
        "read_only_rootfs": sc.HasField("read_only_root_filesystem") and sc.read_only_root_filesystem,
        "cap_add": list(sc.capabilities.add),
        "cap_drop": list(sc.capabilities.drop),
        "privileged": privileged,
        # A privileged container may escalate anyway; otherwise only when explicitly allowed.
        "no_new_privileges": not (escalation or privileged),
        "mounts": mounts_of(pod, container, volumes_dir),
        "host_network": pod.spec.host_network,
        "host_pid": pod.spec.host_pid,
        "host_ipc": pod.spec.host_ipc,
    }


def has_volumes_to_prepare(pod: pod_pb2.Pod) -> bool:
    """Whether `prepare` has anything to do (most pods have no volumes: no thread hop for them)."""
    return any(
        v.HasField("host_path") or (not v.HasField("persistent_volume_claim") and v.empty_dir.medium != "Memory")
        for v in pod.spec.volumes
    )


def prepare(pod: pod_pb2.Pod, volumes_dir: Path) -> None:
    """Make the pod's emptyDirs and the hostPaths of type *OrCreate; check the others' types."""
    for volume in pod.spec.volumes:
        if volume.HasField("host_path"):
            _prepare_host_path(volume.name, volume.host_path)
        elif not volume.HasField("persistent_volume_claim") and volume.empty_dir.medium != "Memory":
            path = empty_dir_path(volumes_dir, pod.metadata.uid, volume.name)
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(EMPTY_DIR_MODE)


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


def remove(volumes_dir: Path, pod_uid: str) -> None:
    """Delete the pod's emptyDir directories (missing is fine)."""
    if pod_uid:
        shutil.rmtree(volumes_dir / pod_uid, ignore_errors=True)
