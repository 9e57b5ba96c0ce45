"""Probe targets: agent/probes/target.py."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from agent.probes.target import (
    ExecTarget,
    GrpcTarget,
    HttpTarget,
    InvalidTarget,
    ProbeTarget,
    TcpTarget,
    resolve_probe_target,
)
from protos.corral.v1 import meta_pb2, pod_pb2

CONTAINER = pod_pb2.Container(
    name="web",
    image="busybox:1.36",
    ports=[
        pod_pb2.ContainerPort(name="http", container_port=8080),
        pod_pb2.ContainerPort(name="admin", container_port=9090),
    ],
)
DOCKER_PORTS = {8080: 32768, 9090: 32769}


def port(value: int | str) -> meta_pb2.IntOrString:
    if isinstance(value, int):
        return meta_pb2.IntOrString(int_val=value)
    return meta_pb2.IntOrString(str_val=value)


def http(value: int | str, **fields: object) -> pod_pb2.Probe:
    return pod_pb2.Probe(http_get=pod_pb2.HTTPGetAction(port=port(value), **fields))  # type: ignore[arg-type]


def tcp(value: int | str, host: str = "") -> pod_pb2.Probe:
    return pod_pb2.Probe(tcp_socket=pod_pb2.TCPSocketAction(port=port(value), host=host))


@pytest.mark.parametrize(
    ("probe", "port_map", "target"),
    [
        pytest.param(
            http(8080, path="/healthz"),
            {},
            HttpTarget(host="127.0.0.1", port=8080, path="/healthz"),
            id="http-number-unmapped",
        ),
        pytest.param(
            http(8080, path="/healthz"),
            DOCKER_PORTS,
            HttpTarget(host="127.0.0.1", port=32768, path="/healthz"),
            id="http-number-docker-published",
        ),
        pytest.param(
            http("admin"),
            DOCKER_PORTS,
            HttpTarget(host="127.0.0.1", port=32769, path="/"),
            id="http-named-port-mapped",
        ),
        pytest.param(
            http("8080"),
            {},
            HttpTarget(host="127.0.0.1", port=8080),
            id="http-number-written-as-string",
        ),
        pytest.param(
            http(8080, host="10.1.2.3"),
            DOCKER_PORTS,
            HttpTarget(host="10.1.2.3", port=8080),
            id="http-own-host-not-mapped",
        ),
        pytest.param(
            http(
                "http",
                scheme="https",
                http_headers=[pod_pb2.HTTPHeader(name="X-Probe", value="1")],
            ),
            {},
            HttpTarget(host="127.0.0.1", port=8080, scheme="HTTPS", headers=(("X-Probe", "1"),)),
            id="http-scheme-and-headers",
        ),
        pytest.param(
            tcp("http"),
            DOCKER_PORTS,
            TcpTarget(host="127.0.0.1", port=32768),
            id="tcp-named-port-mapped",
        ),
        pytest.param(
            tcp(5432),
            DOCKER_PORTS,
            TcpTarget(host="127.0.0.1", port=5432),
            id="tcp-undeclared-port-maps-to-itself",
        ),
        pytest.param(
            tcp(5432, host="db.local"),
            {5432: 40000},
            TcpTarget(host="db.local", port=5432),
            id="tcp-own-host",
        ),
        pytest.param(
            pod_pb2.Probe(grpc=pod_pb2.GRPCAction(port=9090, service="ready")),
            DOCKER_PORTS,
            GrpcTarget(host="127.0.0.1", port=32769, service="ready"),
            id="grpc-mapped-with-service",
        ),
        pytest.param(
            pod_pb2.Probe(grpc=pod_pb2.GRPCAction(port=2379)),
            {},
            GrpcTarget(host="127.0.0.1", port=2379),
            id="grpc-unmapped-no-service",
        ),
        pytest.param(
            pod_pb2.Probe(grpc=pod_pb2.GRPCAction()),
            {},
            InvalidTarget("invalid port number: 0"),
            id="grpc-port-unset",
        ),
        pytest.param(
            pod_pb2.Probe(exec=pod_pb2.ExecAction(command=["cat", "/tmp/healthy"])),
            DOCKER_PORTS,
            ExecTarget(command=("cat", "/tmp/healthy")),
            id="exec",
        ),
        pytest.param(
            http("web"),
            DOCKER_PORTS,
            InvalidTarget('port "web" not found in container'),
            id="http-missing-named-port",
        ),
        pytest.param(
            tcp("web"),
            {},
            InvalidTarget('port "web" not found in container'),
            id="tcp-missing-named-port",
        ),
        pytest.param(http(0), {}, InvalidTarget("invalid port number: 0"), id="port-zero"),
        pytest.param(http(70000), {}, InvalidTarget("invalid port number: 70000"), id="port-too-big"),
        pytest.param(
            pod_pb2.Probe(http_get=pod_pb2.HTTPGetAction()),
            {},
            InvalidTarget("probe port is not set"),
            id="port-unset",
        ),
        pytest.param(
            http(8080, scheme="ftp"),
            {},
            InvalidTarget("unsupported HTTP probe scheme 'ftp'"),
            id="bad-scheme",
        ),
        pytest.param(
            pod_pb2.Probe(exec=pod_pb2.ExecAction()),
            {},
            InvalidTarget("exec probe has no command"),
            id="exec-without-command",
        ),
        pytest.param(
            pod_pb2.Probe(period_seconds=5),
            {},
            InvalidTarget("probe has no action: set exec, httpGet, tcpSocket or grpc"),
            id="no-action",
        ),
    ],
)
def test_resolve_probe_target(probe: pod_pb2.Probe, port_map: Mapping[int, int], target: ProbeTarget) -> None:
    assert resolve_probe_target(probe, CONTAINER, host="127.0.0.1", port_map=port_map) == target
