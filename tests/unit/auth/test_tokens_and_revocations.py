"""Join tokens and node revocations kept in the store (the in-memory twin)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from controlplane.auth import JoinRefused, TokenNotFound
from controlplane.auth.policy import allowed
from controlplane.auth.revocations import RevocationList
from controlplane.auth.tokens import TokenRegistry
from controlplane.store.memory import MemoryStore
from corral.common.pki.certs import Role
from corral.common.pki.tokens import parse_token

HASH = "cd" * 32
T0 = 1_800_000_000.0


async def test_a_token_joins_until_it_expires_or_is_revoked() -> None:
    registry = TokenRegistry(MemoryStore(), "/c")
    record, token = await registry.create("node", 3600, "rack 2", ca_hash=HASH, now=T0)
    assert parse_token(str(token)) == token and token.ca_hash == HASH
    assert (await registry.check(token.id, token.secret, now=T0 + 10)).id == record.id
    with pytest.raises(JoinRefused, match="wrong secret"):
        await registry.check(token.id, "x" * 16, now=T0 + 10)
    with pytest.raises(JoinRefused, match="expired"):
        await registry.check(token.id, token.secret, now=T0 + 3600)
    with pytest.raises(JoinRefused, match="unknown"):
        await registry.check("zzzzzz", token.secret, now=T0)
    with pytest.raises(JoinRefused, match="unknown"):
        await registry.check("../../x", token.secret, now=T0)
    with pytest.raises(JoinRefused, match="another cluster CA"):
        await registry.check(token.id, token.secret, now=T0 + 10, ca_hash="ef" * 32)
    assert (await registry.check(token.id, token.secret, now=T0 + 10, ca_hash=HASH)).id == token.id
    revoked = await registry.revoke(token.id)
    assert revoked.revoked
    with pytest.raises(JoinRefused, match="revoked"):
        await registry.check(token.id, token.secret, now=T0 + 10)
    assert [(r.id, r.revoked, r.description) for r in await registry.list()] == [(token.id, True, "rack 2")]
    with pytest.raises(TokenNotFound):
        await registry.revoke("nope00")


async def test_only_the_secret_hash_is_stored() -> None:
    store = MemoryStore()
    registry = TokenRegistry(store, "/c")
    _, token = await registry.create("admin", 0, "", ca_hash=HASH, now=T0)
    stored = (await store.list("/c/security/tokens/")).items
    assert len(stored) == 1
    assert token.secret.encode() not in stored[0].value
    assert json.loads(stored[0].value)["expires"] is None  # ttl 0: never expires
    assert (await registry.check(token.id, token.secret, now=T0 + 10 * 365 * 86400)).role == "admin"


async def test_bad_token_requests_are_refused() -> None:
    registry = TokenRegistry(MemoryStore(), "/c")
    with pytest.raises(ValueError, match="role"):
        await registry.create("root", 60, "", ca_hash=HASH, now=T0)
    with pytest.raises(ValueError, match="negative"):
        await registry.create("node", -1, "", ca_hash=HASH, now=T0)


async def test_revocation_refuses_older_certificates_on_every_replica() -> None:
    store = MemoryStore()
    closed: list[str] = []
    here = RevocationList(store, "/c")
    there = RevocationList(store, "/c", on_revoked=closed.append)
    follow = asyncio.create_task(there.run())
    try:
        await asyncio.wait_for(there.synced.wait(), 5)
        at = await here.revoke("n1", T0)
        assert here.revoked("n1", T0 - 1) and not here.revoked("n1", T0 + 1) and not here.revoked("n2", 0)
        async with asyncio.timeout(5):
            while not there.revoked("n1", T0 - 1):
                await asyncio.sleep(0.01)
        assert closed == ["n1"] and at == T0
        # A replica started later learns it from the listing.
        late = RevocationList(store, "/c")
        task = asyncio.create_task(late.run())
        await asyncio.wait_for(late.synced.wait(), 5)
        assert late.revoked("n1", T0 - 1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow


@pytest.mark.parametrize(
    ("method", "role", "verdict"),
    [
        ("/corral.v1.NodeService/Heartbeat", Role.NODE, True),
        ("/corral.v1.NodeService/Heartbeat", Role.ADMIN, False),
        ("/corral.v1.ObjectService/Get", Role.NODE, False),
        ("/corral.v1.ObjectService/Get", Role.ADMIN, True),
        ("/corral.v1.SecurityService/CreateToken", Role.NODE, False),
        ("/corral.v1.SecurityService/RevokeNode", Role.ADMIN, True),
        ("/corral.v1.SecurityService/RenewCertificate", Role.NODE, True),
        ("/corral.v1.SecurityService/RenewCertificate", Role.ADMIN, True),
        ("/corral.v1.MetricsService/NodeMetrics", Role.NODE, False),
        ("/corral.v1.DiscoveryService/ListEndpoints", Role.ADMIN, True),
        ("/corral.v1.MetricsRelay/ShareReports", Role.CONTROLPLANE, True),
        ("/corral.v1.MetricsRelay/ShareReports", Role.NODE, False),
        ("/corral.v1.MetricsRelay/ShareReports", Role.ADMIN, False),
        ("/corral.v1.ObjectService/Get", Role.CONTROLPLANE, False),
        ("/corral.v1.NodeService/ReportMetrics", Role.CONTROLPLANE, False),
        ("/corral.v1.SecurityService/RenewCertificate", Role.CONTROLPLANE, False),
    ],
)
def test_policy(method: str, role: Role, verdict: bool) -> None:
    assert allowed(method, role) is verdict
