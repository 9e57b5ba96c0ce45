from typing import Any

import pytest

from controlplane.apiserver.defaults import apply_defaults, default_image_pull_policy
from controlplane.apiserver.validation import validate, validate_update
from protos import codec
from protos.corral.v1 import pod_pb2, service_pb2, workloads_pb2
from protos.kinds import by_kind


def deployment(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "httpd:2.4", "ports": [{"containerPort": 80}]}]},
            },
        },
    }
    base["spec"].update(spec)
    return base


def parsed_and_defaulted(doc: dict[str, Any]) -> Any:
    info = by_kind(doc["kind"])
    msg, errors = codec.from_dict(doc, info.message)
    assert errors == []
    apply_defaults(info, msg)
    return info, msg


def causes_of(doc: dict[str, Any]) -> list[str]:
    info, msg = parsed_and_defaulted(doc)
    return [str(c) for c in validate(info, msg)]


def test_deployment_defaults_like_kubernetes() -> None:
    _, d = parsed_and_defaulted(deployment())
    assert isinstance(d, workloads_pb2.Deployment)
    assert d.metadata.namespace == "default"
    assert d.spec.replicas == 1
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.strategy.rolling_update.max_surge.str_val == "25%"
    assert d.spec.strategy.rolling_update.max_unavailable.str_val == "25%"
    assert d.spec.revision_history_limit == 10
    assert d.spec.progress_deadline_seconds == 600
    pod = d.spec.template.spec
    assert pod.restart_policy == "Always"
    assert pod.termination_grace_period_seconds == 30
    assert pod.containers[0].image_pull_policy == "IfNotPresent"
    assert pod.containers[0].ports[0].protocol == "TCP"


def test_explicit_zero_replicas_is_kept() -> None:
    _, d = parsed_and_defaulted(deployment(replicas=0))
    assert d.spec.replicas == 0


def test_recreate_gets_no_rolling_update_defaults() -> None:
    _, d = parsed_and_defaulted(deployment(strategy={"type": "Recreate"}))
    assert not d.spec.strategy.HasField("rolling_update")
    assert causes_of(deployment(strategy={"type": "Recreate"})) == []


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        pytest.param("httpd:2.4.39", "IfNotPresent", id="tagged"),
        pytest.param("httpd", "Always", id="untagged"),
        pytest.param("httpd:latest", "Always", id="latest"),
        pytest.param("registry:5000/httpd", "Always", id="registry-port-untagged"),
        pytest.param("registry:5000/httpd:1", "IfNotPresent", id="registry-port-tagged"),
        pytest.param("httpd@sha256:abc", "IfNotPresent", id="digest"),
    ],
)
def test_image_pull_policy_default(image: str, policy: str) -> None:
    assert default_image_pull_policy(image) == policy


def test_valid_deployment_has_no_causes() -> None:
    assert causes_of(deployment(replicas=3)) == []


