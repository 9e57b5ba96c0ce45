"""Pure checks of a `ContainerSpec`'s security settings that every runtime shares.

Each returns the refusal message (for a `ContainerConfigError`), or None.
"""

from __future__ import annotations

import os

from agent.runtime.base import ContainerSpec
from protos.pod_security import exposes_host_root

# Host paths that would hand a container the Docker engine (root on the host): never mounted.
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def parse_user(user: str) -> tuple[int | None, int | None]:
    """Split "uid[:gid]" into (uid, gid); a name or "" is None for that part."""
    uid_text, _, gid_text = user.partition(":")
    uid = int(uid_text) if uid_text.isdigit() else None
    gid = int(gid_text) if gid_text.isdigit() else None
    return uid, gid


def docker_socket_mount(spec: ContainerSpec) -> str | None:
    """The Docker socket itself, always; and a path that reaches an engine's socket (or /proc) only
    through a symlink on this node, which the API server, checking the path as written, cannot see."""
    for mount in spec.mounts:
        if mount.tmpfs or not mount.source:
            continue
        path = os.path.normpath(mount.source)
        real = os.path.realpath(path)
        if path in DOCKER_SOCKETS or real in DOCKER_SOCKETS:
            return (
                f"hostPath {mount.source} is the Docker socket, which corral never mounts "
                "into a container (it is root on the host)"
            )
        if real != path and exposes_host_root(real) and not exposes_host_root(path):
            return (
                f"hostPath {mount.source} resolves to {real}, which holds a container engine's socket "
                "(root on the host): write that path itself, which only the privileged pod security level admits"
            )
    return None


def non_root_refusal(spec: ContainerSpec, image_user: str) -> str | None:
    """With runAsNonRoot: refuse a run as uid 0, or as the image's user when that is root
    (or a name, which cannot be checked) — the kubelet's rules and messages."""
    if not spec.run_as_non_root:
        return None
    uid, _ = parse_user(spec.user)
    if uid == 0:
        return "container's runAsUser breaks non-root policy (runAsNonRoot is set and runAsUser is 0)"
    if uid is not None:
        return None
    name = image_user.partition(":")[0]
    if name in ("", "0", "root"):
        return "container has runAsNonRoot and image will run as root (set runAsUser to a non-zero uid)"
    if not name.isdigit():
        return (
            f"container has runAsNonRoot and image has non-numeric user ({name}), "
            "cannot verify user is non-root (set runAsUser)"
        )
    return None


def process_refusal(spec: ContainerSpec, agent_uid: int) -> str | None:
    """What the process runtime cannot do: it has no filesystem, capability or device
    isolation, and it can only switch users when the agent runs as root."""
    unsupported = [
        name
        for name, asked in (
            ("volumes (volumeMounts)", bool(spec.mounts)),
            ("readOnlyRootFilesystem", spec.read_only_rootfs),
            ("capabilities", bool(spec.cap_add or spec.cap_drop)),
            ("privileged", spec.privileged),
            ("supplementary groups (fsGroup, supplementalGroups)", bool(spec.group_add)),
        )
        if asked
    ]
    if unsupported:
        return (
            f"the process runtime does not support {', '.join(unsupported)}: "
            "use runtimeClassName docker, or remove them"
        )
    uid, gid = parse_user(spec.user)
    if spec.user and uid is None:
        return f"runAsUser {spec.user!r} is not a numeric uid"
    if agent_uid != 0 and ((uid is not None and uid != agent_uid) or gid is not None):
        return f"runAsUser/runAsGroup need the agent to run as root (it runs as uid {agent_uid})"
    if spec.run_as_non_root and (uid if uid is not None else agent_uid) == 0:
        return "container has runAsNonRoot and would run as root, the agent's user (set runAsUser to a non-zero uid)"
    return None
