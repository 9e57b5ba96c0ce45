"""Requests that are not what a method takes — bytes that do not parse as its
message, out-of-range resource versions, integers that overflow — are
refused with INVALID_ARGUMENT and a message on every gRPC port, and leave no
traceback in the server's log."""

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor

from controlplane.server import RunningServer, ServerConfig, start
from corral import client as api
from protos.corral.v1 import (
    api_pb2,
    discovery_pb2,
    meta_pb2,
    metrics_pb2,
    node_service_pb2,
    pod_pb2,
    security_pb2,
    status_pb2,
)
from tests.pki import admin_of, aio_channel, node_of

pytestmark = pytest.mark.etcd

# Field 31 with wire type 7, which does not exist: no message parses this.
JUNK = b"\xff\xff\xff\xff\x0f"

SERVICES = {
    api_pb2.DESCRIPTOR.services_by_name["ObjectService"]: "admin",
    discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"]: "admin",
    metrics_pb2.DESCRIPTOR.services_by_name["MetricsService"]: "admin",
    security_pb2.DESCRIPTOR.services_by_name["SecurityService"]: "admin",
    node_service_pb2.DESCRIPTOR.services_by_name["NodeService"]: "node",
    status_pb2.DESCRIPTOR.services_by_name["StatusService"]: "admin",
}


def _methods() -> Iterator[object]:
    for service, role in SERVICES.items():
        for method in service.methods:
            yield pytest.param(service.full_name, method, role, id=f"{service.name}.{method.name}")


@dataclass
class Served:
    running: RunningServer
    records: list[logging.LogRecord]