def _container(**fields: Any) -> dict[str, Any]:
    return {"name": "web", "image": "httpd:2.4", **fields}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(ports=[{"containerPort": 70000}])]},
                }
            ),
            "spec.template.spec.containers[0].ports[0].containerPort: must be 1-65535, got 70000",
            id="port-range",
        ),
        pytest.param(deployment(replicas=-1), "spec.replicas: must be >= 0, got -1", id="negative-replicas"),
        pytest.param(
            deployment(selector={"matchLabels": {"app": "other"}}),
            'spec.template.metadata.labels: selector does not match template labels "app=web"',
            id="selector-mismatch",
        ),
        pytest.param(deployment(selector={}), "spec.selector: required", id="missing-selector"),
        pytest.param(
            deployment(strategy={"type": "Rolling"}),
            'spec.strategy.type: must be one of "RollingUpdate", "Recreate", "BlueGreen", "Canary", got "Rolling"',
            id="bad-strategy",
        ),
        pytest.param(
            deployment(strategy={"rollingUpdate": {"maxSurge": "150%"}}),
            "spec.strategy.rollingUpdate.maxSurge: must not be greater than 100%, got 150%",
            id="surge-over-100",
        ),
        pytest.param(
            deployment(strategy={"rollingUpdate": {"maxSurge": "lots"}}),
            'spec.strategy.rollingUpdate.maxSurge: must be an integer or a percentage such as "25%", got "lots"',
            id="surge-not-percent",
        ),
        pytest.param(
            deployment(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
            "spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0",
            id="surge-and-unavailable-zero",
        ),
        pytest.param(
            deployment(
                template={"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [_container(name="Web_1")]}}
            ),
            "spec.template.spec.containers[0].name: must be a DNS-1123 label",
            id="container-name",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            _container(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}})
                        ]
                    },
                }
            ),
            "spec.template.spec.containers[0].resources.requests.memory: must be less than or equal to the limit",
            id="request-over-limit",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(livenessProbe={"periodSeconds": 5})]},
                }
            ),
            "spec.template.spec.containers[0].livenessProbe: must set exactly one of exec, httpGet, tcpSocket, grpc",
            id="probe-without-handler",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(readinessProbe={"grpc": {"port": 70000}})]},
                }
            ),
            "spec.template.spec.containers[0].readinessProbe.grpc.port: must be 1-65535, got 70000",
            id="grpc-probe-port-out-of-range",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(livenessProbe={"grpc": {"service": "x"}})]},
                }
            ),
            "spec.template.spec.containers[0].livenessProbe.grpc.port: must be 1-65535, got 0",
            id="grpc-probe-without-port",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [_container(startupProbe={"grpc": {"port": 9090}, "tcpSocket": {"port": 9090}})]
                    },
                }
            ),
            "spec.template.spec.containers[0].startupProbe: must set exactly one of exec, httpGet, tcpSocket, grpc",
            id="grpc-probe-with-a-second-handler",
        ),
        *(
            pytest.param(
                deployment(
                    template={
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [
                                _container(**{probe: {"exec": {"command": ["true"]}, "successThreshold": 2}})
                            ]
                        },
                    }
                ),
                f"spec.template.spec.containers[0].{probe}.successThreshold: must be 1, got 2",
                id=f"{probe}-success-threshold",
            )
            for probe in ("startupProbe", "livenessProbe")
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(lifecycle={"postStart": {}})]},
                }
            ),
            "spec.template.spec.containers[0].lifecycle.postStart: must set exactly one of exec, httpGet, sleep (none",
            id="hook-without-handler",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            _container(lifecycle={"preStop": {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}}})
                        ]
                    },
                }
            ),
            "spec.template.spec.containers[0].lifecycle.preStop: must set exactly one of exec, httpGet, sleep",
            id="hook-with-two-handlers",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(lifecycle={"preStop": {"tcpSocket": {"port": 80}}})]},
                }
            ),
            "spec.template.spec.containers[0].lifecycle.preStop.tcpSocket: not supported: tcpSocket is deprecated",
            id="hook-tcp-socket-refused",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(lifecycle={"postStart": {"exec": {}}})]},
                }
            ),
            "spec.template.spec.containers[0].lifecycle.postStart.exec.command: required",
            id="hook-exec-without-command",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(lifecycle={"postStart": {"httpGet": {"port": 0}}})]},
                }
            ),
            "spec.template.spec.containers[0].lifecycle.postStart.httpGet.port: must be 1-65535, got 0",
            id="hook-http-port-zero",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(lifecycle={"preStop": {"httpGet": {"port": "admin"}}})]},
                }
            ),
            'spec.template.spec.containers[0].lifecycle.preStop.httpGet.port: names no port of this container: "admin"',
            id="hook-http-unknown-port-name",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [_container(lifecycle={"preStop": {"sleep": {"seconds": 31}}})]},
                }
            ),
            "spec.template.spec.containers[0].lifecycle.preStop.sleep.seconds: "
            "must be between 0 and terminationGracePeriodSeconds (30)",
            id="hook-sleep-longer-than-grace",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 5,
                        "containers": [_container(lifecycle={"preStop": {"sleep": {"seconds": 6}}})],
                    },
                }
            ),
            "spec.template.spec.containers[0].lifecycle.preStop.sleep.seconds: "
            "must be between 0 and terminationGracePeriodSeconds (5)",
            id="hook-sleep-longer-than-own-grace",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"restartPolicy": "Never", "containers": [_container()]},
                }
            ),
            'spec.template.spec.restartPolicy: must be "Always" for a Deployment, got "Never"',
            id="deployment-restart-policy",
        ),
        pytest.param(
            deployment(
                template={
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"runtimeClassName": "kata", "containers": [_container()]},
                }
            ),
            'spec.template.spec.runtimeClassName: must be one of "docker", "process", got "kata"',
            id="unknown-runtime",
        ),
        pytest.param(
            {**deployment(), "metadata": {"name": "Web App"}},
            "metadata.name: must be a DNS-1123 subdomain",
            id="bad-name",
        ),
        pytest.param(
            {**deployment(), "metadata": {"name": "web", "labels": {"app": "a b"}}},
            'metadata.labels.app: invalid label value "a b"',
            id="bad-label-value",
        ),
    ],
)
def test_validation_names_the_field(doc: dict[str, Any], expected: str) -> None:
    causes = causes_of(doc)
    assert any(c.startswith(expected) for c in causes), causes


