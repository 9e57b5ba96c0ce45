"""A pod's volumes on the node: fsGroup ownership as the kubelet sets it, subPaths kept inside
their volume, configMap/secret files written with the fsGroup's modes, supplementary groups."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.pods import volumes
from agent.pods.worker import build_spec
from agent.runtime.errors import ContainerConfigError
from protos.corral.v1 import node_service_pb2, pod_pb2

# Changing a file's group to any group needs root; otherwise use our own (the modes are the same).
GID = 2000 if os.geteuid() == 0 else os.getegid()


def tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "file").write_text("x")
    (root / "top").write_text("y")
    (root / "link").symlink_to("top")
    for path in (root, root / "sub"):
        path.chmod(0o755)
    for path in (root / "sub" / "file", root / "top"):
        path.chmod(0o600)
    return root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode) | (path.stat().st_mode & stat.S_ISGID)


@pytest.mark.parametrize(
    ("read_only", "file_mode", "dir_mode"),
    [
        pytest.param(False, 0o660, 0o2775, id="writable"),
        pytest.param(True, 0o640, 0o2755, id="read-only"),
    ],
)
def test_ownership_gives_the_volume_to_the_fs_group(
    tmp_path: Path, read_only: bool, file_mode: int, dir_mode: int
) -> None:
    root = tree(tmp_path / "vol")

    volumes.set_volume_ownership(root, GID, read_only=read_only)

    for path in (root, root / "sub", root / "sub" / "file", root / "top"):
        assert path.stat().st_gid == GID
    assert mode(root / "sub" / "file") == file_mode and mode(root / "top") == file_mode
    assert mode(root) == dir_mode and mode(root / "sub") == dir_mode
    assert os.lstat(root / "link").st_gid == GID


def test_no_fs_group_changes_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path / "vol")
    volumes.set_volume_ownership(root, None)
    assert mode(root / "top") == 0o600 and mode(root) == 0o755


@pytest.mark.parametrize(
    ("policy", "changed"),
    [pytest.param("OnRootMismatch", False, id="on-root-mismatch"), pytest.param("", True, id="always")],
)
def test_on_root_mismatch_skips_a_volume_whose_root_is_already_owned(
    tmp_path: Path, policy: str, changed: bool
) -> None:
    root = tree(tmp_path / "vol")
    volumes.set_volume_ownership(root, GID)
    (root / "later").write_text("z")
    (root / "later").chmod(0o600)

    volumes.set_volume_ownership(root, GID, policy=policy)

    assert (mode(root / "later") == 0o660) is changed


def test_on_root_mismatch_changes_a_root_without_setgid(tmp_path: Path) -> None:
    root = tree(tmp_path / "vol")
    assert volumes.needs_ownership_change(root, GID, read_only=False)
    volumes.set_volume_ownership(root, GID, policy="OnRootMismatch")
    assert not volumes.needs_ownership_change(root, GID, read_only=False)
    assert mode(root / "top") == 0o660


def pod_with(*vols: pod_pb2.Volume, fs_group: int | None = None) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.uid = "uid-1"
    p.spec.volumes.extend(vols)
    p.spec.containers.add(name="main", image="busybox:1")
    if fs_group is not None:
        p.spec.security_context.fs_group = fs_group
    return p


EMPTY = pod_pb2.Volume(name="data", empty_dir=pod_pb2.EmptyDirVolumeSource())
CONF = pod_pb2.Volume(name="conf", config_map=pod_pb2.ConfigMapVolumeSource(name="app"))


def test_an_empty_dir_sub_path_is_made_and_one_leaving_the_volume_is_refused(tmp_path: Path) -> None:
    p = pod_with(EMPTY)
    volumes.prepare(p, tmp_path)
    made = volumes.sub_path_source(tmp_path, p, EMPTY, "app/data")
    assert made == str(tmp_path / "uid-1" / "data" / "app" / "data") and Path(made).is_dir()

    (tmp_path / "uid-1" / "data" / "out").symlink_to("/etc")
    with pytest.raises(ContainerConfigError, match='volume "data": subPath out leads out of the volume'):
        volumes.sub_path_source(tmp_path, p, EMPTY, "out")


def test_config_files_get_the_fs_groups_modes_and_a_sub_path_binds_the_current_file(tmp_path: Path) -> None:
    p = pod_with(CONF, fs_group=GID)
    with pytest.raises(ContainerConfigError, match='volume "conf": its files have not arrived'):
        volumes.prepare(p, tmp_path)
    payload = node_service_pb2.VolumePayload(
        pod_uid="uid-1", volume="conf", files=[node_service_pb2.VolumeFile(path="a.conf", data=b"A", mode=0o400)]
    )

    assert volumes.sync(tmp_path, p, payload) is True
    assert volumes.sync(tmp_path, p, payload) is False  # the modes fsGroup added are not a difference
    volumes.prepare(p, tmp_path)

    file = tmp_path / "uid-1" / "conf" / "a.conf"
    assert file.read_bytes() == b"A" and mode(file) == 0o440 and file.stat().st_gid == GID
    pinned = volumes.sub_path_source(tmp_path, p, CONF, "a.conf")
    assert "/..20" in pinned and Path(pinned).read_bytes() == b"A"  # the version's file, not the symlink


def test_a_withheld_payload_keeps_what_is_written(tmp_path: Path) -> None:
    p = pod_with(CONF)
    withheld = node_service_pb2.VolumePayload(pod_uid="uid-1", volume="conf", withheld=True)
    assert volumes.sync(tmp_path, p, withheld) is False
    assert not (tmp_path / "uid-1" / "conf").exists()


def test_fs_group_and_supplemental_groups_are_the_containers_groups_and_config_mounts_read_only() -> None:
    p = pod_with(CONF, fs_group=2000)
    p.spec.security_context.supplemental_groups.extend([3000, 4000])
    p.spec.containers[0].volume_mounts.add(name="conf", mount_path="/etc/app")
    spec = build_spec(p, p.spec.containers[0], 0, node="n", epoch=1, extra_env={}, volumes_dir=Path("/v"))
    assert spec.group_add == [2000, 3000, 4000]
    assert [(m.target, m.source, m.read_only) for m in spec.mounts] == [("/etc/app", "/v/uid-1/conf", True)]


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_a_memory_empty_dir_is_a_tmpfs_of_its_size_limit_unmounted_with_the_pod(tmp_path: Path) -> None:
    shm = pod_pb2.Volume(name="shm", empty_dir=pod_pb2.EmptyDirVolumeSource(medium="Memory", size_limit="1Mi"))
    p = pod_with(shm)
    try:
        volumes.prepare(p, tmp_path)
        path = tmp_path / "uid-1" / "shm"
        assert os.path.ismount(path)
        fs = os.statvfs(path)
        assert fs.f_blocks * fs.f_frsize == 1024 * 1024
        assert mode(path) == volumes.EMPTY_DIR_MODE
    finally:
        volumes.remove(tmp_path, "uid-1")
    assert not os.path.ismount(path) and not (tmp_path / "uid-1").exists()


def test_an_agent_that_cannot_mount_keeps_secret_volumes_in_shared_memory_only_it_may_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(volumes, "_can_mount", lambda: False)
    monkeypatch.setattr(volumes, "SHM", tmp_path / "shm")
    creds = pod_pb2.Volume(name="creds", secret=pod_pb2.SecretVolumeSource(secret_name="db"))
    p = pod_with(creds, CONF)
    payload = node_service_pb2.VolumePayload(
        pod_uid="uid-1",
        volume="creds",
        secret=True,
        files=[node_service_pb2.VolumeFile(path="pw", data=b"x", mode=0o400)],
    )
    volumes.sync(tmp_path / "data", p, payload)

    [root] = (tmp_path / "shm").iterdir()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert (root / "uid-1" / "creds" / "pw").read_bytes() == b"x"
    assert volumes.volume_dir(tmp_path / "data", "uid-1", CONF) == tmp_path / "data" / "uid-1" / "conf"
    assert not (tmp_path / "data" / "uid-1" / "creds").exists()
    volumes.remove(tmp_path / "data", "uid-1")
    assert list(root.iterdir()) == []
