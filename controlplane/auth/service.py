"""JoinService (join port: token + CSR → certificate) and SecurityService
(API port: tokens and revocation for admins, renewal for every holder)."""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from controlplane.apiserver.validation import Problems, validate_name
from controlplane.auth import JoinRefused, TokenNotFound
from controlplane.auth.admission import StreamRegistry
from controlplane.auth.ca import ClusterCA
from controlplane.auth.peer import Context, peer_of
from controlplane.auth.ratelimit import SourceRateLimiter, peer_address
from controlplane.auth.revocations import RevocationList
from controlplane.auth.tokens import TokenRecord, TokenRegistry
from controlplane.store import errors as store_errors
from corral.common.logs import clip
from corral.common.pki import certs
from corral.common.pki.certs import CertificateError, Identity, Role
from protos.corral.v1 import security_pb2, security_pb2_grpc

log = structlog.get_logger(__name__)

USER_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9._@]*[A-Za-z0-9])?$")
MAX_NAME = 253


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def token_info(record: TokenRecord) -> security_pb2.JoinTokenInfo:
    info = security_pb2.JoinTokenInfo(
        id=record.id,
        role=record.role,
        description=record.description,
        created=_timestamp(record.created),
        revoked=record.revoked,
    )
    if record.expires is not None:
        info.expires.CopyFrom(_timestamp(record.expires))
    return info


def check_name(role: Role, name: str) -> str | None:
    """Why ``name`` cannot be a certificate's name for ``role`` (None: it can). A node's name is
    its Node's name: a DNS-1123 subdomain of at most 253 characters, the API's rule."""
    if role is Role.NODE:
        p = Problems()
        validate_name(p, "name", name)
        return f"not a valid node name: {p.causes[0].message}" if p.causes else None
    if not name or len(name) > MAX_NAME or not USER_NAME.match(name):
        return f'"{clip(name, 64)}" is not a valid user name'
    return None


class CertificateIssuer:
    """Signs CSRs for identities with the cluster CA."""

    def __init__(self, ca: ClusterCA, node_lifetime: dt.timedelta, clock: Callable[[], float] = time.time) -> None:
        self.ca = ca
        self.node_lifetime = node_lifetime
        self.clock = clock

    def issue(self, csr: bytes, identity: Identity) -> security_pb2.CertificateResponse:
        public_key = certs.csr_public_key(csr)
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        lifetime = self.node_lifetime if identity.role is Role.NODE else certs.ADMIN_LIFETIME
        return security_pb2.CertificateResponse(
            certificate=self.ca.sign(public_key, identity, now, lifetime),
            ca_certificate=self.ca.pem,
            role=identity.role.value,
        )


