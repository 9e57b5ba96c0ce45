"""Validation of securityContext and volumes (the Pod Security levels: test_pod_security_levels)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults
from controlplane.apiserver.validation import validate
from protos import codec
from protos.kinds import by_kind


def pod(container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    main = {"name": "main", "image": "busybox:1", **(container or {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [main], **spec}}


def deployment(pod_doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_doc["spec"]},
        },
    }


def parsed(doc: dict[str, Any]) -> Any:
    info = by_kind(doc["kind"])
    msg, errors = codec.from_dict(doc, info.message)
    assert errors == []
    apply_defaults(info, msg)
    return info, msg


def causes_of(doc: dict[str, Any]) -> list[str]:
    info, msg = parsed(doc)
    return [str(c) for c in validate(info, msg)]


HOST = {"name": "data", "hostPath": {"path": "/srv/data", "type": "DirectoryOrCreate"}}
SCRATCH = {"name": "scratch", "emptyDir": {}}


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(pod(), id="nothing"),
        pytest.param(
            pod(
                {
                    "securityContext": {
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                        "runAsNonRoot": True,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data", "readOnly": True},
                        {"name": "scratch", "mountPath": "/tmp"},
                    ],
                },
                securityContext={"runAsUser": 0},
                volumes=[HOST, SCRATCH, {"name": "cache", "emptyDir": {"medium": "Memory"}}],
            ),
            id="everything",
        ),
    ],
)
def test_valid_security_settings_pass(doc: dict[str, Any]) -> None:
    assert causes_of(doc) == []


@pytest.mark.parametrize(
    ("doc", "cause"),
    [
        pytest.param(
            pod({"securityContext": {"runAsUser": -1}}),
            "spec.containers[0].securityContext.runAsUser: must be >= 0, got -1",
            id="negative-uid",
        ),
        pytest.param(
            pod(securityContext={"runAsGroup": -5}),
            "spec.securityContext.runAsGroup: must be >= 0, got -5",
            id="negative-pod-gid",
        ),
        pytest.param(
            pod({"securityContext": {"capabilities": {"drop": ["all"]}}}),
            "spec.containers[0].securityContext.capabilities.drop[0]: must be a capability name such as NET_ADMIN "
            'or ALL, got "all"',
            id="capability-name",
        ),
        pytest.param(
            pod(volumes=[SCRATCH, SCRATCH]),
            'spec.volumes[1].name: duplicate volume name "scratch"',
            id="duplicate-volume",
        ),
        pytest.param(
            pod({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
            'spec.containers[0].volumeMounts[0].name: no volume named "nope" in spec.volumes',
            id="unknown-volume",
        ),
        pytest.param(
            pod({"volumeMounts": [{"name": "scratch", "mountPath": "tmp"}]}, volumes=[SCRATCH]),
            'spec.containers[0].volumeMounts[0].mountPath: must be an absolute path, got "tmp"',
            id="relative-mount-path",
        ),
        pytest.param(
            pod(
                {"volumeMounts": [{"name": "scratch", "mountPath": "/a"}, {"name": "scratch", "mountPath": "/a/"}]},
                volumes=[SCRATCH],
            ),
            'spec.containers[0].volumeMounts[1].mountPath: duplicate mount path "/a/"',
            id="duplicate-mount-path",
        ),
        pytest.param(
            pod(volumes=[{"name": "h", "hostPath": {"path": "srv"}}]),
            'spec.volumes[0].hostPath.path: must be an absolute path, got "srv"',
            id="relative-host-path",
        ),
        pytest.param(
            pod(volumes=[{"name": "h", "hostPath": {"path": "/srv", "type": "Dir"}}]),
            'spec.volumes[0].hostPath.type: unknown type "Dir" (known: DirectoryOrCreate, Directory, FileOrCreate, '
            "File, Socket, CharDevice, BlockDevice, or empty)",
            id="host-path-type",
        ),
        pytest.param(
            pod(volumes=[{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]),
            "spec.volumes[0].hostPath.path: the Docker socket is never mounted into a container "
            "(it is root on the host)",
            id="docker-socket",
        ),
        pytest.param(
            pod(volumes=[{"name": "m", "emptyDir": {"medium": "Disk"}}]),
            'spec.volumes[0].emptyDir.medium: must be "" or "Memory", got "Disk"',
            id="medium",
        ),
        pytest.param(
            pod(volumes=[{"name": "Data", "emptyDir": {}}]),
            'spec.volumes[0].name: must be a DNS-1123 label (lower case letters, digits and "-"), got "Data"',
            id="volume-name",
        ),
        pytest.param(
            deployment(pod({"securityContext": {"runAsUser": -1}})),
            "spec.template.spec.containers[0].securityContext.runAsUser: must be >= 0, got -1",
            id="template",
        ),
        pytest.param(
            pod({"ports": [{"containerPort": 80, "hostPort": 8080}]}, hostNetwork=True),
            "spec.containers[0].ports[0].hostPort: must match containerPort (80) when hostNetwork is true, got 8080",
            id="host-network-port",
        ),
        pytest.param(
            pod(securityContext={"seccompProfile": {"type": "Unconfined"}}),
            'spec.securityContext.seccompProfile.type: "Unconfined" is not supported: corral runs every container '
            'under Docker\'s default seccomp profile (type "RuntimeDefault")',
            id="seccomp-unconfined",
        ),
        pytest.param(
            pod({"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}),
            'spec.containers[0].securityContext.seccompProfile.type: "Localhost" is not supported: corral runs '
            'every container under Docker\'s default seccomp profile (type "RuntimeDefault")',
            id="seccomp-localhost",
        ),
        pytest.param(
            pod({"securityContext": {"seccompProfile": {"type": "runtime/default"}}}),
            'spec.containers[0].securityContext.seccompProfile.type: must be "RuntimeDefault", got "runtime/default"',
            id="seccomp-unknown",
        ),
    ],
)
def test_invalid_security_settings_name_the_field(doc: dict[str, Any], cause: str) -> None:
    assert cause in causes_of(doc)


def test_host_network_ports_are_their_own_host_ports() -> None:
    _, msg = parsed(pod({"ports": [{"containerPort": 80}]}, hostNetwork=True))

    assert msg.spec.containers[0].ports[0].host_port == 80
