"""A pod's securityContext and volumes as runtime spec fields (build_spec), and the
emptyDir directories made before a start and removed with the pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.pods import security_context, volumes
from agent.pods.worker import build_spec
from agent.runtime.base import ContainerSpec, Mount
from agent.runtime.checks import non_root_refusal, process_refusal
from agent.runtime.errors import ContainerConfigError
from protos import codec
from protos.corral.v1 import pod_pb2

MEMORY_CACHE = pod_pb2.Volume(name="cache", empty_dir=pod_pb2.EmptyDirVolumeSource(medium="Memory"))
VOLUMES = Path("/var/lib/corral/volumes")


def spec_of(container: dict[str, Any] | None = None, **pod_spec: Any) -> ContainerSpec:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
        "spec": {"containers": [{"name": "main", "image": "busybox:1", **(container or {})}], **pod_spec},
    }
    pod, errors = codec.from_dict(doc, pod_pb2.Pod)
    assert errors == []
    assert isinstance(pod, pod_pb2.Pod)
    return build_spec(pod, pod.spec.containers[0], 0, node="n1", epoch=1, extra_env={}, volumes_dir=VOLUMES)


@pytest.mark.parametrize(
    ("container", "pod_spec", "expected"),
    [
        pytest.param(
            {},
            {},
            {
                "user": "",
                "read_only_rootfs": False,
                "cap_add": [],
                "cap_drop": [],
                "privileged": False,
                "no_new_privileges": True,
                "run_as_non_root": False,
                "mounts": [],
            },
            id="defaults",
        ),
        pytest.param({"securityContext": {"runAsUser": 1000}}, {}, {"user": "1000"}, id="uid"),
        pytest.param(
            {"securityContext": {"runAsUser": 1000, "runAsGroup": 2000}}, {}, {"user": "1000:2000"}, id="uid-gid"
        ),
        pytest.param({}, {"securityContext": {"runAsUser": 7, "runAsGroup": 8}}, {"user": "7:8"}, id="pod-level"),
        pytest.param(
            {"securityContext": {"runAsUser": 1000}},
            {"securityContext": {"runAsUser": 7, "runAsGroup": 8, "runAsNonRoot": True}},
            {"user": "1000:8", "run_as_non_root": True},
            id="container-overrides-pod",
        ),
        pytest.param(
            {"securityContext": {"runAsNonRoot": False}},
            {"securityContext": {"runAsNonRoot": True}},
            {"run_as_non_root": False},
            id="container-non-root-overrides",
        ),
        pytest.param(
            {
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                }
            },
            {},
            {"read_only_rootfs": True, "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"]},
            id="rootfs-and-capabilities",
        ),
        pytest.param(
            {"securityContext": {"privileged": True}},
            {},
            {"privileged": True, "no_new_privileges": False},
            id="privileged",
        ),
        pytest.param(
            {"securityContext": {"allowPrivilegeEscalation": True}}, {}, {"no_new_privileges": False}, id="escalation"
        ),
        pytest.param(
            {"securityContext": {"allowPrivilegeEscalation": False}},
            {},
            {"no_new_privileges": True},
            id="no-escalation",
        ),
        pytest.param(
            {
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data", "readOnly": True},
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "cache", "mountPath": "/cache"},
                ]
            },
            {
                "volumes": [
                    {"name": "data", "hostPath": {"path": "/srv/data"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "cache", "emptyDir": {"medium": "Memory"}},
                ]
            },
            {
                "mounts": [
                    Mount("/data", "/srv/data", read_only=True),
                    Mount("/scratch", str(VOLUMES / "uid-1" / "scratch")),
                    # tmpfs on the volume's directory (under /dev/shm for an agent that is not root)
                    Mount("/cache", str(volumes.volume_dir(VOLUMES, "uid-1", MEMORY_CACHE))),
                ]
            },
            id="mounts",
        ),
    ],
)
def test_build_spec_maps_security_context_and_volumes(
    container: dict[str, Any], pod_spec: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = spec_of(container, **pod_spec)

    assert {name: getattr(spec, name) for name in expected} == expected


def test_empty_dirs_are_made_writable_and_removed_with_the_pod(tmp_path: Path) -> None:
    pod = pod_pb2.Pod()
    pod.metadata.uid = "uid-1"
    pod.spec.volumes.add(name="scratch").empty_dir.SetInParent()
    pod.spec.volumes.add(name="made").host_path.CopyFrom(
        pod_pb2.HostPathVolumeSource(path=str(tmp_path / "host" / "made"), type="DirectoryOrCreate")
    )

    volumes.prepare(pod, tmp_path / "volumes")

    scratch = tmp_path / "volumes" / "uid-1" / "scratch"
    assert scratch.is_dir() and scratch.stat().st_mode & 0o777 == 0o777
    assert (tmp_path / "host" / "made").is_dir()
    volumes.remove(tmp_path / "volumes", "uid-1")
    assert not (tmp_path / "volumes" / "uid-1").exists()


def _with_volumes(*volumes: pod_pb2.Volume) -> pod_pb2.Pod:
    pod = pod_pb2.Pod()
    pod.metadata.uid = "uid-1"
    pod.spec.volumes.extend(volumes)
    return pod


@pytest.mark.parametrize(
    ("pod_volumes", "expected"),
    [
        pytest.param((), False, id="none"),
        pytest.param(
            (pod_pb2.Volume(name="shm", empty_dir=pod_pb2.EmptyDirVolumeSource(medium="Memory")),),
            True,
            id="memory-empty-dir",
        ),
        pytest.param(
            (
                pod_pb2.Volume(name="a", empty_dir=pod_pb2.EmptyDirVolumeSource(medium="Memory")),
                pod_pb2.Volume(name="b", empty_dir=pod_pb2.EmptyDirVolumeSource(medium="Memory")),
            ),
            True,
            id="memory-empty-dirs",
        ),
        pytest.param(
            (pod_pb2.Volume(name="scratch", empty_dir=pod_pb2.EmptyDirVolumeSource()),), True, id="disk-empty-dir"
        ),
        pytest.param(
            (
                pod_pb2.Volume(name="shm", empty_dir=pod_pb2.EmptyDirVolumeSource(medium="Memory")),
                pod_pb2.Volume(name="scratch", empty_dir=pod_pb2.EmptyDirVolumeSource()),
            ),
            True,
            id="memory-and-disk-empty-dirs",
        ),
        pytest.param(
            (pod_pb2.Volume(name="logs", host_path=pod_pb2.HostPathVolumeSource(path="/var/log")),),
            True,
            id="host-path",
        ),
    ],
)
def test_has_volumes_to_prepare(pod_volumes: tuple[pod_pb2.Volume, ...], expected: bool, tmp_path: Path) -> None:
    pod = _with_volumes(*pod_volumes)

    assert security_context.has_volumes_to_prepare(pod) is expected
    if not expected:  # skipping prepare for it changes nothing
        volumes.prepare(pod, tmp_path / "volumes")
        assert not (tmp_path / "volumes").exists()


@pytest.mark.parametrize(
    ("kind", "make"), [pytest.param("Directory", False, id="missing"), pytest.param("File", True, id="wrong-type")]
)
def test_host_path_types_are_checked(tmp_path: Path, kind: str, make: bool) -> None:
    if make:
        (tmp_path / "x").mkdir()
    pod = pod_pb2.Pod()
    pod.spec.volumes.add(name="h").host_path.CopyFrom(pod_pb2.HostPathVolumeSource(path=str(tmp_path / "x"), type=kind))

    with pytest.raises(ContainerConfigError, match="volume 'h': hostPath"):
        volumes.prepare(pod, tmp_path / "volumes")


@pytest.mark.parametrize(
    ("user", "image_user", "refused"),
    [
        pytest.param("", "", True, id="image-root-by-default"),
        pytest.param("", "root", True, id="image-root"),
        pytest.param("", "0:0", True, id="image-uid-0"),
        pytest.param("", "nobody", True, id="image-named-user"),
        pytest.param("", "1000", False, id="image-non-root"),
        pytest.param("0", "1000", True, id="run-as-root"),
        pytest.param("1000", "", False, id="run-as-1000"),
    ],
)
def test_run_as_non_root(user: str, image_user: str, refused: bool) -> None:
    spec = ContainerSpec(name="c", image="i", user=user, run_as_non_root=True)

    assert (non_root_refusal(spec, image_user) is not None) is refused


@pytest.mark.parametrize(
    ("fields", "agent_uid", "message"),
    [
        pytest.param({}, 0, None, id="plain"),
        pytest.param({"user": "1000:1000"}, 0, None, id="as-root-agent"),
        pytest.param({"user": "1000"}, 1000, None, id="same-user"),
        pytest.param({"user": "1001"}, 1000, "need the agent to run as root", id="other-user"),
        pytest.param({"run_as_non_root": True}, 0, "runAsNonRoot", id="non-root-root-agent"),
        pytest.param({"run_as_non_root": True}, 1000, None, id="non-root-agent"),
        pytest.param(
            {"mounts": [Mount("/x", tmpfs=True)], "privileged": True},
            0,
            "does not support volumes (volumeMounts), privileged",
            id="several",
        ),
    ],
)
def test_process_refusals(fields: dict[str, Any], agent_uid: int, message: str | None) -> None:
    refusal = process_refusal(ContainerSpec(name="c", image="host", **fields), agent_uid)

    assert refusal is None if message is None else message in (refusal or "")
