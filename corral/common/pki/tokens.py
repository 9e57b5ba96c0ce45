"""Join tokens: ``K10<ca-hash>::<id>.<secret>``.

As with k3s' secure tokens, the prefix pins the cluster CA: ``<ca-hash>`` is
the SHA-256 of the CA certificate, so a joining agent checks the server it
reached before it sends the secret. ``<id>.<secret>`` has the shape of a
Kubernetes bootstrap token (6 and 16 characters of ``[a-z0-9]``): the id names
the token in ``corral token list``/``revoke``; the server keeps only the
secret's SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "K10"
ID_CHARS = 6
SECRET_CHARS = 16
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN = re.compile(r"^K10(?P<hash>[0-9a-f]{64})::(?P<id>[a-z0-9]{6})\.(?P<secret>[a-z0-9]{16})$")
_ID = re.compile(r"^[a-z0-9]{6}$")


class TokenFormatError(ValueError):
    """A string is not a corral join token."""


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str
    id: str
    secret: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.ca_hash}::{self.id}.{self.secret}"


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_token(ca_hash: str) -> JoinToken:
    return JoinToken(ca_hash, _random(ID_CHARS), _random(SECRET_CHARS))


def parse_token(text: str) -> JoinToken:
    match = _TOKEN.match(text.strip())
    if match is None:
        raise TokenFormatError(
            "not a corral join token: expected K10<64 hex digits>::<6 characters>.<16 characters> "
            "(as printed by `corral token create`)"
        )
    return JoinToken(match["hash"], match["id"], match["secret"])


def valid_id(token_id: str) -> bool:
    return _ID.match(token_id) is not None


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, digest: str) -> bool:
    return hmac.compare_digest(secret_digest(secret), digest)
