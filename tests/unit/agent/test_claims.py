"""Persistent volume directories on the node: made under the volume root, refused outside, deleted on request."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from agent.pods import claims, security_context, volumes
from agent.runtime.errors import ContainerConfigError
from protos import storage as st
from protos.corral.v1 import meta_pb2, node_service_pb2, pod_pb2


def _pod(path: str | None) -> pod_pb2.Pod:
    p = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name="web", namespace="default", uid="u1"))
    c = p.spec.containers.add(name="main", image="busybox:1")
    c.volume_mounts.add(name="data", mount_path="/data")
    p.spec.volumes.add(name="data").persistent_volume_claim.claim_name = "data"
    if path is not None:
        p.metadata.annotations[st.CLAIM_PATHS] = json.dumps({"data": path})
    return p


def test_a_claim_directory_is_made_0777_and_bind_mounted(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    pod = _pod(str(root / "pvc-1_default_data"))
    claims.prepare(pod, root)
    made = root / "pvc-1_default_data"
    assert stat.S_IMODE(made.stat().st_mode) == 0o777
    (made / "kept").write_text("x")
    claims.prepare(pod, root)  # a second start keeps what is there
    assert (made / "kept").read_text() == "x"
    mounts = security_context.mounts_of(pod, pod.spec.containers[0], tmp_path / "volumes")
    assert [(m.source, m.target, m.tmpfs) for m in mounts] == [(str(made), "/data", False)]
    volumes.prepare(pod, tmp_path / "volumes")  # fsGroup ownership only: no emptyDir made for it
    assert not (tmp_path / "volumes" / "u1").exists()
    assert stat.S_IMODE(made.stat().st_mode) == 0o777


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/etc", id="elsewhere"),
        pytest.param("{root}/../escape", id="dot-dot"),
        pytest.param("{root}", id="the-root-itself"),
        pytest.param("{root}/link/x", id="through-a-symlink"),
        pytest.param(None, id="not-resolved"),
    ],
)
def test_a_directory_outside_the_volume_root_is_refused(tmp_path: Path, path: str | None) -> None:
    root = tmp_path / "storage"
    root.mkdir()
    os.symlink("/etc", root / "link")
    with pytest.raises(ContainerConfigError, match='persistentvolumeclaim "data"'):
        claims.prepare(_pod(path.format(root=root) if path else None), root)


def test_a_released_volume_is_deleted_only_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    (root / "pvc-1").mkdir(parents=True)
    (root / "pvc-1" / "file").write_text("x")
    done = claims.delete(root, node_service_pb2.VolumeDeletion(name="pvc-1", uid="u", path=str(root / "pvc-1")))
    assert done.error == "" and not (root / "pvc-1").exists()
    again = claims.delete(root, node_service_pb2.VolumeDeletion(name="pvc-1", uid="u", path=str(root / "pvc-1")))
    assert again.error == ""  # already gone is fine
    outside = claims.delete(root, node_service_pb2.VolumeDeletion(name="x", uid="u", path=str(tmp_path)))
    assert "outside" in outside.error and tmp_path.exists()