class JoinService(security_pb2_grpc.JoinServiceServicer):
    """The join port's one call. Unauthenticated: each source address is rate limited
    (`SourceRateLimiter`, RESOURCE_EXHAUSTED past it), the name is checked for length before
    anything else, and every client-provided string is clipped in log lines."""

    def __init__(
        self,
        tokens: TokenRegistry,
        issuer: CertificateIssuer,
        limiter: SourceRateLimiter | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tokens
        self.issuer = issuer
        self.limiter = limiter if limiter is not None else SourceRateLimiter()
        self.monotonic = monotonic

    async def Join(self, request: security_pb2.JoinRequest, context: Context) -> security_pb2.CertificateResponse:
        peer = clip(context.peer())
        source = peer_address(context.peer())
        verdict = self.limiter.take(source, now=self.monotonic())
        if not verdict.allowed:
            if verdict.first_refusal:
                log.warning(
                    "join_rate_limited",
                    source=source,
                    retry_after=round(verdict.retry_after, 1),
                    rate=self.limiter.rate,
                    burst=self.limiter.burst,
                )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"join refused: too many join attempts from {source}; "
                f"try again in {max(1, math.ceil(verdict.retry_after))} s",
            )
        name, token_id = clip(request.name, 64), clip(request.token_id, 32)
        if len(request.name) > MAX_NAME:
            log.warning("join_refused", peer=peer, name=name, token=token_id, reason="name too long")
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"join refused: the name must be no more than {MAX_NAME} characters, got {len(request.name)}",
            )
        try:
            record = await self.tokens.check(
                request.token_id, request.token_secret, now=self.issuer.clock(), ca_hash=self.issuer.ca.hash
            )
        except JoinRefused as e:
            log.warning("join_refused", peer=peer, name=name, token=token_id, reason=clip(str(e), 256))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"join refused: {e}")
        except store_errors.StoreError as e:
            await _store_failed(context, e)
        role = Role(record.role)
        if request.role and request.role != record.role:
            log.warning(
                "join_refused",
                peer=peer,
                name=name,
                token=record.id,
                reason=f"token for role {record.role}, {clip(request.role, 16)} asked",
            )
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f'join refused: token "{record.id}" is for role {record.role}, not {clip(request.role, 16)}',
            )
        problem = check_name(role, request.name)
        if problem is None:
            try:
                response = self.issuer.issue(request.csr, Identity(role, request.name))
            except CertificateError as e:
                problem = str(e)
        if problem is not None:
            log.warning("join_refused", peer=peer, name=name, token=record.id, reason=clip(problem, 256))
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"join refused: {problem}")
        log.info("joined", role=role.value, name=request.name, token=record.id, peer=peer)
        return response


class SecurityService(security_pb2_grpc.SecurityServiceServicer):
    def __init__(
        self, tokens: TokenRegistry, revocations: RevocationList, issuer: CertificateIssuer, streams: StreamRegistry
    ) -> None:
        self.tokens = tokens
        self.revocations = revocations
        self.issuer = issuer
        self.streams = streams

    async def CreateToken(
        self, request: security_pb2.CreateTokenRequest, context: Context
    ) -> security_pb2.CreateTokenResponse:
        try:
            record, token = await self.tokens.create(
                request.role or "node",
                request.ttl_seconds,
                request.description,
                ca_hash=self.issuer.ca.hash,
                now=self.issuer.clock(),
            )
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except store_errors.StoreError as e:
            await _store_failed(context, e)
        log.info("token_created", id=record.id, role=record.role, by=_who(context))
        return security_pb2.CreateTokenResponse(info=token_info(record), token=str(token))

    async def ListTokens(
        self, request: security_pb2.ListTokensRequest, context: Context
    ) -> security_pb2.ListTokensResponse:
        try:
            records = await self.tokens.list()
        except store_errors.StoreError as e:
            await _store_failed(context, e)
        return security_pb2.ListTokensResponse(tokens=[token_info(r) for r in records])

    async def RevokeToken(
        self, request: security_pb2.RevokeTokenRequest, context: Context
    ) -> security_pb2.RevokeTokenResponse:
        try:
            record = await self.tokens.revoke(request.id)
        except TokenNotFound as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(e))
        except store_errors.StoreError as e:
            await _store_failed(context, e)
        log.info("token_revoked", id=record.id, by=_who(context))
        return security_pb2.RevokeTokenResponse(info=token_info(record))

    async def RevokeNode(
        self, request: security_pb2.RevokeNodeRequest, context: Context
    ) -> security_pb2.RevokeNodeResponse:
        problem = check_name(Role.NODE, request.node_name)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            before = await self.revocations.revoke(request.node_name, self.issuer.clock())
        except store_errors.StoreError as e:
            await _store_failed(context, e)
        log.info("node_revoked", node=request.node_name, by=_who(context))
        return security_pb2.RevokeNodeResponse(revoked_before=_timestamp(before))

    async def RenewCertificate(
        self, request: security_pb2.RenewRequest, context: Context
    ) -> security_pb2.CertificateResponse:
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


async def _store_failed(context: Context, error: store_errors.StoreError) -> Any:
    if isinstance(error, store_errors.DatabaseFullError):
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
    await context.abort(grpc.StatusCode.UNAVAILABLE, f"the cluster store is unavailable: {error}")