def test_grpc_probe_is_valid() -> None:
    probe = {"grpc": {"port": 2379, "service": "etcd"}, "initialDelaySeconds": 10}
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [_container(livenessProbe=probe)]}}
    assert causes_of(deployment(template=template)) == []


def test_lifecycle_hooks_are_valid() -> None:
    hooks = {
        "postStart": {"exec": {"command": ["sh", "-c", "touch /ready"]}},
        "preStop": {"httpGet": {"port": 80, "path": "/drain"}},
    }
    sleeping = {"preStop": {"sleep": {"seconds": 30}}}
    containers = [_container(lifecycle=hooks), _container(name="side", lifecycle=sleeping)]
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}
    assert causes_of(deployment(template=template)) == []


def test_every_problem_is_reported() -> None:
    doc = deployment(
        replicas=-2,
        template={
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [_container(ports=[{"containerPort": 0}, {"containerPort": 80, "protocol": "SCTP"}])]
            },
        },
    )
    causes = causes_of(doc)
    assert len(causes) == 3, causes


def test_service_validation() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]},
    }
    causes = causes_of(doc)
    assert "spec.ports[0].name: required when a Service has more than one port" in causes
    assert "spec.ports[1].name: required when a Service has more than one port" in causes
    _, svc = parsed_and_defaulted(doc)
    assert isinstance(svc, service_pb2.Service)
    assert svc.spec.ports[0].target_port.int_val == 80
    assert svc.spec.type == "ClusterIP"


def test_selector_is_immutable() -> None:
    info, old = parsed_and_defaulted(deployment())
    _, new = parsed_and_defaulted(
        deployment(
            selector={"matchLabels": {"app": "web", "v": "2"}},
            template={"metadata": {"labels": {"app": "web", "v": "2"}}, "spec": {"containers": [_container()]}},
        )
    )
    assert [str(c) for c in validate_update(info, old, new)] == ["spec.selector: field is immutable"]


def test_pod_spec_is_immutable_except_images() -> None:
    info = by_kind("Pod")
    old = pod_pb2.Pod(spec=pod_pb2.PodSpec(containers=[pod_pb2.Container(name="a", image="x:1")]))
    new = pod_pb2.Pod()
    new.CopyFrom(old)
    new.spec.containers[0].image = "x:2"
    assert validate_update(info, old, new) == []
    new.spec.restart_policy = "Never"
    assert len(validate_update(info, old, new)) == 1


def test_server_checks_quantities_even_when_a_client_skipped_parsing() -> None:
    info, d = parsed_and_defaulted(deployment())
    d.spec.template.spec.containers[0].resources.requests["cpu"] = "12x"
    assert [str(c) for c in validate(info, d)] == [
        'spec.template.spec.containers[0].resources.requests.cpu: invalid quantity "12x"'
    ]
