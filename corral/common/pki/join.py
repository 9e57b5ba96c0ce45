"""Joining a cluster with a token: check the server's CA against the token's
pin, then (over TLS to that CA) trade the token and a CSR for a certificate.
Used by `corral agent --token` (role node) and `corral login` (role admin).

Errors::

    JoinError              the join did not happen (the message says why)
    ├── JoinUnreachableError  nothing answers at the join port (try again later)
    │   └── JoinThrottledError   the join port rate-limits this address (try again later)
    └── CaMismatchError       the server presents another CA: nothing was sent
"""

from __future__ import annotations

import asyncio

import grpc

from corral.common.pki import ca_fetch, certs
from corral.common.pki.certs import CertificateError, Identity, Role
from corral.common.pki.credentials import Credentials, channel_options
from corral.common.pki.endpoints import join_address_for
from corral.common.pki.tokens import JoinToken
from protos.corral.v1 import security_pb2, security_pb2_grpc

__all__ = [
    "CaMismatchError",
    "JoinError",
    "JoinThrottledError",
    "JoinUnreachableError",
    "join",
    "join_address_for",
    "renew",
]


class JoinError(Exception):
    pass


class CaMismatchError(JoinError):
    pass


class JoinUnreachableError(JoinError):
    pass


class JoinThrottledError(JoinUnreachableError):
    """The join port refused for now: too many attempts from this address (try again later)."""


async def join(
    address: str, token: JoinToken, name: str, *, role: Role = Role.NODE, call_timeout: float = 15.0
) -> Credentials:
    """Credentials for ``name`` from the join port at ``address``."""
    try:
        ca = await asyncio.to_thread(ca_fetch.fetch_ca, address, token.ca_hash, call_timeout)
    except ca_fetch.CaMismatchError as e:
        raise CaMismatchError(str(e)) from e
    except OSError as e:
        raise JoinUnreachableError(f"cannot reach the join port at {address}: {e}") from e
    except CertificateError as e:
        raise JoinError(f"the join port at {address}: {e}") from e
    ca_pem = certs.cert_pem(ca)
    key = certs.new_key()
    request = security_pb2.JoinRequest(
        token_id=token.id,
        token_secret=token.secret,
        csr=certs.make_csr(key, Identity(role, name)),
        name=name,
        role=role.value,
    )
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    try:
        async with grpc.aio.secure_channel(address, credentials, options=channel_options()) as channel:
            response = await security_pb2_grpc.JoinServiceStub(channel).Join(request, timeout=call_timeout)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise JoinThrottledError(f"the join port at {address}: {e.details()}") from e
        if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise JoinUnreachableError(f"cannot reach the join port at {address}: {e.details()}") from e
        raise JoinError(e.details() or str(e.code())) from e
    joined = Credentials(ca_pem, response.certificate, certs.key_pem(key))
    try:
        joined.check(f"the certificate from {address}")
    except CertificateError as e:
        raise JoinError(str(e)) from e
    if response.role != role.value:
        raise JoinError(
            f"the token is for role {response.role}, not {role.value}: "
            f"create one with `corral token create --role {role.value}`"
        )
    return joined


async def renew(channel: grpc.aio.Channel, current: Credentials, *, call_timeout: float = 15.0) -> Credentials:
    """A new key and certificate for the same identity, asked for over an mTLS ``channel``."""
    identity = current.identity()
    if identity is None:
        raise CertificateError("the current certificate names no corral identity")
    key = certs.new_key()
    response = await security_pb2_grpc.SecurityServiceStub(channel).RenewCertificate(
        security_pb2.RenewRequest(csr=certs.make_csr(key, identity)), timeout=call_timeout
    )
    renewed = Credentials(response.ca_certificate, response.certificate, certs.key_pem(key))
    renewed.check("the renewed certificate")
    return renewed
