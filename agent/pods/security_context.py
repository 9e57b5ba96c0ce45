"""A pod's securityContext and volumes, as runtime spec fields.

`spec_fields` is pure: the container's securityContext overrides the pod's
field by field, every volumeMount becomes a `Mount` of the volume's directory
(`volumes`: where each kind lives, how it is made before a start and removed
with the pod), and fsGroup with supplementalGroups become the container's
supplementary groups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.pods import volumes
from agent.runtime.base import Mount
from protos.corral.v1 import pod_pb2


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


def mounts_of(pod: pod_pb2.Pod, container: pod_pb2.Container, volumes_dir: Path) -> list[Mount]:
    """Every volumeMount as a bind of the volume's directory (`volumes.volume_dir`), or of
    its subPath inside it (resolved on disk before a start: `volumes.sub_path_sources`);
    configMap, secret and projected volumes always read-only, as in Kubernetes."""
    by_name = {v.name: v for v in pod.spec.volumes}
    mounts: list[Mount] = []
    for vm in container.volume_mounts:
        volume = by_name.get(vm.name)
        if volume is None:  # the API server refuses such pods
            continue
        source = volumes.source_dir(volumes_dir, pod, volume)
        if vm.sub_path:
            source = source / vm.sub_path
        read_only = vm.read_only or volumes.is_config(volume) or volume.persistent_volume_claim.read_only
        mounts.append(Mount(target=vm.mount_path, source=str(source), read_only=read_only))
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
        "group_add": volumes.supplementary_groups(pod),
        "host_network": pod.spec.host_network,
        "host_pid": pod.spec.host_pid,
        "host_ipc": pod.spec.host_ipc,
    }


def has_volumes_to_prepare(pod: pod_pb2.Pod) -> bool:
    """Whether `volumes.prepare` has anything to do (most pods have no volumes: no thread hop for them)."""
    return bool(pod.spec.volumes)
