"""The join port under abuse: rate limited by source address, names capped, log lines bounded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest
from structlog.testing import capture_logs

from controlplane.server import RunningServer, ServerConfig, start
from corral.common.pki import certs, join
from corral.common.pki.certs import Identity, Role
from corral.common.pki.tokens import JoinToken
from protos.corral.v1 import security_pb2, security_pb2_grpc
from tests.integration.test_auth import create_token

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]
BURST = 3


@pytest.fixture
async def running(etcd_endpoint: str) -> AsyncIterator[RunningServer]:
    # A refill slower than the test: only the burst counts.
    config = ServerConfig(
        listen="127.0.0.1:0",
        etcd=[etcd_endpoint],
        key_prefix=f"/join/{uuid.uuid4().hex}",
        join_burst=BURST,
        join_rate=0.001,
    )
    async with AsyncExitStack() as stack:
        yield await start(config, stack)


async def raw_join(running: RunningServer, request: security_pb2.JoinRequest) -> grpc.StatusCode:
    assert running.ca is not None
    credentials = grpc.ssl_channel_credentials(root_certificates=running.ca.pem)
    async with grpc.aio.secure_channel(running.join_address, credentials) as channel:
        try:
            await security_pb2_grpc.JoinServiceStub(channel).Join(request, timeout=10)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


async def test_the_join_port_rate_limits_each_source_address(running: RunningServer) -> None:
    token = await create_token(running)
    wrong = JoinToken(token.ca_hash, token.id, "0" * 16)
    for _ in range(BURST):
        with pytest.raises(join.JoinError, match="wrong secret"):
            await join.join(running.join_address, wrong, "n1")
    with capture_logs() as logs:
        with pytest.raises(join.JoinThrottledError, match="too many join attempts from 127.0.0.1; try again in"):
            await join.join(running.join_address, token, "n1")  # even with the right token
        request = security_pb2.JoinRequest(token_id=token.id, token_secret=token.secret, name="n1", role="node")
        assert await raw_join(running, request) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [e["event"] for e in logs if e["event"].startswith("join")] == ["join_rate_limited"]  # once


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("n" * 10_000, id="10,000 characters"),
        pytest.param("a..b", id="not a DNS-1123 subdomain"),
        pytest.param("Upper", id="upper case"),
    ],
)
async def test_join_names_are_the_apis_node_names_and_log_lines_stay_short(running: RunningServer, name: str) -> None:
    token = await create_token(running)
    key = certs.new_key()
    csr = certs.make_csr(key, Identity(Role.NODE, "n1"))
    with capture_logs() as logs:
        for secret in ("0" * 16, token.secret):  # a wrong token, then the right one
            request = security_pb2.JoinRequest(token_id=token.id, token_secret=secret, csr=csr, name=name, role="node")
            checked_first = len(name) > 253 or secret == token.secret  # a long name: before the token
            expected = grpc.StatusCode.INVALID_ARGUMENT if checked_first else grpc.StatusCode.UNAUTHENTICATED
            assert await raw_join(running, request) == expected
        wild = security_pb2.JoinRequest(token_id="x" * 20_000, token_secret="y", name="n1", role="z" * 20_000)
        assert await raw_join(running, wild) == grpc.StatusCode.UNAUTHENTICATED
    assert logs, "the refusals are logged"
    for event in logs:
        assert len(repr(event)) < 1_000, event["event"]


async def test_the_join_port_takes_no_large_messages(running: RunningServer) -> None:
    huge = security_pb2.JoinRequest(token_id="abcdef", token_secret="y", name="n1", csr=b"x" * 1_000_000)
    assert await raw_join(running, huge) == grpc.StatusCode.RESOURCE_EXHAUSTED
