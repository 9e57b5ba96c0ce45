"""Joining, mutual TLS and revocation against a real control plane and etcd:
what a stranger, a node and an admin can and cannot do."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest

from controlplane.server import RunningServer, ServerConfig, start
from corral.common.pki import certs, join
from corral.common.pki.certs import Identity, Role
from corral.common.pki.credentials import Credentials
from corral.common.pki.tokens import JoinToken, parse_token
from protos.corral.v1 import (
    api_pb2,
    api_pb2_grpc,
    node_pb2,
    node_service_pb2,
    node_service_pb2_grpc,
    security_pb2,
    security_pb2_grpc,
)
from tests.pki import TestCluster, admin_of, aio_channel

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]


async def _start(etcd_endpoint: str, stack: AsyncExitStack) -> RunningServer:
    config = ServerConfig(listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/auth/{uuid.uuid4().hex}")
    return await start(config, stack)


@pytest.fixture
async def running(etcd_endpoint: str) -> AsyncIterator[RunningServer]:
    async with AsyncExitStack() as stack:
        yield await _start(etcd_endpoint, stack)


async def create_token(running: RunningServer, role: str = "node", ttl: int = 3600) -> JoinToken:
    async with aio_channel(running.address, admin_of(running)) as channel:
        response = await security_pb2_grpc.SecurityServiceStub(channel).CreateToken(
            security_pb2.CreateTokenRequest(role=role, ttl_seconds=ttl)
        )
    return parse_token(response.token)


async def node_names(running: RunningServer) -> list[str]:
    async with aio_channel(running.address, admin_of(running)) as channel:
        listed = await api_pb2_grpc.ObjectServiceStub(channel).List(api_pb2.ListRequest(kind="node"))
    return [o.node.metadata.name for o in listed.items]


def register(name: str) -> node_service_pb2.RegisterRequest:
    return node_service_pb2.RegisterRequest(node_name=name, status=node_pb2.NodeStatus(runtimes=["fake"]))


async def test_a_node_joins_with_a_token_and_then_speaks_mtls(running: RunningServer) -> None:
    token = await create_token(running)
    credentials = await join.join(running.join_address, token, "n1")
    assert credentials.identity() == Identity(Role.NODE, "n1")
    assert running.ca is not None and credentials.ca == running.ca.pem
    async with aio_channel(running.address, credentials) as channel:
        await node_service_pb2_grpc.NodeServiceStub(channel).Register(register("n1"))
    assert await node_names(running) == ["n1"]


async def test_bad_tokens_are_refused_and_nothing_is_registered(running: RunningServer) -> None:
    good = await create_token(running)
    wrong = JoinToken(good.ca_hash, good.id, "0" * 16)
    with pytest.raises(join.JoinError, match="wrong secret"):
        await join.join(running.join_address, wrong, "n1")
    unknown = JoinToken(good.ca_hash, "zzzzzz", good.secret)
    with pytest.raises(join.JoinError, match="unknown"):
        await join.join(running.join_address, unknown, "n1")
    short = await create_token(running, ttl=1)
    await asyncio.sleep(1.2)
    with pytest.raises(join.JoinError, match="expired"):
        await join.join(running.join_address, short, "n1")
    async with aio_channel(running.address, admin_of(running)) as channel:
        await security_pb2_grpc.SecurityServiceStub(channel).RevokeToken(security_pb2.RevokeTokenRequest(id=good.id))
    with pytest.raises(join.JoinError, match="revoked"):
        await join.join(running.join_address, good, "n1")
    with pytest.raises(join.JoinError, match="not a valid node name"):
        await join.join(running.join_address, await create_token(running), "Bad_Name")
    # An admin token gives an admin certificate, not a node's.
    with pytest.raises(join.JoinError, match="role admin, not node"):
        await join.join(running.join_address, await create_token(running, role="admin"), "n1")
    assert await node_names(running) == []


async def test_a_server_with_another_ca_gets_no_secret(running: RunningServer, etcd_endpoint: str) -> None:
    token = await create_token(running)
    async with AsyncExitStack() as stack:
        impostor = await _start(etcd_endpoint, stack)
        with pytest.raises(join.CaMismatchError, match="refusing to send credentials"):
            await join.join(impostor.join_address, token, "n1")


async def test_no_call_without_a_certificate_of_this_cluster(running: RunningServer) -> None:
    request = api_pb2.ListRequest(kind="node")
    async with grpc.aio.insecure_channel(running.address) as plaintext:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api_pb2_grpc.ObjectServiceStub(plaintext).List(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert running.ca is not None
    anonymous = Credentials(running.ca.pem, b"", b"")
    async with grpc.aio.secure_channel(
        running.address,
        grpc.ssl_channel_credentials(anonymous.ca),
        options=[("grpc.ssl_target_name_override", certs.SERVER_NAME)],
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api_pb2_grpc.ObjectServiceStub(channel).List(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    stranger = TestCluster().admin()  # an admin certificate of another cluster
    async with aio_channel(running.address, Credentials(running.ca.pem, stranger.cert, stranger.key)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api_pb2_grpc.ObjectServiceStub(channel).List(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # The join port serves only joins.
    async with grpc.aio.secure_channel(
        running.join_address,
        grpc.ssl_channel_credentials(running.ca.pem),
        options=[("grpc.ssl_target_name_override", certs.SERVER_NAME)],
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await api_pb2_grpc.ObjectServiceStub(channel).List(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_only_admins_manage_tokens(running: RunningServer) -> None:
    credentials = await join.join(running.join_address, await create_token(running), "n1")
    async with aio_channel(running.address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await security_pb2_grpc.SecurityServiceStub(channel).CreateToken(
                security_pb2.CreateTokenRequest(role="admin", ttl_seconds=60)
            )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not call" in (info.value.details() or "")


async def test_revoking_a_node_closes_its_streams_and_refuses_its_certificate(running: RunningServer) -> None:
    token = await create_token(running)
    credentials = await join.join(running.join_address, token, "n1")
    async with aio_channel(running.address, credentials) as channel:
        nodes = node_service_pb2_grpc.NodeServiceStub(channel)
        await nodes.Register(register("n1"))
        stream = nodes.WatchAssignments(node_service_pb2.AssignmentsRequest(node_name="n1"))
        await asyncio.wait_for(stream.read(), 10)
        async with aio_channel(running.address, admin_of(running)) as admin:
            await security_pb2_grpc.SecurityServiceStub(admin).RevokeNode(
                security_pb2.RevokeNodeRequest(node_name="n1")
            )
        revoked_at = time.monotonic()

        async def drain() -> None:
            async with asyncio.timeout(5):
                while True:
                    await stream.read()

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await drain()
        closed_after = time.monotonic() - revoked_at
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (info.value.details() or "")
        assert closed_after < 5
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await nodes.Heartbeat(node_service_pb2.HeartbeatRequest(node_name="n1"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A fresh join (a new certificate, issued after the revocation) is let in again.
    again = await join.join(running.join_address, await create_token(running), "n1")
    async with aio_channel(running.address, again) as channel:
        await node_service_pb2_grpc.NodeServiceStub(channel).Heartbeat(
            node_service_pb2.HeartbeatRequest(node_name="n1")
        )


async def test_renewal_keeps_the_identity_with_a_new_key(running: RunningServer) -> None:
    credentials = await join.join(running.join_address, await create_token(running), "n1")
    async with aio_channel(running.address, credentials) as channel:
        renewed = await join.renew(channel, credentials)
    assert renewed.identity() == Identity(Role.NODE, "n1")
    assert renewed.key != credentials.key
    assert renewed.certificate().serial_number != credentials.certificate().serial_number
    async with aio_channel(running.address, renewed) as channel:
        await node_service_pb2_grpc.NodeServiceStub(channel).Register(register("n1"))
