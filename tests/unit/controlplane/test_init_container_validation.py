"""Init containers at the API: every container rule applies to them, with their own field
paths; what Kubernetes forbids them (probes, lifecycle) is refused unless they are sidecars
(restartPolicy Always, the only value, and only on init containers); pod security levels
see them."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.apiserver.pod_security import ClusterPolicy, cluster_default, violations
from controlplane.apiserver.validation import validate_update
from controlplane.nodeapi import configenv
from protos import codec
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind
from tests.unit.controlplane.test_pod_security import causes_of, parsed

CLUSTER = "cluster default: corral server --pod-security"
BASELINE = f'is not allowed by the "baseline" pod security level ({CLUSTER})'


def pod(init: dict[str, Any] | None = None, *, app: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    first = {"name": "setup", "image": "busybox:1", "command": ["true"], **(init or {})}
    main = {"name": "main", "image": "busybox:1", **(app or {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"initContainers": [first], "containers": [main], **spec},
    }


def test_plain_init_container_is_valid_and_defaulted() -> None:
    assert causes_of(pod()) == []
    _, msg = parsed(pod({"image": "busybox", "ports": [{"containerPort": 80}]}))
    assert msg.spec.init_containers[0].image_pull_policy == "Always"
    assert msg.spec.init_containers[0].ports[0].protocol == "TCP"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(
            pod({"name": "main"}), ['spec.containers[0].name: duplicate container name "main"'], id="name-shared"
        ),
        pytest.param(pod({"name": "Setup"}), ["spec.initContainers[0].name"], id="name-not-a-label"),
        pytest.param(pod({"image": " "}), ["spec.initContainers[0].image: required"], id="image-required"),
        pytest.param(
            pod({"readinessProbe": {"exec": {"command": ["true"]}}}),
            ["spec.initContainers[0].readinessProbe: may not be set for init containers without restartPolicy=Always"],
            id="readiness-probe",
        ),
        pytest.param(
            pod({"livenessProbe": {"tcpSocket": {"port": 80}}}),
            ["spec.initContainers[0].livenessProbe: may not be set for init containers"],
            id="liveness-probe",
        ),
        pytest.param(
            pod({"startupProbe": {"httpGet": {"port": 80}}}),
            ["spec.initContainers[0].startupProbe: may not be set for init containers"],
            id="startup-probe",
        ),
        pytest.param(
            pod({"lifecycle": {"preStop": {"sleep": {"seconds": 1}}}}),
            ["spec.initContainers[0].lifecycle: may not be set for init containers"],
            id="lifecycle",
        ),
        pytest.param(
            pod({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}),
            ['spec.initContainers[0].resources.requests.cpu: must be less than or equal to the limit "1"'],
            id="request-over-limit",
        ),
        pytest.param(
            pod({"env": [{"name": "A", "valueFrom": {}}]}),
            [
                "spec.initContainers[0].env[0].valueFrom: "
                "must specify fieldRef, resourceFieldRef, secretKeyRef or configMapKeyRef"
            ],
            id="env-value-from",
        ),
        pytest.param(
            pod({"envFrom": [{}]}),
            ["spec.initContainers[0].envFrom[0]: must specify configMapRef or secretRef"],
            id="env-from",
        ),
        pytest.param(
            pod({"imagePullPolicy": "Sometimes"}), ["spec.initContainers[0].imagePullPolicy"], id="pull-policy"
        ),
        pytest.param(
            pod({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
            ["spec.initContainers[0].securityContext.seccompProfile.type"],
            id="seccomp",
        ),
        pytest.param(
            pod({"volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
            ['spec.initContainers[0].volumeMounts[0].name: no volume named "data"'],
            id="mount-without-volume",
        ),
        pytest.param(
            pod({"ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 8080}]}),
            ["spec.initContainers[0].ports[1].hostPort: duplicate host port 8080/TCP"],
            id="host-port-twice-in-one",
        ),
    ],
)
def test_init_container_problems_name_the_field(doc: dict[str, Any], expected: list[str]) -> None:
    found = causes_of(doc)
    assert len(found) == len(expected), found
    for cause, start in zip(found, expected, strict=True):
        assert cause.startswith(start), found


def test_init_container_may_share_a_host_port_with_an_app_container() -> None:
    """They never run at the same time (Kubernetes checks each init container on its own)."""
    port = {"ports": [{"containerPort": 80, "hostPort": 8080}]}
    assert causes_of(pod(port, app=port)) == []


SIDECAR = {"restartPolicy": "Always"}
PROBES_AND_HOOKS = {
    "readinessProbe": {"exec": {"command": ["true"]}},
    "livenessProbe": {"tcpSocket": {"port": 80}},
    "startupProbe": {"httpGet": {"port": 80}},
    "lifecycle": {"preStop": {"sleep": {"seconds": 1}}, "postStart": {"exec": {"command": ["true"]}}},
}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(pod(SIDECAR), [], id="sidecar"),
        pytest.param(pod({**SIDECAR, **PROBES_AND_HOOKS}), [], id="sidecar-probes-and-hooks"),
        pytest.param(
            pod({"restartPolicy": "Never"}),
            ['spec.initContainers[0].restartPolicy: must be one of "Always", got "Never"'],
            id="init-never",
        ),
        pytest.param(
            pod({"restartPolicy": "OnFailure", **PROBES_AND_HOOKS}),
            [
                'spec.initContainers[0].restartPolicy: must be one of "Always", got "OnFailure"',
                "spec.initContainers[0].lifecycle: may not be set for init containers without restartPolicy=Always",
                "spec.initContainers[0].livenessProbe: may not",
                "spec.initContainers[0].readinessProbe: may not",
                "spec.initContainers[0].startupProbe: may not",
            ],
            id="init-on-failure-with-probes",
        ),
        pytest.param(
            pod(app=SIDECAR),
            ["spec.containers[0].restartPolicy: may not be set for non-init containers"],
            id="app-container",
        ),
        pytest.param(
            pod(
                {**SIDECAR, "ports": [{"containerPort": 80, "hostPort": 8080}]},
                app={"ports": [{"containerPort": 81, "hostPort": 8080}]},
            ),
            ["spec.containers[0].ports[0].hostPort: duplicate host port 8080/TCP"],
            id="sidecar-host-port-beside-app",
        ),
    ],
)
def test_sidecar_rules(doc: dict[str, Any], expected: list[str]) -> None:
    found = causes_of(doc)
    assert len(found) == len(expected), found
    for cause, start in zip(found, expected, strict=True):
        assert cause.startswith(start), found


def test_sidecar_restart_policy_round_trips() -> None:
    msg, errors = codec.from_dict(pod(SIDECAR), pod_pb2.Pod)
    assert errors == []
    assert msg.spec.init_containers[0].restart_policy == "Always"
    assert codec.to_dict(msg)["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    assert "restartPolicy" not in codec.to_dict(msg)["spec"]["containers"][0]


def test_init_container_images_may_change_on_a_pod() -> None:
    info = by_kind("Pod")
    _, old = parsed(pod())
    new = pod_pb2.Pod()
    new.CopyFrom(old)
    new.spec.init_containers[0].image = "busybox:2"
    assert validate_update(info, old, new) == []
    new.spec.init_containers[0].command.append("again")
    assert len(validate_update(info, old, new)) == 1


def baseline(doc: dict[str, Any]) -> list[str]:
    policy = ClusterPolicy()
    _, msg = parsed(doc)
    return [str(c) for c in violations(policy, cluster_default(policy), msg)]


@pytest.mark.parametrize(
    ("init", "expected"),
    [
        pytest.param(
            {"securityContext": {"privileged": True}},
            f"spec.initContainers[0].securityContext.privileged: true {BASELINE}",
            id="privileged",
        ),
        pytest.param(
            {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
            f'spec.initContainers[0].securityContext.capabilities.add[0]: "SYS_ADMIN" {BASELINE}',
            id="sys-admin",
        ),
        pytest.param(
            {"ports": [{"containerPort": 80, "hostPort": 80}]},
            f"spec.initContainers[0].ports[0].hostPort: 80 {BASELINE}",
            id="host-port",
        ),
        pytest.param(
            {"restartPolicy": "Always", "securityContext": {"privileged": True}},
            f"spec.initContainers[0].securityContext.privileged: true {BASELINE}",
            id="privileged-sidecar",
        ),
    ],
)
def test_baseline_refuses_an_init_container_as_an_app_container(init: dict[str, Any], expected: str) -> None:
    assert [c.split(";")[0] for c in baseline(pod(init))] == [expected]


def test_restricted_demands_of_init_containers_too() -> None:
    hardened = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL"]},
    }
    policy = ClusterPolicy(level="restricted")
    _, msg = parsed(pod(app={"securityContext": hardened}))
    found = [str(c) for c in violations(policy, cluster_default(policy), msg)]
    assert found and all(c.startswith("spec.initContainers[0].securityContext.") for c in found)
    _, msg = parsed(pod({"securityContext": hardened}, app={"securityContext": hardened}))
    assert violations(policy, cluster_default(policy), msg) == []


def test_config_references_of_init_containers_reach_the_node() -> None:
    _, msg = parsed(
        pod(
            {
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "token"}}}],
                "envFrom": [{"configMapRef": {"name": "settings"}}],
            }
        )
    )
    assert configenv.refs(msg) == {("Secret", "db"), ("ConfigMap", "settings")}
    out, _, _ = configenv.resolve_pod(msg, lambda ns, name: None)
    assert out.metadata.annotations  # the missing Secret is the init container's config error
    assert "setup" in out.metadata.annotations["corral.io/container-config-errors"]
