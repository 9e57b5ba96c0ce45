"""Join tokens in etcd: ``<prefix>/security/tokens/<id>``, one JSON record
each, holding the SHA-256 of the secret (never the secret). A revoked token is
kept, marked, so a join with it is refused with "revoked" rather than
"unknown"."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from controlplane.auth import JoinRefused, TokenNotFound
from controlplane.store import errors as store_errors
from controlplane.store.base import Store
from corral.common.logs import clip
from corral.common.pki import tokens
from corral.common.pki.tokens import JoinToken
from protos.durations import MAX_SECONDS

ROLES = ("node", "admin")
CAS_RETRIES = 5


@dataclass(frozen=True)
class TokenRecord:
    id: str
    role: str
    description: str
    # Unix times; expires None: never.
    created: float
    expires: float | None
    secret_sha256: str
    revoked: bool = False
    # The CA the token pins (its K10 prefix): after a CA rotation, older tokens no longer join.
    ca_hash: str = ""

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, value: bytes) -> TokenRecord:
        data = json.loads(value)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class TokenRegistry:
    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = f"{prefix.rstrip('/')}/security/tokens/"

    async def create(
        self, role: str, ttl: float, description: str, *, ca_hash: str, now: float
    ) -> tuple[TokenRecord, JoinToken]:
        if role not in ROLES:
            raise ValueError(f'role "{role}": expected one of {", ".join(ROLES)}')
        if ttl < 0:
            raise ValueError("ttl must not be negative (0: never expires)")
        if ttl > MAX_SECONDS:
            raise ValueError(f"ttl must be at most {MAX_SECONDS} seconds, got {ttl:g}")
        while True:
            token = tokens.new_token(ca_hash)
            record = TokenRecord(
                token.id,
                role,
                description,
                now,
                now + ttl if ttl else None,
                tokens.secret_digest(token.secret),
                ca_hash=ca_hash,
            )
            try:
                await self.store.create(self.prefix + token.id, record.to_json())
            except store_errors.AlreadyExistsError:
                continue  # one id in 36^6 taken: draw another
            return record, token

    async def list(self) -> list[TokenRecord]:
        records: list[TokenRecord] = []
        start: str | None = None
        revision: int | None = None
        while True:
            page = await self.store.list(self.prefix, start_after=start, revision=revision)
            records += [TokenRecord.from_json(kv.value) for kv in page.items]
            if not page.more or not page.items:
                return records
            start, revision = page.items[-1].key, page.revision

    async def revoke(self, token_id: str) -> TokenRecord:
        for _ in range(CAS_RETRIES):
            kv = await self.store.get(self.prefix + token_id) if tokens.valid_id(token_id) else None
            if kv is None:
                raise TokenNotFound(f'no join token with id "{token_id}" (see `corral token list`)')
            record = TokenRecord.from_json(kv.value)
            if record.revoked:
                return record
            revoked = TokenRecord(**{**asdict(record), "revoked": True})
            try:
                await self.store.update(kv.key, revoked.to_json(), expected_revision=kv.mod_revision)
            except store_errors.ConflictError:
                continue
            return revoked
        raise store_errors.UnavailableError(f"token {token_id} kept changing while being revoked")

    async def check(self, token_id: str, secret: str, now: float, *, ca_hash: str = "") -> TokenRecord:
        """The token's record when ``token_id.secret`` is a live token pinning ``ca_hash``; else `JoinRefused`."""
        kv = await self.store.get(self.prefix + token_id) if tokens.valid_id(token_id) else None
        if kv is None:
            raise JoinRefused(f'join token "{clip(token_id, 32)}" is unknown (never created, or of another cluster)')
        record = TokenRecord.from_json(kv.value)
        if not tokens.secret_matches(secret, record.secret_sha256):
            raise JoinRefused(f'join token "{token_id}": wrong secret')
        if record.revoked:
            raise JoinRefused(f'join token "{token_id}" was revoked')
        if record.expired(now):
            raise JoinRefused(f'join token "{token_id}" expired')
        if ca_hash and record.ca_hash and record.ca_hash != ca_hash:
            raise JoinRefused(f'join token "{token_id}" pins another cluster CA (the CA was rotated since)')
        return record
