"""Pod security: validation of securityContext and volumes.

Pure code, no I/O. `validate_pod_security` checks the fields of one pod spec
(called from `validation.validate_pod_spec`, for pods and workload templates
alike). What a pod may ask for (the Pod Security levels) is `pod_security`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import Protocol

from controlplane.apiserver import volume_sources
from protos.corral.v1 import pod_pb2
from protos.pods import every_container

_CAPABILITY = re.compile(r"^[A-Z_]+$")
_VOLUME_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")
EMPTY_DIR_MEDIA = ("", "Memory")
# Never mounted, whatever the policy: the Docker socket is root on the host.
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


class _Problems(Protocol):
    def add(self, path: str, message: str) -> None: ...


# seccompProfile types corral runs: Docker's default profile, which applies to every container.
SECCOMP_TYPES = ("RuntimeDefault",)


# -- field validation -------------------------------------------------------------


def validate_pod_security(p: _Problems, path: str, spec: pod_pb2.PodSpec) -> None:
    volumes = _validate_volumes(p, path, spec.volumes)
    _validate_ids(p, f"{path}.securityContext", spec.security_context)
    volume_sources.validate_fs_group(p, f"{path}.securityContext", spec.security_context)
    _validate_seccomp(p, f"{path}.securityContext.seccompProfile", spec.security_context.seccomp_profile)
    for where, c in every_container(spec):
        at = f"{path}.{where}"
        sc = c.security_context
        _validate_ids(p, f"{at}.securityContext", sc)
        _validate_seccomp(p, f"{at}.securityContext.seccompProfile", sc.seccomp_profile)
        for part, names in (("add", sc.capabilities.add), ("drop", sc.capabilities.drop)):
            for j, name in enumerate(names):
                if not _CAPABILITY.match(name):
                    p.add(
                        f"{at}.securityContext.capabilities.{part}[{j}]",
                        f'must be a capability name such as NET_ADMIN or ALL, got "{name}"',
                    )
        _validate_mounts(p, at, c.volume_mounts, volumes)


def _validate_seccomp(p: _Problems, path: str, profile: pod_pb2.SeccompProfile) -> None:
    if profile.type in ("", *SECCOMP_TYPES):
        if profile.localhost_profile:
            p.add(f"{path}.localhostProfile", 'must be set only with type "Localhost"')
        return
    if profile.type in ("Unconfined", "Localhost"):
        p.add(
            f"{path}.type",
            f'"{profile.type}" is not supported: corral runs every container under Docker\'s '
            'default seccomp profile (type "RuntimeDefault")',
        )
    else:
        p.add(f"{path}.type", f'must be "RuntimeDefault", got "{profile.type}"')


def _validate_ids(p: _Problems, path: str, sc: pod_pb2.SecurityContext | pod_pb2.PodSecurityContext) -> None:
    ids = (
        ("runAsUser", sc.HasField("run_as_user"), sc.run_as_user),
        ("runAsGroup", sc.HasField("run_as_group"), sc.run_as_group),
    )
    for json_name, present, value in ids:
        if present and value < 0:
            p.add(f"{path}.{json_name}", f"must be >= 0, got {value}")


def _validate_volumes(p: _Problems, path: str, volumes: Iterable[pod_pb2.Volume]) -> set[str]:
    names: set[str] = set()
    for i, v in enumerate(volumes):
        at = f"{path}.volumes[{i}]"
        if not v.name:
            p.add(f"{at}.name", "required")
        elif len(v.name) > 63 or not _VOLUME_NAME.match(v.name):
            p.add(f"{at}.name", f'must be a DNS-1123 label (lower case letters, digits and "-"), got "{v.name}"')
        elif v.name in names:
            p.add(f"{at}.name", f'duplicate volume name "{v.name}"')
        names.add(v.name)
        volume_sources.validate_volume_source(p, at, v)
        if v.HasField("persistent_volume_claim"):
            if not v.persistent_volume_claim.claim_name:
                p.add(f"{at}.persistentVolumeClaim.claimName", "required")
        elif v.HasField("host_path"):
            _validate_host_path(p, f"{at}.hostPath", v.host_path)
        elif v.empty_dir.medium not in EMPTY_DIR_MEDIA:
            p.add(f"{at}.emptyDir.medium", f'must be "" or "Memory", got "{v.empty_dir.medium}"')
    return names


def _validate_host_path(p: _Problems, path: str, source: pod_pb2.HostPathVolumeSource) -> None:
    if not source.path:
        p.add(f"{path}.path", "required")
    elif not source.path.startswith("/"):
        p.add(f"{path}.path", f'must be an absolute path, got "{source.path}"')
    elif posixpath.normpath(source.path) in DOCKER_SOCKETS:
        p.add(f"{path}.path", "the Docker socket is never mounted into a container (it is root on the host)")
    if source.type not in HOST_PATH_TYPES:
        known = ", ".join(t for t in HOST_PATH_TYPES if t)
        p.add(f"{path}.type", f'unknown type "{source.type}" (known: {known}, or empty)')


def _validate_mounts(p: _Problems, path: str, mounts: Iterable[pod_pb2.VolumeMount], volumes: set[str]) -> None:
    targets: set[str] = set()
    for j, m in enumerate(mounts):
        at = f"{path}.volumeMounts[{j}]"
        if not m.name:
            p.add(f"{at}.name", "required")
        elif m.name not in volumes:
            p.add(f"{at}.name", f'no volume named "{m.name}" in spec.volumes')
        if not m.mount_path:
            p.add(f"{at}.mountPath", "required")
        elif not m.mount_path.startswith("/"):
            p.add(f"{at}.mountPath", f'must be an absolute path, got "{m.mount_path}"')
        elif posixpath.normpath(m.mount_path) in targets:
            p.add(f"{at}.mountPath", f'duplicate mount path "{m.mount_path}"')
        targets.add(posixpath.normpath(m.mount_path) if m.mount_path else "")
        volume_sources.validate_mount_paths(p, at, m)
