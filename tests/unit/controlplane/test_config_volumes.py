"""configMap, secret and projected volumes on the control plane: validation with field paths,
defaults, the Pod Security levels, and the files a node gets (items, modes, optional, the
downward API, errors as CreateContainerConfigError)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.apiserver.pod_security import ClusterPolicy, Enforced, violations
from controlplane.apiserver.validation import validate
from controlplane.nodeapi import configvolumes
from protos.corral.v1 import configmap_pb2, pod_pb2, secret_pb2
from protos.wellknown import CONFIG_ERRORS
from tests.unit.controlplane.test_pod_security import parsed, pod

# -- validation --------------------------------------------------------------------------


def causes(doc: dict[str, Any]) -> list[str]:
    info, msg = parsed(doc)
    return [str(c) for c in validate(info, msg)]


def with_volume(volume: dict[str, Any], mount: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    container = {"volumeMounts": [{"name": volume["name"], "mountPath": "/v", **(mount or {})}]}
    return pod(container, volumes=[volume], **spec)


V = "spec.volumes[0]"
M = "spec.containers[0].volumeMounts[0]"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(with_volume({"name": "c", "configMap": {"name": "app"}}), [], id="config-map"),
        pytest.param(
            with_volume(
                {
                    "name": "c",
                    "configMap": {
                        "name": "app",
                        "defaultMode": 0o400,
                        "optional": True,
                        "items": [{"key": "a.conf", "path": "conf/a.conf", "mode": 0o600}],
                    },
                }
            ),
            [],
            id="config-map-items",
        ),
        pytest.param(with_volume({"name": "s", "secret": {"secretName": "db"}}), [], id="secret"),
        pytest.param(
            with_volume({"name": "c", "configMap": {}}), [f"{V}.configMap.name: required"], id="config-map-no-name"
        ),
        pytest.param(
            with_volume({"name": "s", "secret": {}}), [f"{V}.secret.secretName: required"], id="secret-no-name"
        ),
        pytest.param(
            with_volume({"name": "c", "configMap": {"name": "app", "items": [{"key": "k", "path": "/etc/k"}]}}),
            [f'{V}.configMap.items[0].path: must be a relative path, got "/etc/k"'],
            id="absolute-item-path",
        ),
        pytest.param(
            with_volume({"name": "c", "configMap": {"name": "app", "items": [{"key": "k", "path": "a/../../k"}]}}),
            [f"{V}.configMap.items[0].path: must not contain '..', got \"a/../../k\""],
            id="dot-dot-item-path",
        ),
        pytest.param(
            with_volume({"name": "c", "secret": {"secretName": "db", "items": [{"key": "k", "path": "..k"}]}}),
            [f"{V}.secret.items[0].path: must not start with '..', got \"..k\""],
            id="item-path-starting-with-dot-dot",
        ),
        pytest.param(
            with_volume({"name": "c", "configMap": {"name": "app", "items": [{"path": "k"}]}}),
            [f"{V}.configMap.items[0].key: required"],
            id="item-without-key",
        ),
        pytest.param(
            with_volume({"name": "c", "configMap": {"name": "app", "defaultMode": 0o1000}}),
            [f"{V}.configMap.defaultMode: must be a number between 0 and 0777 (octal), both inclusive, got 512"],
            id="mode-too-large",
        ),
        pytest.param(
            with_volume(
                {"name": "c", "secret": {"secretName": "db", "items": [{"key": "k", "path": "k", "mode": -1}]}}
            ),
            [f"{V}.secret.items[0].mode: must be a number between 0 and 0777 (octal), both inclusive, got -1"],
            id="negative-item-mode",
        ),
        pytest.param(
            with_volume({"name": "c", "configMap": {"name": "app"}, "persistentVolumeClaim": {"claimName": "data"}}),
            [f"{V}: may not specify more than 1 volume type, got configMap, persistentVolumeClaim"],
            id="config-map-and-claim",
        ),
        pytest.param(
            with_volume({"name": "c", "emptyDir": {}, "secret": {"secretName": "db"}}),
            [f"{V}: may not specify more than 1 volume type, got emptyDir, secret"],
            id="two-sources",
        ),
        pytest.param(
            with_volume(
                {
                    "name": "p",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "a", "items": [{"key": "k", "path": "same"}]}},
                            {"secret": {"name": "b", "items": [{"key": "k", "path": "same"}]}},
                        ]
                    },
                }
            ),
            [f'{V}.projected.sources[1].secret.items[0].path: conflicting duplicate path "same"'],
            id="projected-duplicate-path",
        ),
        pytest.param(
            with_volume({"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
            [
                f"{V}.projected.sources[0].serviceAccountToken: not supported: corral issues no service account "
                "tokens (remove the source)"
            ],
            id="service-account-token",
        ),
        pytest.param(
            with_volume(
                {
                    "name": "p",
                    "projected": {
                        "sources": [
                            {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}
                        ]
                    },
                }
            ),
            [
                f"{V}.projected.sources[0].downwardAPI.items[0].fieldRef.fieldPath: must be one of "
                '"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations", '
                'got "spec.nodeName"'
            ],
            id="downward-field-not-offered",
        ),
        pytest.param(
            with_volume(
                {
                    "name": "p",
                    "projected": {
                        "sources": [
                            {"downwardAPI": {"items": [{"path": "c", "resourceFieldRef": {"resource": "limits.cpu"}}]}}
                        ]
                    },
                }
            ),
            [
                f"{V}.projected.sources[0].downwardAPI.items[0].resourceFieldRef: not supported: corral projects "
                "only fieldRef (the pod's metadata)"
            ],
            id="resource-field-ref",
        ),
        pytest.param(
            with_volume({"name": "p", "projected": {"sources": [{}]}}),
            [f"{V}.projected.sources[0]: must set exactly one of configMap, secret, downwardAPI, got none"],
            id="empty-projection",
        ),
        pytest.param(with_volume({"name": "e", "emptyDir": {}}, {"subPath": "data/app"}), [], id="sub-path"),
        pytest.param(
            with_volume({"name": "e", "emptyDir": {}}, {"subPath": "/data"}),
            [f'{M}.subPath: must be a relative path, got "/data"'],
            id="absolute-sub-path",
        ),
        pytest.param(
            with_volume({"name": "e", "emptyDir": {}}, {"subPath": "a/../.."}),
            [f"{M}.subPath: must not contain '..', got \"a/../..\""],
            id="dot-dot-sub-path",
        ),
        pytest.param(
            with_volume({"name": "e", "emptyDir": {}}, {"subPathExpr": "$(POD_NAME)"}),
            [f"{M}.subPathExpr: not supported: corral does not expand variables in subPathExpr (use subPath)"],
            id="sub-path-expr",
        ),
        pytest.param(
            with_volume({"name": "e", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}), [], id="size-limit"
        ),
        pytest.param(
            pod(
                securityContext={"fsGroup": 2000, "supplementalGroups": [3000], "fsGroupChangePolicy": "OnRootMismatch"}
            ),
            [],
            id="fs-group",
        ),
        pytest.param(
            pod(securityContext={"fsGroup": -1, "supplementalGroups": [-2], "fsGroupChangePolicy": "Sometimes"}),
            [
                "spec.securityContext.fsGroup: must be >= 0, got -1",
                "spec.securityContext.supplementalGroups[0]: must be >= 0, got -2",
                'spec.securityContext.fsGroupChangePolicy: must be "OnRootMismatch" or "Always", got "Sometimes"',
            ],
            id="bad-fs-group",
        ),
    ],
)
def test_volume_validation_names_the_field(doc: dict[str, Any], expected: list[str]) -> None:
    assert causes(doc) == expected


def test_default_mode_is_0644_and_downward_api_version_v1() -> None:
    doc = pod(
        volumes=[
            {"name": "c", "configMap": {"name": "app"}},
            {"name": "s", "secret": {"secretName": "db"}},
            {
                "name": "p",
                "projected": {
                    "sources": [{"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]
                },
            },
            {"name": "kept", "secret": {"secretName": "db", "defaultMode": 0o400}},
        ]
    )
    _, msg = parsed(doc)
    volumes = msg.spec.volumes
    assert [volumes[0].config_map.default_mode, volumes[1].secret.default_mode] == [0o644, 0o644]
    assert volumes[2].projected.default_mode == 0o644
    assert volumes[2].projected.sources[0].downward_api.items[0].field_ref.api_version == "v1"
    assert volumes[3].secret.default_mode == 0o400


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_every_pod_security_level_admits_these_volumes_and_fs_group(level: str) -> None:
    hardened = {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "c", "mountPath": "/c"}, {"name": "s", "mountPath": "/s", "subPath": "pw"}],
    }
    doc = pod(
        hardened,
        securityContext={"fsGroup": 2000, "supplementalGroups": [3000]},
        volumes=[
            {"name": "c", "configMap": {"name": "app"}},
            {"name": "s", "secret": {"secretName": "db"}},
            {"name": "p", "projected": {"sources": [{"secret": {"name": "db"}}]}},
            {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ],
    )
    _, msg = parsed(doc)
    assert violations(ClusterPolicy(), Enforced(level, "test"), msg) == []


# -- projection ----------------------------------------------------------------------------


def config_map(name: str, data: dict[str, str], binary: dict[str, bytes] | None = None) -> configmap_pb2.ConfigMap:
    cm = configmap_pb2.ConfigMap(data=data, binary_data=binary or {})
    cm.metadata.name, cm.metadata.namespace = name, "default"
    return cm


def secret(name: str, data: dict[str, bytes]) -> secret_pb2.Secret:
    s = secret_pb2.Secret(data=data)
    s.metadata.name, s.metadata.namespace = name, "default"
    return s


APP = config_map("app", {"a.conf": "A", "b.conf": "B"}, {"logo.png": b"\x89PNG"})
DB = secret("db", {"password": b"pw", "user": b"admin"})


def volume_pod(*volumes: dict[str, Any]) -> pod_pb2.Pod:
    doc = pod(volumes=list(volumes))
    doc["metadata"].update(namespace="default", uid="u-1", labels={"app": "web", "tier": "front"})
    _, msg = parsed(doc)
    assert isinstance(msg, pod_pb2.Pod)
    return msg


def project(p: pod_pb2.Pod) -> tuple[dict[str, dict[str, tuple[bytes, int]]], str]:
    cms = {f"default/{o.metadata.name}": o for o in (APP,)}
    secrets = {f"default/{o.metadata.name}": o for o in (DB,)}
    payloads, error = configvolumes.project(
        p, lambda ns, n: secrets.get(f"{ns}/{n}"), lambda ns, n: cms.get(f"{ns}/{n}")
    )
    return {v.volume: {f.path: (f.data, f.mode) for f in v.files} for v in payloads}, error


@pytest.mark.parametrize(
    ("volume", "files", "error"),
    [
        pytest.param(
            {"name": "v", "configMap": {"name": "app"}},
            {"a.conf": (b"A", 0o644), "b.conf": (b"B", 0o644), "logo.png": (b"\x89PNG", 0o644)},
            "",
            id="every-key-data-and-binary",
        ),
        pytest.param(
            {
                "name": "v",
                "configMap": {
                    "name": "app",
                    "defaultMode": 0o440,
                    "items": [{"key": "a.conf", "path": "etc/a", "mode": 0o600}, {"key": "b.conf", "path": "b"}],
                },
            },
            {"etc/a": (b"A", 0o600), "b": (b"B", 0o440)},
            "",
            id="items-and-modes",
        ),
        pytest.param(
            {"name": "v", "configMap": {"name": "nope"}}, None, 'volume "v": configmap "nope" not found', id="missing"
        ),
        pytest.param({"name": "v", "configMap": {"name": "nope", "optional": True}}, {}, "", id="missing-optional"),
        pytest.param(
            {"name": "v", "secret": {"secretName": "db", "items": [{"key": "token", "path": "t"}]}},
            None,
            'volume "v": couldn\'t find key token in Secret default/db',
            id="missing-key",
        ),
        pytest.param(
            {
                "name": "v",
                "secret": {
                    "secretName": "db",
                    "optional": True,
                    "items": [{"key": "token", "path": "t"}, {"key": "user", "path": "u"}],
                },
            },
            {"u": (b"admin", 0o644)},
            "",
            id="missing-key-optional",
        ),
        pytest.param(
            {
                "name": "v",
                "projected": {
                    "defaultMode": 0o400,
                    "sources": [
                        {"configMap": {"name": "app", "items": [{"key": "a.conf", "path": "a"}]}},
                        {"secret": {"name": "db", "items": [{"key": "password", "path": "pw", "mode": 0o440}]}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                                    {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                                    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o444},
                                ]
                            }
                        },
                    ],
                },
            },
            {
                "a": (b"A", 0o400),
                "pw": (b"pw", 0o440),
                "name": (b"p", 0o400),
                "labels": (b'app="web"\ntier="front"', 0o400),
                "tier": (b"front", 0o400),
                "uid": (b"u-1", 0o444),
            },
            "",
            id="projected",
        ),
        pytest.param(
            {"name": "v", "projected": {"sources": [{"configMap": {"name": "app"}}, {"secret": {"name": "gone"}}]}},
            None,
            'volume "v": secret "gone" not found',
            id="projected-missing-secret",
        ),
    ],
)
def test_projection(volume: dict[str, Any], files: dict[str, tuple[bytes, int]] | None, error: str) -> None:
    got, problem = project(volume_pod(volume))
    assert problem == error
    assert got == ({} if files is None else {"v": files})


def test_only_volumes_holding_a_secret_are_marked_for_tmpfs() -> None:
    p = volume_pod(
        {"name": "c", "configMap": {"name": "app"}},
        {"name": "s", "secret": {"secretName": "db"}},
        {"name": "p", "projected": {"sources": [{"configMap": {"name": "app"}}, {"secret": {"name": "db"}}]}},
        {"name": "e", "emptyDir": {}},
    )
    payloads, _ = configvolumes.project(p, lambda ns, n: DB, lambda ns, n: APP)
    assert {v.volume: v.secret for v in payloads} == {"c": False, "s": True, "p": True}
    assert configvolumes.refs(p) == {("ConfigMap", "app"), ("Secret", "db")}


def test_a_volume_error_is_every_containers_config_error_after_its_own() -> None:
    p = volume_pod({"name": "v", "configMap": {"name": "nope"}})
    p.spec.containers.add(name="side", image="busybox:1")
    p.spec.init_containers.add(name="setup", image="busybox:1")
    p.metadata.annotations[CONFIG_ERRORS] = json.dumps({"main": 'secret "env" not found'})
    out = configvolumes.with_error(p, 'volume "v": configmap "nope" not found')
    assert json.loads(out.metadata.annotations[CONFIG_ERRORS]) == {
        "main": 'secret "env" not found',
        "side": 'volume "v": configmap "nope" not found',
        "setup": 'volume "v": configmap "nope" not found',
    }


def test_the_digest_follows_contents_not_the_pod() -> None:
    p = volume_pod({"name": "v", "configMap": {"name": "app"}})
    one, _ = configvolumes.project(p, lambda ns, n: None, lambda ns, n: APP)
    changed = config_map("app", {"a.conf": "A2", "b.conf": "B"}, {"logo.png": b"\x89PNG"})
    two, _ = configvolumes.project(p, lambda ns, n: None, lambda ns, n: changed)
    assert configvolumes.digest(one, "") != configvolumes.digest(two, "")
    assert configvolumes.digest(one, "") == configvolumes.digest(list(one), "")
    assert configvolumes.digest([], "") == ""
