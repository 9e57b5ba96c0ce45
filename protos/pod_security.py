"""Pod Security Standards: the level names and the Namespace labels that choose them."""

from __future__ import annotations

import posixpath

PRIVILEGED, BASELINE, RESTRICTED = "privileged", "baseline", "restricted"
LEVELS = (PRIVILEGED, BASELINE, RESTRICTED)
# The cluster default unless `corral server --pod-security` says otherwise.
DEFAULT_LEVEL = BASELINE
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

# The container engines' API sockets: whoever reaches one is root on the host.
ENGINE_SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)


def exposes_host_root(path: str) -> bool:
    """Whether a host path is an engine socket or a directory holding one (`/`, `/run`, `/var`,
    `/var/run`, …), or the host's /proc (every process's root is `/proc/<pid>/root`)."""
    normal = posixpath.normpath(path) if path else ""
    if normal.startswith("//"):
        normal = normal[1:]
    if normal in ("/", "/proc") or normal.startswith("/proc/"):
        return True
    return any(socket == normal or socket.startswith(normal + "/") for socket in ENGINE_SOCKETS)
