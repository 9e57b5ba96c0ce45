"""Who a corral certificate speaks for, in plain values: no X.509 library.

Kept apart from `certs` (which needs the `cryptography` package, about 8 MB of
memory) so that a running agent, which only needs to know its certificate's
name and validity, never loads it; it reads those with the standard library
(`CertificateFacts.of_file`). Joining and renewing load `cryptography`.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

# Every corral client checks that the server's certificate is signed by the
# cluster CA and names this (the CA signs it only into serving certificates).
SERVER_NAME = "corral-controlplane"
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
ADMINS_GROUP = "system:masters"
# A control-plane replica calling another (the metrics relay): issued by each replica to itself
# from the cluster CA, never through a join token.
CONTROLPLANE_PREFIX = "system:controlplane:"
CONTROLPLANE_GROUP = "system:controlplanes"
# Certificates start a little in the past so a peer whose clock is behind accepts them.
BACKDATE = dt.timedelta(minutes=5)


class CertificateError(Exception):
    """A certificate, key or CSR cannot be read or does not say what it must."""


class Role(Enum):
    NODE = "node"
    ADMIN = "admin"
    CONTROLPLANE = "controlplane"


@dataclass(frozen=True)
class Identity:
    """Who a client certificate speaks for."""

    role: Role
    # The node name (role NODE), the user name (role ADMIN) or the replica (role CONTROLPLANE).
    name: str

    @property
    def common_name(self) -> str:
        if self.role is Role.NODE:
            return NODE_PREFIX + self.name
        return CONTROLPLANE_PREFIX + self.name if self.role is Role.CONTROLPLANE else self.name

    @property
    def group(self) -> str:
        if self.role is Role.NODE:
            return NODES_GROUP
        return CONTROLPLANE_GROUP if self.role is Role.CONTROLPLANE else ADMINS_GROUP

    def __str__(self) -> str:
        return f"{self.role.value} {self.name}"


def identity_from_names(common_name: str, organization: str) -> Identity | None:
    """The identity of a subject's CN and O (None: not a client certificate of a corral cluster)."""
    if organization == NODES_GROUP and common_name.startswith(NODE_PREFIX) and len(common_name) > len(NODE_PREFIX):
        return Identity(Role.NODE, common_name[len(NODE_PREFIX) :])
    if (
        organization == CONTROLPLANE_GROUP
        and common_name.startswith(CONTROLPLANE_PREFIX)
        and len(common_name) > len(CONTROLPLANE_PREFIX)
    ):
        return Identity(Role.CONTROLPLANE, common_name[len(CONTROLPLANE_PREFIX) :])
    if organization == ADMINS_GROUP and common_name:
        return Identity(Role.ADMIN, common_name)
    return None


def renewal_time(not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """Two thirds of a certificate's lifetime, counted from its issue (not its back-dated start)."""
    issued = not_before + BACKDATE
    return issued + (not_after - issued) * 2 / 3


_TIME_FORMAT = "%b %d %H:%M:%S %Y %Z"


@dataclass(frozen=True)
class CertificateFacts:
    """What a holder needs of its own certificate, read with the standard library."""

    identity: Identity | None
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def of_file(cls, path: Path) -> CertificateFacts:
        try:
            decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
            fields = {k: v for rdn in decoded["subject"] for k, v in rdn}
            not_before = dt.datetime.strptime(decoded["notBefore"], _TIME_FORMAT).replace(tzinfo=dt.UTC)
            not_after = dt.datetime.strptime(decoded["notAfter"], _TIME_FORMAT).replace(tzinfo=dt.UTC)
        except (OSError, ssl.SSLError, KeyError, ValueError, TypeError) as e:
            raise CertificateError(f"{path}: not a readable certificate ({e})") from e
        identity = identity_from_names(str(fields.get("commonName", "")), str(fields.get("organizationName", "")))
        return cls(identity, not_before, not_after)

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after

    def renew_at(self) -> dt.datetime:
        return renewal_time(self.not_before, self.not_after)
