"""`corral autoscale`, and `corral get hpa` / `describe hpa` output."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from google.protobuf.message import Message

from controlplane.apiserver.defaults import apply_defaults
from corral import client as api
from corral.cli import describe, printers
from corral.cli.autoscale import autoscale_cmd
from corral.cli.context import Context
from protos.corral.v1 import metrics_pb2, workloads_pb2
from protos.kinds import by_kind, info_of
from tests.unit.controllers.hpa_builders import NOW, cpu_metric, hpa, rps_metric, value_metric

HPA = by_kind("HorizontalPodAutoscaler")


class FakeClient:
    def __init__(self, *, exists: bool = True, taken: bool = False) -> None:
        self.exists, self.taken = exists, taken
        self.created: list[Message] = []

    def get(self, kind: str, name: str, namespace: str = "") -> Message:
        if not self.exists:
            raise api.NotFoundError(f'deployments.apps "{name}" not found')
        d = workloads_pb2.Deployment()
        d.metadata.name, d.metadata.namespace = name, namespace
        return d

    def create(self, obj: Message, *, dry_run: bool = False) -> Message:
        if self.taken:
            raise api.AlreadyExistsError('horizontalpodautoscalers.autoscaling "web" already exists')
        apply_defaults(info_of(obj), obj)
        self.created.append(obj)
        return obj

    def close(self) -> None:
        pass


def autoscale(client: FakeClient, *args: str) -> Any:
    context = Context(server_flag=None)
    context._client = client  # type: ignore[assignment]
    return CliRunner().invoke(autoscale_cmd, list(args), obj=context)


def test_autoscale_creates_an_hpa_like_kubectl() -> None:
    client = FakeClient()
    result = autoscale(client, "deploy/web", "--min", "2", "--max", "10", "--cpu-percent", "50")
    assert result.exit_code == 0, result.output
    assert result.output == "horizontalpodautoscaler.autoscaling/web autoscaled\n"
    created = client.created[0]
    assert isinstance(created, metrics_pb2.HorizontalPodAutoscaler)
    ref = created.spec.scale_target_ref
    assert (ref.api_version, ref.kind, ref.name) == ("apps/v1", "Deployment", "web")
    assert (created.spec.min_replicas, created.spec.max_replicas) == (2, 10)
    assert created.spec.metrics[0].resource.target.average_utilization == 50


def test_autoscale_leaves_defaults_to_the_server() -> None:
    client = FakeClient()
    result = autoscale(client, "replicaset", "web-abc", "--max", "4", "--name", "rs-scaler", "-n", "prod")
    assert result.exit_code == 0, result.output
    assert result.output == "horizontalpodautoscaler.autoscaling/rs-scaler autoscaled\n"
    created = client.created[0]
    assert isinstance(created, metrics_pb2.HorizontalPodAutoscaler)
    assert (created.metadata.namespace, created.spec.scale_target_ref.kind) == ("prod", "ReplicaSet")
    assert created.spec.min_replicas == 1
    assert created.spec.metrics[0].resource.target.average_utilization == 80


@pytest.mark.parametrize(
    ("client", "args", "message"),
    [
        pytest.param(
            FakeClient(exists=False),
            ["deploy/web", "--max", "3"],
            'Error from server (NotFound): deployments.apps "web" not found',
            id="no-target",
        ),
        pytest.param(
            FakeClient(taken=True),
            ["deploy/web", "--max", "3"],
            'Error from server (AlreadyExists): horizontalpodautoscalers.autoscaling "web" already exists',
            id="taken",
        ),
        pytest.param(
            FakeClient(),
            ["svc/web", "--max", "3"],
            "error: autoscale works on deployments and replicasets, not on services",
            id="kind",
        ),
    ],
)
def test_autoscale_errors(client: FakeClient, args: list[str], message: str) -> None:
    result = autoscale(client, *args)
    assert result.exit_code == 1
    assert message in result.output


def test_autoscale_needs_max() -> None:
    result = autoscale(FakeClient(), "deploy/web")
    assert result.exit_code == 2 and "--max" in result.output


def with_status(
    h: metrics_pb2.HorizontalPodAutoscaler, *current: metrics_pb2.MetricStatus, replicas: int = 3
) -> metrics_pb2.HorizontalPodAutoscaler:
    h.metadata.creation_timestamp.FromDatetime(NOW - timedelta(minutes=5))
    h.status.current_metrics.extend(current)
    h.status.current_replicas = h.status.desired_replicas = replicas
    return h


def cpu_status(percent: int, value: str) -> metrics_pb2.MetricStatus:
    return metrics_pb2.MetricStatus(
        type="Resource",
        resource=metrics_pb2.ResourceMetricStatus(
            name="cpu", current=metrics_pb2.MetricValueStatus(average_utilization=percent, average_value=value)
        ),
    )


def rps_status(value: str) -> metrics_pb2.MetricStatus:
    return metrics_pb2.MetricStatus(
        type="Pods",
        pods=metrics_pb2.PodsMetricStatus(
            metric=metrics_pb2.MetricIdentifier(name="requests_per_second"),
            current=metrics_pb2.MetricValueStatus(average_value=value),
        ),
    )


@pytest.mark.parametrize(
    ("h", "targets"),
    [
        pytest.param(with_status(hpa(), cpu_status(35, "35m")), "cpu: 35%/50%", id="cpu"),
        pytest.param(with_status(hpa()), "cpu: <unknown>/50%", id="no-metrics-yet"),
        pytest.param(
            with_status(hpa(metrics=[rps_metric("10")]), rps_status("12")), "requests_per_second: 12/10", id="rps"
        ),
        pytest.param(
            with_status(
                hpa(metrics=[cpu_metric(50), rps_metric("10")]),
                metrics_pb2.MetricStatus(type="Resource"),
                rps_status("12500m"),
            ),
            "cpu: <unknown>/50%, requests_per_second: 12500m/10",
            id="one-unknown",
        ),
        pytest.param(
            with_status(hpa(metrics=[cpu_metric(50), rps_metric("10"), value_metric("memory", "1Gi")])),
            "cpu: <unknown>/50%, requests_per_second: <unknown>/10 + 1 more...",
            id="more",
        ),
    ],
)
def test_get_hpa_targets(h: metrics_pb2.HorizontalPodAutoscaler, targets: str) -> None:
    assert printers.hpa_targets(h) == targets


def test_get_hpa_table() -> None:
    h = with_status(hpa(low=2, high=10), cpu_status(35, "35m"))
    headers = printers.table_headers(HPA, wide=False, all_namespaces=False)
    row = printers.table_row(HPA, h, NOW, wide=False, all_namespaces=False)
    assert printers.format_table([row], headers).splitlines() == [
        "NAME   REFERENCE        TARGETS        MINPODS   MAXPODS   REPLICAS   AGE",
        "web    Deployment/web   cpu: 35%/50%   2         10        3          5m",
    ]


def test_describe_hpa() -> None:
    h = with_status(hpa(metrics=[cpu_metric(50), rps_metric("10")]), cpu_status(35, "35m"), rps_status("12"))
    active = h.status.conditions.add(
        type="ScalingActive",
        status="True",
        reason="ValidMetricFound",
        message="the HPA was able to successfully calculate a replica count",
    )
    active.last_transition_time.FromDatetime(NOW)
    h.status.last_scale_time.FromDatetime(NOW - timedelta(seconds=90))
    text = describe.describe(h, [], NOW)
    lines = text.splitlines()
    assert "Reference:                                             Deployment/web" in lines
    assert "Metrics:                                               ( current / target )" in lines
    assert "  resource cpu on pods  (as a percentage of request):  35% (35m) / 50%" in lines
    assert '  "requests_per_second" on pods:                       12 / 10' in lines
    assert "Min replicas:                                          1" in lines
    assert "Deployment pods:                                       3 current / 3 desired" in lines
    assert "Last scale:                                            90s ago" in lines
    assert "    Stabilization Window: 300 seconds" in lines
    assert "      - Type: Pods     Value: 4    Period: 15 seconds" in lines
    assert lines[lines.index("Conditions:") + 1].split() == ["Type", "Status", "Reason", "Message"]
    assert (
        "  ScalingActive   True     ValidMetricFound   the HPA was able to successfully calculate a replica "
        "count" in lines
    )
    assert lines[-1] == "Events:  <none>"
