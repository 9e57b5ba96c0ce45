"""JoinService (join port: token + CSR → certificate) and SecurityService
(API port: tokens and revocation for admins, renewal for every holder)."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.auth import JoinRefused, TokenNotFound
from controlplane.auth.ca import ClusterCA
from controlplane.auth.interceptor import StreamRegistry
from controlplane.auth.peer import Context, peer_of
from controlplane.auth.revocations import RevocationList
from controlplane.auth.tokens import TokenRecord, TokenRegistry
from controlplane.store import errors as store_errors
from corral.pki import certs
from corral.pki.certs import CertificateError, Identity, Role
from protos.corral.v1 import security_pb2, security_pb2_grpc

log = structlog.get_logger(__name__)

NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
USER_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9._@]*[A-Za-z0-9])?$")
MAX_NAME = 253


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def token_info(record: TokenRecord) -> security_pb2.JoinTokenInfo:
    info = security_pb2.JoinTokenInfo(id=record.id, role=record.role, description=record.description,
                                      created=_timestamp(record.created), revoked=record.revoked)
    if record.expires is not None:
        info.expires.CopyFrom(_timestamp(record.expires))
    return info


def check_name(role: Role, name: str) -> str | None:
    """Why ``name`` cannot be a certificate's name for ``role`` (None: it can)."""
    pattern = NODE_NAME if role is Role.NODE else USER_NAME
    if not name or len(name) > MAX_NAME or not pattern.match(name):
        what = "node name (lower case letters, digits, '-', '.')" if role is Role.NODE else "user name"
        return f'"{name}" is not a valid {what}'
    return None


class CertificateIssuer:
    """Signs CSRs for identities with the cluster CA."""

    def __init__(self, ca: ClusterCA, node_lifetime: dt.timedelta,
                 clock: Callable[[], float] = time.time) -> None:
        self.ca = ca
        self.node_lifetime = node_lifetime
        self.clock = clock

    def issue(self, csr: bytes, identity: Identity) -> security_pb2.CertificateResponse:
        public_key = certs.csr_public_key(csr)
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        lifetime = self.node_lifetime if identity.role is Role.NODE else certs.ADMIN_LIFETIME
        return security_pb2.CertificateResponse(certificate=self.ca.sign(public_key, identity, now, lifetime),
                                                ca_certificate=self.ca.pem, role=identity.role.value)


class JoinService(security_pb2_grpc.JoinServiceServicer):
    def __init__(self, tokens: TokenRegistry, issuer: CertificateIssuer) -> None:
        self.tokens = tokens
        self.issuer = issuer

    async def Join(self, request: security_pb2.JoinRequest, context: Context) -> security_pb2.CertificateResponse:
        peer = context.peer()
        try:
            record = await self.tokens.check(request.token_id, request.token_secret, now=self.issuer.clock(),
                                             ca_hash=self.issuer.ca.hash)
        except JoinRefused as e:
            log.warning("join_refused", peer=peer, name=request.name, token=request.token_id, reason=str(e))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"join refused: {e}")
        except store_errors.StoreError as e:
            await _unavailable(context, e)
        role = Role(record.role)
        if request.role and request.role != record.role:
            log.warning("join_refused", peer=peer, name=request.name, token=record.id,
                        reason=f"token for role {record.role}, {request.role} asked")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f'join refused: token "{record.id}" is for role {record.role}, not {request.role}')
        problem = check_name(role, request.name)
        if problem is None:
            try:
                response = self.issuer.issue(request.csr, Identity(role, request.name))
            except CertificateError as e:
                problem = str(e)
        if problem is not None:
            log.warning("join_refused", peer=peer, name=request.name, token=record.id, reason=problem)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"join refused: {problem}")
        log.info("joined", role=role.value, name=request.name, token=record.id, peer=peer)
        return response


class SecurityService(security_pb2_grpc.SecurityServiceServicer):
    def __init__(self, tokens: TokenRegistry, revocations: RevocationList, issuer: CertificateIssuer,
                 streams: StreamRegistry) -> None:
        self.tokens = tokens
        self.revocations = revocations
        self.issuer = issuer
        self.streams = streams

    async def CreateToken(self, request: security_pb2.CreateTokenRequest,
                          context: Context) -> security_pb2.CreateTokenResponse:
        try:
            record, token = await self.tokens.create(request.role or "node", request.ttl_seconds, request.description,
                                                     ca_hash=self.issuer.ca.hash, now=self.issuer.clock())
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except store_errors.StoreError as e:
            await _unavailable(context, e)
        log.info("token_created", id=record.id, role=record.role, by=_who(context))
        return security_pb2.CreateTokenResponse(info=token_info(record), token=str(token))

    async def ListTokens(self, request: security_pb2.ListTokensRequest,
                         context: Context) -> security_pb2.ListTokensResponse:
        try:
            records = await self.tokens.list()
        except store_errors.StoreError as e:
            await _unavailable(context, e)
        return security_pb2.ListTokensResponse(tokens=[token_info(r) for r in records])

    async def RevokeToken(self, request: security_pb2.RevokeTokenRequest,
                          context: Context) -> security_pb2.RevokeTokenResponse:
        try:
            record = await self.tokens.revoke(request.id)
        except TokenNotFound as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except store_errors.StoreError as e:
            await _unavailable(context, e)
        log.info("token_revoked", id=record.id, by=_who(context))
        return security_pb2.RevokeTokenResponse(info=token_info(record))

    async def RevokeNode(self, request: security_pb2.RevokeNodeRequest,
                         context: Context) -> security_pb2.RevokeNodeResponse:
        problem = check_name(Role.NODE, request.node_name)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            before = await self.revocations.revoke(request.node_name, self.issuer.clock())
        except store_errors.StoreError as e:
            await _unavailable(context, e)
        log.info("node_revoked", node=request.node_name, by=_who(context))
        return security_pb2.RevokeNodeResponse(revoked_before=_timestamp(before))

    async def RenewCertificate(self, request: security_pb2.RenewRequest,
                               context: Context) -> security_pb2.CertificateResponse:
        peer = peer_of(context)
        assert peer is not None  # the interceptor admitted the call
        try:
            response = self.issuer.issue(request.csr, peer.identity)
        except CertificateError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        log.info("certificate_renewed", identity=str(peer.identity))
        return response


def _who(context: Context) -> str:
    peer = peer_of(context)
    return str(peer.identity) if peer else "unknown"


async def _unavailable(context: Context, error: Exception) -> Any:
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"the cluster store is unavailable: {error}")
