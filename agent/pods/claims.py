"""Persistent volumes on this node: the directories of pods' persistentVolumeClaim
volumes, and the deletion of released ones.

Every directory lives under the agent's volume root (`<data-dir>/storage`,
`WorkerSettings.storage_dir`); the control plane names each pod's directories
in the pod annotation `corral.io/claim-paths` (`storage.CLAIM_PATHS`). The
agent refuses, and reports as the container's CreateContainerConfigError, a
directory outside the root (after resolving symlinks): a PersistentVolume never
gives a pod more of the host than that directory. A volume's directory is made
mode 0777 (as the local-path provisioner does) on the first start of a pod using
it, kept when the pod goes, and removed only when its released volume is
deleted (`delete`, reported back with the outcome).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from agent.runtime.errors import ContainerConfigError
from protos import storage as st
from protos.corral.v1 import node_service_pb2, pod_pb2

VOLUME_MODE = 0o777


def claim_paths(pod: pod_pb2.Pod) -> dict[str, str]:
    """Volume name → directory, as the control plane resolved them ({} when malformed)."""
    try:
        found = json.loads(pod.metadata.annotations.get(st.CLAIM_PATHS, "{}") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def inside(root: Path, path: str) -> Path | None:
    """`path` resolved, if it lies strictly below `root` (resolved); None otherwise."""
    if not path.startswith("/"):
        return None
    base = root.resolve()
    target = Path(path).resolve()
    return target if target != base and target.is_relative_to(base) else None


def has_claims(pod: pod_pb2.Pod) -> bool:
    return bool(st.claim_names(pod.spec))


def prepare(pod: pod_pb2.Pod, root: Path) -> None:
    """Make each claim volume's directory (0777); refuse one outside `root`."""
    paths = claim_paths(pod)
    for volume, claim in st.claim_names(pod.spec):
        path = paths.get(volume)
        if path is None:
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" is not bound to a volume on this node yet')
        target = inside(root, path)
        if target is None:
            raise ContainerConfigError(
                f'persistentvolumeclaim "{claim}": its volume {path} is outside this node\'s volume directory {root} '
                "(the agent mounts only volumes under it)"
            )
        try:
            if not target.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(VOLUME_MODE)
        except OSError as e:
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}": cannot create {path}: {e.strerror}') from e


def delete(root: Path, deletion: node_service_pb2.VolumeDeletion) -> node_service_pb2.VolumeDeletionResult:
    """Remove a released volume's directory (missing is fine); never one outside `root`."""
    result = node_service_pb2.VolumeDeletionResult(name=deletion.name, uid=deletion.uid)
    target = inside(root, deletion.path)
    if target is None:
        result.error = f"{deletion.path} is outside this node's volume directory {root}: not deleted"
        return result
    try:
        shutil.rmtree(target)
    except FileNotFoundError:
        pass
    except OSError as e:
        result.error = f"{e.strerror}: {e.filename}"
    return result