class _Keep(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
async def served(etcd_endpoint: str) -> AsyncIterator[Served]:
    config = ServerConfig(
        listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/it/{uuid.uuid4().hex}", metrics_listen="127.0.0.1:0"
    )
    records: list[logging.LogRecord] = []
    handler = _Keep(records)
    logging.getLogger().addHandler(handler)
    try:
        async with AsyncExitStack() as stack:
            running = await start(config, stack)
            yield Served(running, records)
    finally:
        logging.getLogger().removeHandler(handler)


def _tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Tracebacks the server logged. Not grpc's completion-queue poller failing on an event loop an earlier
    test in this process closed (asyncio logs that when suites share a process; it is no answer to a request)."""
    return [
        r.getMessage()
        for r in records
        if (r.exc_info or "Traceback" in r.getMessage()) and "PollerCompletionQueue" not in r.getMessage()
    ]


async def _raw(channel: grpc.aio.Channel, path: str, streaming_response: bool, payload: bytes) -> grpc.aio.AioRpcError:
    """Call ``path`` with ``payload`` as the (first) request message, unparsed; the error it ends with."""
    try:
        if streaming_response:
            streaming: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(path)
            async for _ in streaming(payload, timeout=10):
                pass
        else:
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
            await unary(payload, timeout=10)
    except grpc.aio.AioRpcError as e:
        return e
    raise AssertionError(f"{path} accepted {payload!r}")


@pytest.mark.parametrize(("service", "method", "role"), list(_methods()))
async def test_junk_bytes_are_invalid_argument_on_the_api_port(
    served: Served, service: str, method: MethodDescriptor, role: str
) -> None:
    running = served.running
    credentials = admin_of(running) if role == "admin" else node_of(running, "n1")
    path = f"/{service}/{method.name}"
    async with aio_channel(running.address, credentials) as channel:
        if method.client_streaming:
            call: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(path)
            stream = call(iter([JUNK]), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stream:
                    pass
            error = caught.value
        else:
            error = await _raw(channel, path, method.server_streaming, JUNK)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert "request" in (error.details() or "")
    assert _tracebacks(served.records) == []


async def test_junk_bytes_are_invalid_argument_on_the_join_port(served: Served) -> None:
    running = served.running
    assert running.ca is not None
    credentials = grpc.ssl_channel_credentials(root_certificates=running.ca.pem)
    async with grpc.aio.secure_channel(running.join_address, credentials) as channel:
        error = await _raw(channel, "/corral.v1.JoinService/Join", False, JUNK)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert _tracebacks(served.records) == []


def _watch(c: api.Client, version: str) -> None:
    for _ in c.watch("Pod", "default", resource_version=version):
        break


@pytest.mark.parametrize(
    "version",
    [
        pytest.param("-5", id="negative"),
        pytest.param(str(2**63), id="over-int64"),
        pytest.param("1e9", id="not-a-number"),
    ],
)
async def test_bad_watch_versions_are_invalid_argument(served: Served, version: str) -> None:
    c = api.Client(served.running.address, admin_of(served.running))
    try:
        with pytest.raises(api.InvalidError, match="resourceVersion"):
            await asyncio.to_thread(_watch, c, version)
    finally:
        c.close()
    assert _tracebacks(served.records) == []


def _bound_pod(name: str, grace: int | None = None) -> pod_pb2.Pod:
    pod = pod_pb2.Pod(metadata=meta_pb2.ObjectMeta(name=name, namespace="default"))
    pod.spec.node_name = "n1"
    pod.spec.containers.add(name="main", image="busybox:1")
    if grace is not None:
        pod.spec.termination_grace_period_seconds = grace
    return pod


async def test_a_huge_grace_period_on_delete_is_invalid_argument(served: Served) -> None:
    c = api.Client(served.running.address, admin_of(served.running))
    try:
        await asyncio.to_thread(c.create, _bound_pod("huge-delete"))
        with pytest.raises(api.InvalidError, match="gracePeriodSeconds"):
            await asyncio.to_thread(c.delete, "Pod", "huge-delete", "default", grace_period_seconds=2**62)
        with pytest.raises(api.InvalidError, match="gracePeriodSeconds"):
            await asyncio.to_thread(c.delete, "Pod", "huge-delete", "default", grace_period_seconds=-1)
    finally:
        c.close()
    assert _tracebacks(served.records) == []


async def test_a_huge_grace_period_in_a_pod_is_a_field_error(served: Served) -> None:
    c = api.Client(served.running.address, admin_of(served.running))
    try:
        with pytest.raises(api.InvalidError, match="terminationGracePeriodSeconds") as caught:
            await asyncio.to_thread(c.create, _bound_pod("huge-spec", grace=2**62))
        assert caught.value.causes
    finally:
        c.close()
    assert _tracebacks(served.records) == []


def _http(address: str, request: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    chunks = []
    with socket.create_connection((host, int(port)), timeout=10) as s:
        try:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass  # the server may answer and close before reading it all
    return b"".join(chunks)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(JUNK * 100 + b"\r\n\r\n", id="binary"),
        pytest.param(b"GET /metrics?name[]=%zz&&== HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-query"),
        pytest.param(b"POST /metrics HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nabc", id="huge-length"),
        pytest.param(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", id="long-line"),
    ],
)
async def test_the_metrics_endpoint_answers_junk_without_a_traceback(
    served: Served, request_bytes: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    address = served.running.metrics_address
    assert address is not None
    await asyncio.to_thread(_http, address, request_bytes)
    # Still serving, and nothing printed a traceback (socketserver prints to stderr).
    answer = await asyncio.to_thread(_http, address, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200"), answer[:100]
    assert "Traceback" not in capfd.readouterr().err
    assert _tracebacks(served.records) == []


async def test_a_huge_token_lifetime_is_invalid_argument_and_tokens_still_list(served: Served) -> None:
    c = api.Client(served.running.address, admin_of(served.running))
    try:
        with pytest.raises(api.InvalidError, match="ttl"):
            await asyncio.to_thread(c.create_token, "node", 2**62)
        await asyncio.to_thread(c.list_tokens)
    finally:
        c.close()
    assert _tracebacks(served.records) == []


@pytest.mark.parametrize(
    ("field", "change"),
    [
        pytest.param(
            "metadata.resourceVersion",
            lambda p: setattr(p.metadata, "resource_version", "abc"),
            id="resource-version-not-a-number",
        ),
        pytest.param(
            "tolerationSeconds",
            lambda p: p.spec.tolerations.add(key="k", operator="Exists", effect="NoExecute", toleration_seconds=2**62),
            id="toleration-seconds",
        ),
    ],
)
async def test_out_of_range_fields_are_field_errors(
    served: Served, field: str, change: Callable[[pod_pb2.Pod], object]
) -> None:
    c = api.Client(served.running.address, admin_of(served.running))
    try:
        created = await asyncio.to_thread(c.create, _bound_pod("range"))
        assert isinstance(created, pod_pb2.Pod)
        changed = pod_pb2.Pod()
        changed.CopyFrom(created)
        change(changed)
        with pytest.raises(api.InvalidError, match=field):
            await asyncio.to_thread(c.update if field.startswith("metadata") else c.apply, changed)
        fresh = _bound_pod("range-new")
        change(fresh)
        with pytest.raises(api.InvalidError, match=field):
            await asyncio.to_thread(c.create, fresh)
    finally:
        c.close()
    assert _tracebacks(served.records) == []
