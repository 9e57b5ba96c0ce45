"""Kubernetes-shaped dicts <-> protobuf messages: protos/codec.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from protos import codec
from protos.codec import FieldError, from_dict, to_dict
from protos.corral.v1 import (
    api_pb2,
    event_pb2,
    meta_pb2,
    metrics_pb2,
    node_pb2,
    pod_pb2,
    service_pb2,
    workloads_pb2,
)

WHEN = "2026-11-27T16:29:48Z"


def _ts(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


# --------------------------------------------------------------------------
# to_dict


def test_to_dict_uses_json_names_in_declaration_order() -> None:
    port = pod_pb2.ContainerPort(name="http", container_port=80, host_ip="10.0.0.1")
    assert list(to_dict(port).items()) == [
        ("name", "http"),
        ("containerPort", 80),
        ("hostIP", "10.0.0.1"),
    ]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(workloads_pb2.DeploymentSpec(), {}, id="empty"),
        pytest.param(
            workloads_pb2.DeploymentSpec(replicas=0, min_ready_seconds=0, paused=False),
            {"replicas": 0},
            id="optional-zero-shown-plain-zero-omitted",
        ),
        pytest.param(
            workloads_pb2.DeploymentSpec(strategy=workloads_pb2.DeploymentStrategy()),
            {"strategy": {}},
            id="set-empty-message-shown",
        ),
        pytest.param(
            pod_pb2.Container(name="a", command=[], env=[]),
            {"name": "a"},
            id="empty-repeated-omitted",
        ),
        pytest.param(
            meta_pb2.ObjectMeta(labels={"b": "2", "a": "1"}, annotations={}),
            {"labels": {"a": "1", "b": "2"}},
            id="maps-sorted-empty-omitted",
        ),
        pytest.param(
            meta_pb2.ObjectMeta(generation=2**62),
            {"generation": 2**62},
            id="int64-is-an-int",
        ),
        pytest.param(
            meta_pb2.ObjectMeta(creation_timestamp=_ts(WHEN)),
            {"creationTimestamp": WHEN},
            id="timestamp-rfc3339",
        ),
        pytest.param(
            meta_pb2.ObjectMeta(creation_timestamp=_ts("2026-11-27T16:29:48.250Z")),
            {"creationTimestamp": "2026-11-27T16:29:48.250Z"},
            id="timestamp-fraction",
        ),
        pytest.param(
            workloads_pb2.RollingUpdateDeployment(
                max_surge=meta_pb2.IntOrString(str_val="25%"),
                max_unavailable=meta_pb2.IntOrString(int_val=0),
            ),
            {"maxSurge": "25%", "maxUnavailable": 0},
            id="int-or-string",
        ),
        pytest.param(
            pod_pb2.PodStatus(host_ip="10.0.0.2", pod_ip="10.1.0.3"),
            {"hostIP": "10.0.0.2", "podIP": "10.1.0.3"},
            id="explicit-json-names",
        ),
        pytest.param(
            pod_pb2.ContainerStatus(container_id="docker://abc", image_id="sha256:1"),
            {"imageID": "sha256:1", "containerID": "docker://abc"},
            id="explicit-json-names-id",
        ),
        pytest.param(
            api_pb2.WatchEvent(type=api_pb2.WatchEvent.ADDED),
            {"type": "ADDED"},
            id="enum-by-name",
        ),
    ],
)
def test_to_dict(message: Message, expected: dict[str, Any]) -> None:
    assert to_dict(message) == expected


# --------------------------------------------------------------------------
# from_dict: values that convert


def test_from_dict_builds_nested_messages() -> None:
    data = {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}},
        },
    }
    message, errors = from_dict(data, workloads_pb2.Deployment)
    assert errors == []
    assert message.metadata.labels["app"] == "web"
    assert message.spec.HasField("replicas")
    assert message.spec.replicas == 0
    assert message.spec.strategy.rolling_update.max_surge.str_val == "25%"
    assert message.spec.strategy.rolling_update.max_unavailable.int_val == 1
    assert message.spec.template.spec.containers[0].ports[0].container_port == 80


@pytest.mark.parametrize(
    ("value", "which", "expected"),
    [
        pytest.param(3, "int_val", 3, id="int"),
        pytest.param("25%", "str_val", "25%", id="percent"),
        pytest.param("3", "str_val", "3", id="numeric-string-stays-string"),
        pytest.param("http", "str_val", "http", id="port-name"),
    ],
)
def test_int_or_string(value: object, which: str, expected: object) -> None:
    message, errors = from_dict({"port": value}, pod_pb2.TCPSocketAction)
    assert errors == []
    assert message.port.WhichOneof("value") == which
    assert getattr(message.port, which) == expected


@pytest.mark.parametrize(
    ("value", "seconds", "nanos"),
    [
        pytest.param(WHEN, 1795796988, 0, id="zulu"),
        pytest.param("2026-11-27t16:29:48z", 1795796988, 0, id="lowercase"),
        pytest.param("2026-11-27T17:29:48+01:00", 1795796988, 0, id="offset"),
        pytest.param("2026-11-27T16:29:48.5Z", 1795796988, 500_000_000, id="fraction"),
        pytest.param("2026-11-27T16:29:48.123456789Z", 1795796988, 123456789, id="nanos"),
        pytest.param(datetime(2026, 11, 27, 16, 29, 48, tzinfo=UTC), 1795796988, 0, id="datetime"),
        pytest.param(
            datetime(2026, 11, 27, 18, 29, 48, 1000, tzinfo=timezone(timedelta(hours=2))),
            1795796988,
            1_000_000,
            id="datetime-offset",
        ),
        pytest.param(datetime(2026, 11, 27, 16, 29, 48), 1795796988, 0, id="naive-is-utc"),
    ],
)
def test_timestamp(value: object, seconds: int, nanos: int) -> None:
    message, errors = from_dict({"creationTimestamp": value}, meta_pb2.ObjectMeta)
    assert errors == []
    assert (message.creation_timestamp.seconds, message.creation_timestamp.nanos) == (
        seconds,
        nanos,
    )


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        pytest.param(1, "1", id="int"),
        pytest.param(0.5, "0.5", id="float"),
        pytest.param("250m", "250m", id="string"),
        pytest.param("1Gi", "1Gi", id="binary-suffix"),
        pytest.param(1e20, "1e+20", id="big-float"),
    ],
)
def test_quantity_maps_store_text(value: object, stored: str) -> None:
    data = {"requests": {"cpu": value}, "limits": {"memory": value}}
    message, errors = from_dict(data, pod_pb2.ResourceRequirements)
    assert errors == []
    assert message.requests["cpu"] == stored
    assert message.limits["memory"] == stored


def test_node_status_quantities() -> None:
    data = {"capacity": {"cpu": 4, "pods": 110}, "allocatable": {"memory": "7Gi"}}
    message, errors = from_dict(data, node_pb2.NodeStatus)
    assert errors == []
    assert dict(message.capacity) == {"cpu": "4", "pods": "110"}
    assert dict(message.allocatable) == {"memory": "7Gi"}


@pytest.mark.parametrize(
    ("value", "stored", "error"),
    [
        pytest.param(10, "10", "", id="int"),
        pytest.param("250m", "250m", "", id="string"),
        pytest.param("ten", "", 'invalid quantity "ten"', id="not-a-quantity"),
        pytest.param(True, "", "expected a quantity (a string or a number), got boolean true", id="bool"),
    ],
)
def test_quantity_fields_take_numbers_and_strings(value: object, stored: str, error: str) -> None:
    message, errors = from_dict({"type": "AverageValue", "averageValue": value}, metrics_pb2.MetricTarget)
    assert message.average_value == stored
    assert [e.message for e in errors] == ([error] if error else [])


def test_quantity_fields_name_real_fields() -> None:
    for full_name in codec.QUANTITY_FIELDS:
        assert descriptor_pool.Default().FindFieldByName(full_name).full_name == full_name


def test_quantity_table_names_real_fields() -> None:
    pool = descriptor_pool.Default()
    for full_name in codec.QUANTITY_MAP_FIELDS:
        field = pool.FindFieldByName(full_name)
        assert field.message_type is not None and field.message_type.GetOptions().map_entry, full_name


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"name": None}, id="scalar"),
        pytest.param({"labels": None}, id="map"),
        pytest.param({"ownerReferences": None}, id="list"),
        pytest.param({"creationTimestamp": None}, id="timestamp"),
        pytest.param({"labels": {"a": None}}, id="map-value"),
        pytest.param({"ownerReferences": [None]}, id="list-item"),
    ],
)
def test_null_means_not_set(data: dict[str, Any]) -> None:
    message, errors = from_dict(data, meta_pb2.ObjectMeta)
    assert errors == []
    assert message == meta_pb2.ObjectMeta()


def test_enum_by_name() -> None:
    message, errors = from_dict({"type": "DELETED"}, api_pb2.WatchEvent)
    assert errors == []
    assert message.type == api_pb2.WatchEvent.DELETED


# --------------------------------------------------------------------------
# from_dict: every kind of error, with its exact path and message


def _one_error(data: Any, cls: type[Message], path: str = "") -> FieldError:
    _, errors = from_dict(data, cls, path=path)
    assert len(errors) == 1, errors
    return errors[0]


DEPLOY = workloads_pb2.Deployment
CONTAINERS = "spec.template.spec.containers"


def _container(**fields: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "c", **fields}]}}}}


@pytest.mark.parametrize(
    ("data", "cls", "path", "message"),
    [
        pytest.param([], DEPLOY, "", "expected an object, got list", id="root-list"),
        pytest.param("x", DEPLOY, "", 'expected an object, got string "x"', id="root-string"),
        pytest.param({"spec": 3}, DEPLOY, "spec", "expected an object, got integer 3", id="nested-int"),
        pytest.param(
            {"spec": {"template": []}},
            DEPLOY,
            "spec.template",
            "expected an object, got list",
            id="nested-list",
        ),
        pytest.param({"foo": 1}, DEPLOY, "foo", 'unknown field "foo"', id="unknown-no-hint"),
        pytest.param(
            {"spec": {"replica": 3}},
            DEPLOY,
            "spec.replica",
            'unknown field "replica" (did you mean "replicas"?)',
            id="unknown-typo",
        ),
        pytest.param(
            {"spec": {"min_ready_seconds": 3}},
            DEPLOY,
            "spec.min_ready_seconds",
            'unknown field "min_ready_seconds" (did you mean "minReadySeconds"?)',
            id="snake-case-refused",
        ),
        pytest.param(
            {"spec": {"minreadyseconds": 3}},
            DEPLOY,
            "spec.minreadyseconds",
            'unknown field "minreadyseconds" (did you mean "minReadySeconds"?)',
            id="wrong-case",
        ),
        pytest.param(
            {"spec": {"replicas": "three"}},
            DEPLOY,
            "spec.replicas",
            'expected an integer, got string "three"',
            id="string-for-int",
        ),
        pytest.param(
            {"spec": {"replicas": True}},
            DEPLOY,
            "spec.replicas",
            "expected an integer, got boolean true",
            id="bool-is-not-int",
        ),
        pytest.param(
            {"spec": {"replicas": 2.5}},
            DEPLOY,
            "spec.replicas",
            "expected an integer, got number 2.5",
            id="float-for-int",
        ),
        pytest.param(
            _container(ports=[{"containerPort": 99999999999}]),
            DEPLOY,
            f"{CONTAINERS}[0].ports[0].containerPort",
            "must fit in 32 bits, got 99999999999",
            id="int32-range",
        ),
        pytest.param(
            {"spec": {"replicas": -(2**31) - 1}},
            DEPLOY,
            "spec.replicas",
            "must fit in 32 bits, got -2147483649",
            id="int32-range-negative",
        ),
        pytest.param(
            {"metadata": {"generation": 2**63}},
            DEPLOY,
            "metadata.generation",
            "must fit in 64 bits, got 9223372036854775808",
            id="int64-range",
        ),
        pytest.param(
            {"metadata": {"name": 7}},
            DEPLOY,
            "metadata.name",
            "expected a string, got integer 7",
            id="int-for-string",
        ),
        pytest.param(
            _container(image=2.4),
            DEPLOY,
            f"{CONTAINERS}[0].image",
            "expected a string, got number 2.4",
            id="float-for-string",
        ),
        pytest.param(
            {"spec": {"paused": "true"}},
            DEPLOY,
            "spec.paused",
            'expected a boolean, got string "true"',
            id="string-for-bool",
        ),
        pytest.param(
            {"spec": {"paused": 1}},
            DEPLOY,
            "spec.paused",
            "expected a boolean, got integer 1",
            id="int-for-bool",
        ),
        pytest.param(
            _container(command="sleep 1"),
            DEPLOY,
            f"{CONTAINERS}[0].command",
            'expected a list, got string "sleep 1"',
            id="string-for-list",
        ),
        pytest.param(
            _container(ports={"containerPort": 80}),
            DEPLOY,
            f"{CONTAINERS}[0].ports",
            "expected a list, got object",
            id="object-for-list",
        ),
        pytest.param(
            _container(args=["--port", 80]),
            DEPLOY,
            f"{CONTAINERS}[0].args[1]",
            "expected a string, got integer 80",
            id="list-item-type",
        ),
        pytest.param(
            _container(ports=["80"]),
            DEPLOY,
            f"{CONTAINERS}[0].ports[0]",
            'expected an object, got string "80"',
            id="list-item-not-object",
        ),
        pytest.param(
            {"metadata": {"labels": {"version": 1}}},
            DEPLOY,
            "metadata.labels.version",
            "expected a string, got integer 1",
            id="label-value-int",
        ),
        pytest.param(
            {"metadata": {"labels": ["app=web"]}},
            DEPLOY,
            "metadata.labels",
            "expected an object, got list",
            id="labels-list",
        ),
        pytest.param(
            {"metadata": {"labels": {1: "x"}}},
            DEPLOY,
            "metadata.labels.1",
            "expected key a string, got integer 1",
            id="map-key-not-string",
        ),
        pytest.param(
            {"spec": {"strategy": {"rollingUpdate": {"maxSurge": True}}}},
            DEPLOY,
            "spec.strategy.rollingUpdate.maxSurge",
            "expected an integer or a string, got boolean true",
            id="int-or-string-bool",
        ),
        pytest.param(
            {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0.5}}}},
            DEPLOY,
            "spec.strategy.rollingUpdate.maxSurge",
            "expected an integer or a string, got number 0.5",
            id="int-or-string-float",
        ),
        pytest.param(
            {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2**40}}}},
            DEPLOY,
            "spec.strategy.rollingUpdate.maxSurge",
            "must fit in 32 bits, got 1099511627776",
            id="int-or-string-range",
        ),
        pytest.param(
            {"metadata": {"creationTimestamp": "yesterday"}},
            DEPLOY,
            "metadata.creationTimestamp",
            'expected an RFC 3339 timestamp such as "2026-11-27T16:29:48Z", got string "yesterday"',
            id="timestamp-garbage",
        ),
        pytest.param(
            {"metadata": {"creationTimestamp": "2026-11-27 16:29:48"}},
            DEPLOY,
            "metadata.creationTimestamp",
            'expected an RFC 3339 timestamp such as "2026-11-27T16:29:48Z", got string "2026-11-27 16:29:48"',
            id="timestamp-no-zone",
        ),
        pytest.param(
            {"metadata": {"creationTimestamp": "2026-13-01T00:00:00Z"}},
            DEPLOY,
            "metadata.creationTimestamp",
            'expected an RFC 3339 timestamp such as "2026-11-27T16:29:48Z", got string "2026-13-01T00:00:00Z"',
            id="timestamp-bad-month",
        ),
        pytest.param(
            {"metadata": {"creationTimestamp": date(2026, 11, 27)}},
            DEPLOY,
            "metadata.creationTimestamp",
            'expected an RFC 3339 timestamp such as "2026-11-27T16:29:48Z", got date 2026-11-27',
            id="timestamp-date",
        ),
        pytest.param(
            {"metadata": {"creationTimestamp": 1795796988}},
            DEPLOY,
            "metadata.creationTimestamp",
            'expected an RFC 3339 timestamp such as "2026-11-27T16:29:48Z", got integer 1795796988',
            id="timestamp-epoch-int",
        ),
        pytest.param(
            {"metadata": {"creationTimestamp": "0001-01-01T00:00:00+01:00"}},
            DEPLOY,
            "metadata.creationTimestamp",
            "timestamp out of range (years 1 to 9999)",
            id="timestamp-range",
        ),
        pytest.param(
            _container(resources={"limits": {"cpu": "12x"}}),
            DEPLOY,
            f"{CONTAINERS}[0].resources.limits.cpu",
            'invalid quantity "12x"',
            id="quantity-syntax",
        ),
        pytest.param(
            _container(resources={"requests": {"memory": -1}}),
            DEPLOY,
            f"{CONTAINERS}[0].resources.requests.memory",
            'invalid quantity "-1": must not be negative',
            id="quantity-negative",
        ),
        pytest.param(
            _container(resources={"requests": {"cpu": True}}),
            DEPLOY,
            f"{CONTAINERS}[0].resources.requests.cpu",
            "expected a quantity (a string or a number), got boolean true",
            id="quantity-bool",
        ),
        pytest.param(
            _container(resources={"requests": {"cpu": float("nan")}}),
            DEPLOY,
            f"{CONTAINERS}[0].resources.requests.cpu",
            'invalid quantity "nan"',
            id="quantity-nan",
        ),
        pytest.param(
            {"pod": {}, "node": {}},
            api_pb2.Object,
            "node",
            'cannot be set together with "pod"',
            id="oneof-two-members",
        ),
        pytest.param(
            {"type": "EXPLODED"},
            api_pb2.WatchEvent,
            "type",
            'expected one of TYPE_UNSPECIFIED, ADDED, MODIFIED, DELETED, got string "EXPLODED"',
            id="enum-unknown",
        ),
    ],
)
def test_from_dict_error(data: Any, cls: type[Message], path: str, message: str) -> None:
    error = _one_error(data, cls)
    assert (error.path, error.message) == (path, message)


@pytest.mark.parametrize(
    ("data", "prefix", "path"),
    [
        pytest.param({"replicas": "3"}, "items[2].spec", "items[2].spec.replicas", id="field"),
        pytest.param([], "items[2].spec", "items[2].spec", id="root"),
        pytest.param({"x": 1}, "spec", "spec.x", id="unknown"),
    ],
)
def test_path_prefix(data: Any, prefix: str, path: str) -> None:
    assert _one_error(data, workloads_pb2.DeploymentSpec, prefix).path == path


def test_from_dict_collects_every_error() -> None:
    data = {
        "kind": 1,
        "metadata": {"labels": {"a": 1, "b": 2}, "nme": "x"},
        "spec": {"replicas": "3", "template": {"spec": {"containers": [{"ports": [{}, {"containerPort": "80"}]}]}}},
    }
    _, errors = from_dict(data, DEPLOY)
    assert [str(e) for e in errors] == [
        "kind: expected a string, got integer 1",
        "metadata.labels.a: expected a string, got integer 1",
        "metadata.labels.b: expected a string, got integer 2",
        'metadata.nme: unknown field "nme" (did you mean "name"?)',
        'spec.replicas: expected an integer, got string "3"',
        'spec.template.spec.containers[0].ports[1].containerPort: expected an integer, got string "80"',
    ]


def test_field_error_str() -> None:
    assert str(FieldError("spec.replicas", "bad")) == "spec.replicas: bad"
    assert str(FieldError("", "expected an object, got list")) == "expected an object, got list"


def test_list_indexes_are_the_users_even_with_null_items() -> None:
    data = _container(args=[None, 1])
    _, errors = from_dict(data, DEPLOY)
    assert errors == [FieldError(f"{CONTAINERS}[0].args[1]", "expected a string, got integer 1")]


# --------------------------------------------------------------------------
# round trips


def _full_deployment() -> workloads_pb2.Deployment:
    container = pod_pb2.Container(
        name="web",
        image="httpd:2.4.39",
        image_pull_policy="IfNotPresent",
        command=["httpd-foreground"],
        args=["-X"],
        env=[pod_pb2.EnvVar(name="A", value="1")],
        ports=[pod_pb2.ContainerPort(name="http", container_port=80, host_ip="0.0.0.0")],
        resources=pod_pb2.ResourceRequirements(requests={"cpu": "250m"}, limits={"memory": "1Gi"}),
        readiness_probe=pod_pb2.Probe(
            http_get=pod_pb2.HTTPGetAction(path="/", port=meta_pb2.IntOrString(str_val="http")),
            period_seconds=5,
            termination_grace_period_seconds=0,
        ),
        liveness_probe=pod_pb2.Probe(tcp_socket=pod_pb2.TCPSocketAction(port=meta_pb2.IntOrString(int_val=80))),
    )
    spec = pod_pb2.PodSpec(
        containers=[container],
        tolerations=[pod_pb2.Toleration(key="k", operator="Exists", toleration_seconds=0)],
        node_selector={"disk": "ssd"},
        termination_grace_period_seconds=30,
        affinity=pod_pb2.Affinity(
            node_affinity=pod_pb2.NodeAffinity(
                required_during_scheduling_ignored_during_execution=pod_pb2.NodeSelector(
                    node_selector_terms=[
                        pod_pb2.NodeSelectorTerm(
                            match_expressions=[pod_pb2.NodeSelectorRequirement(key="zone", operator="In", values=["a"])]
                        )
                    ]
                )
            )
        ),
    )
    return workloads_pb2.Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=meta_pb2.ObjectMeta(
            name="web",
            namespace="default",
            uid="u-1",
            labels={"app": "web"},
            annotations={"note": "x"},
            resource_version="42",
            generation=3,
            creation_timestamp=_ts(WHEN),
            owner_references=[meta_pb2.OwnerReference(kind="X", name="y", controller=True)],
        ),
        spec=workloads_pb2.DeploymentSpec(
            replicas=0,
            selector=meta_pb2.LabelSelector(
                match_labels={"app": "web"},
                match_expressions=[meta_pb2.LabelSelectorRequirement(key="t", operator="Exists")],
            ),
            template=pod_pb2.PodTemplateSpec(metadata=meta_pb2.ObjectMeta(labels={"app": "web"}), spec=spec),
            strategy=workloads_pb2.DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=workloads_pb2.RollingUpdateDeployment(
                    max_surge=meta_pb2.IntOrString(str_val="25%"),
                    max_unavailable=meta_pb2.IntOrString(int_val=0),
                ),
            ),
            revision_history_limit=0,
            paused=True,
        ),
        status=workloads_pb2.DeploymentStatus(
            observed_generation=3,
            replicas=1,
            conditions=[
                meta_pb2.Condition(
                    type="Available",
                    status="True",
                    last_transition_time=_ts("2026-11-27T16:29:48.123Z"),
                    observed_generation=2**40,
                )
            ],
        ),
    )


def _pod() -> pod_pb2.Pod:
    terminated = pod_pb2.ContainerStateTerminated(
        exit_code=137, signal=9, container_id="docker://abc", finished_at=_ts(WHEN)
    )
    return pod_pb2.Pod(
        api_version="v1",
        kind="Pod",
        metadata=meta_pb2.ObjectMeta(name="p"),
        spec=pod_pb2.PodSpec(containers=[pod_pb2.Container(name="c", image="busybox")], node_name="n1"),
        status=pod_pb2.PodStatus(
            phase="Running",
            host_ip="10.0.0.1",
            pod_ip="10.1.0.2",
            start_time=_ts(WHEN),
            container_statuses=[
                pod_pb2.ContainerStatus(
                    name="c",
                    ready=True,
                    restart_count=2,
                    image_id="sha256:1",
                    state=pod_pb2.ContainerState(running=pod_pb2.ContainerStateRunning(started_at=_ts(WHEN))),
                    last_state=pod_pb2.ContainerState(terminated=terminated),
                )
            ],
        ),
    )


def _node() -> node_pb2.Node:
    return node_pb2.Node(
        api_version="v1",
        kind="Node",
        metadata=meta_pb2.ObjectMeta(name="n1"),
        spec=node_pb2.NodeSpec(
            unschedulable=True,
            taints=[node_pb2.Taint(key="k", effect="NoSchedule", time_added=_ts(WHEN))],
        ),
        status=node_pb2.NodeStatus(
            capacity={"cpu": "4", "memory": "8Gi"},
            allocatable={"cpu": "3800m"},
            addresses=[node_pb2.NodeAddress(type="InternalIP", address="10.0.0.1")],
            node_info=node_pb2.NodeSystemInfo(machine_id="m", architecture="arm64"),
            runtimes=["docker", "process"],
        ),
    )


def _service() -> service_pb2.Service:
    return service_pb2.Service(
        api_version="v1",
        kind="Service",
        metadata=meta_pb2.ObjectMeta(name="s"),
        spec=service_pb2.ServiceSpec(
            selector={"app": "web"},
            type="NodePort",
            ports=[
                service_pb2.ServicePort(
                    name="http", port=80, target_port=meta_pb2.IntOrString(str_val="8080"), node_port=30080
                )
            ],
        ),
    )


def _event() -> event_pb2.Event:
    return event_pb2.Event(
        api_version="v1",
        kind="Event",
        metadata=meta_pb2.ObjectMeta(name="e"),
        involved_object=meta_pb2.ObjectReference(kind="Pod", name="p", field_path="spec"),
        reason="Scheduled",
        source=event_pb2.EventSource(component="scheduler"),
        first_timestamp=_ts(WHEN),
        count=1,
        type="Normal",
    )


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(_full_deployment(), id="deployment"),
        pytest.param(_pod(), id="pod"),
        pytest.param(_node(), id="node"),
        pytest.param(_service(), id="service"),
        pytest.param(_event(), id="event"),
        pytest.param(
            workloads_pb2.ReplicaSet(spec=workloads_pb2.ReplicaSetSpec(replicas=0, min_ready_seconds=5)),
            id="replicaset",
        ),
        pytest.param(api_pb2.Object(service=_service()), id="object-envelope"),
        pytest.param(api_pb2.WatchEvent(type=api_pb2.WatchEvent.MODIFIED), id="enum"),
    ],
)
def test_round_trip(message: Message) -> None:
    back, errors = from_dict(to_dict(message), type(message))
    assert errors == []
    assert back == message


# --------------------------------------------------------------------------
# property: generated Deployment dicts survive dict -> message -> dict -> message

_names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
_labels = st.dictionaries(_names, _names, max_size=3)
_int32 = st.integers(-(2**31), 2**31 - 1)
_int_or_string = st.one_of(st.integers(0, 2**31 - 1), st.from_regex(r"[0-9]{1,2}%", fullmatch=True), _names)
_quantity = st.one_of(
    st.integers(0, 10**9),
    st.floats(0, 1e9, allow_nan=False, allow_infinity=False),
    st.sampled_from(["250m", "0.5", "128Mi", "1G", "1e3", "100n"]),
)
_timestamps = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")
)
_probe = st.fixed_dictionaries(
    {},
    optional={
        "httpGet": st.fixed_dictionaries({"port": _int_or_string}, optional={"path": st.just("/healthz")}),
        "periodSeconds": _int32,
        "terminationGracePeriodSeconds": st.integers(-(2**63), 2**63 - 1),
    },
)
_port = st.fixed_dictionaries(
    {"containerPort": st.integers(1, 65535)},
    optional={"name": _names, "protocol": st.sampled_from(["TCP", "UDP"]), "hostIP": st.just("0.0.0.0")},
)
_resources = st.dictionaries(st.sampled_from(["cpu", "memory"]), _quantity, max_size=2)
_containers = st.fixed_dictionaries(
    {"name": _names, "image": _names},
    optional={
        "ports": st.lists(_port, max_size=3),
        "args": st.lists(st.text(max_size=8), max_size=3),
        "env": st.lists(st.fixed_dictionaries({"name": _names}, optional={"value": st.text(max_size=8)}), max_size=2),
        "resources": st.fixed_dictionaries({}, optional={"requests": _resources, "limits": _resources}),
        "readinessProbe": _probe,
    },
)
_deployments = st.fixed_dictionaries(
    {
        "apiVersion": st.just("apps/v1"),
        "kind": st.just("Deployment"),
        "metadata": st.fixed_dictionaries(
            {"name": _names},
            optional={"labels": _labels, "generation": st.integers(0, 2**63 - 1), "creationTimestamp": _timestamps},
        ),
        "spec": st.fixed_dictionaries(
            {
                "template": st.fixed_dictionaries(
                    {"spec": st.fixed_dictionaries({"containers": st.lists(_containers, min_size=1, max_size=2)})},
                    optional={"metadata": st.fixed_dictionaries({"labels": _labels})},
                )
            },
            optional={
                "replicas": st.integers(0, 2**31 - 1),
                "selector": st.fixed_dictionaries({"matchLabels": _labels}),
                "paused": st.booleans(),
                "minReadySeconds": _int32,
                "strategy": st.fixed_dictionaries(
                    {"type": st.sampled_from(["RollingUpdate", "Recreate"])},
                    optional={
                        "rollingUpdate": st.fixed_dictionaries(
                            {}, optional={"maxSurge": _int_or_string, "maxUnavailable": _int_or_string}
                        )
                    },
                ),
            },
        ),
    }
)


@settings(max_examples=150, deadline=None)
@given(_deployments)
def test_round_trip_property(data: dict[str, Any]) -> None:
    message, errors = from_dict(data, DEPLOY)
    assert errors == []
    rendered = to_dict(message)
    again, errors = from_dict(rendered, DEPLOY)
    assert errors == []
    assert again == message
    assert to_dict(again) == rendered
    assert (
        rendered["spec"]["template"]["spec"]["containers"][0]["name"]
        == (data["spec"]["template"]["spec"]["containers"][0]["name"])
    )
