"""The agent's node identity against a real control plane: it joins with a
token, renews its certificate on its own at two thirds of the lifetime, and
joins again after being off past expiry (only with a token)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from agent.node.credentials import CredentialsError, NodeCredentials
from controlplane.server import RunningServer, ServerConfig, start
from corral.common.pki.credentials import Credentials
from protos.corral.v1 import node_pb2, node_service_pb2, node_service_pb2_grpc, security_pb2, security_pb2_grpc
from tests.pki import admin_of, aio_channel

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(60)]
LIFETIME = dt.timedelta(seconds=3)


@pytest.fixture
async def running(etcd_endpoint: str) -> AsyncIterator[RunningServer]:
    config = ServerConfig(
        listen="127.0.0.1:0", etcd=[etcd_endpoint], key_prefix=f"/id/{uuid.uuid4().hex}", node_cert_lifetime=LIFETIME
    )
    async with AsyncExitStack() as stack:
        yield await start(config, stack)


async def token(running: RunningServer) -> str:
    async with aio_channel(running.address, admin_of(running)) as channel:
        response = await security_pb2_grpc.SecurityServiceStub(channel).CreateToken(
            security_pb2.CreateTokenRequest(role="node", ttl_seconds=600)
        )
    return response.token


async def test_the_certificate_renews_itself_before_expiry(running: RunningServer, tmp_path: Path) -> None:
    identity = NodeCredentials("n1", tmp_path, token=await token(running), join_addresses=[running.join_address])
    first = await identity.ensure()
    first_expiry = first.certificate().not_valid_after_utc
    async with aio_channel(running.address, first) as channel:
        renewing = asyncio.create_task(identity.renew_forever(channel))
        try:
            async with asyncio.timeout(10):
                while identity.credentials == first:
                    await asyncio.sleep(0.1)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
    renewed = identity.credentials
    assert renewed is not None and renewed.key != first.key
    renewed_at = dt.datetime.now(dt.UTC)
    # Renewed before the old one expired, at about two thirds of its life.
    assert renewed_at < first_expiry
    assert Credentials.load(tmp_path / "pki") == renewed
    async with aio_channel(running.address, renewed) as channel:
        await node_service_pb2_grpc.NodeServiceStub(channel).Register(
            node_service_pb2.RegisterRequest(node_name="n1", status=node_pb2.NodeStatus(runtimes=["fake"]))
        )


async def test_off_past_expiry_joins_again_only_with_a_token(running: RunningServer, tmp_path: Path) -> None:
    joined = await NodeCredentials(
        "n1", tmp_path, token=await token(running), join_addresses=[running.join_address]
    ).ensure()
    later = joined.certificate().not_valid_after_utc + dt.timedelta(seconds=1)
    without = NodeCredentials("n1", tmp_path, join_addresses=[running.join_address], now=lambda: later)
    with pytest.raises(CredentialsError, match="expired.*--token"):
        await without.ensure()
    with_token = NodeCredentials(
        "n1", tmp_path, token=await token(running), join_addresses=[running.join_address], now=lambda: later - LIFETIME
    )
    # Its clock says the saved certificate is still good: kept, no join.
    assert await with_token.ensure() == joined
    expired = NodeCredentials(
        "n1", tmp_path, token=await token(running), join_addresses=[running.join_address], now=lambda: later
    )
    fresh = await expired.ensure()
    assert fresh != joined and fresh.identity() == joined.identity()


async def test_a_certificate_for_another_node_is_not_used(running: RunningServer, tmp_path: Path) -> None:
    await NodeCredentials("n1", tmp_path, token=await token(running), join_addresses=[running.join_address]).ensure()
    with pytest.raises(CredentialsError, match="not node n2"):
        await NodeCredentials("n2", tmp_path, join_addresses=[running.join_address]).ensure()
