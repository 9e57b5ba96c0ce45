"""A client's credentials (cluster CA, certificate, key; PEM) and the gRPC
channel settings every corral client uses with them.

Clients check the server's certificate against the cluster CA only, for the
name `certs.SERVER_NAME` (which the CA puts only into serving certificates),
whatever address they dialled: the CA is the cluster's own, so a DHCP-assigned
or NAT-ed address needs no certificate reissue.

Parsing certificates needs the `cryptography` package, loaded only by the
methods that parse; `load(..., verify=False)` checks a saved key against its
certificate with the standard library alone (what a running agent uses).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from corral.common.pki.identity import SERVER_NAME, CertificateError, Identity

if TYPE_CHECKING:
    from cryptography import x509

CA_FILE = "ca.crt"
CERT_FILE = "client.crt"
KEY_FILE = "client.key"


def channel_options() -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", SERVER_NAME)]


@dataclass(frozen=True)
class Credentials:
    ca: bytes
    cert: bytes
    key: bytes

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def certificate(self) -> x509.Certificate:
        from corral.common.pki import certs

        return certs.load_cert(self.cert, "client certificate")

    def identity(self) -> Identity | None:
        from corral.common.pki import certs

        return certs.identity_of(self.certificate())

    def check(self, what: str) -> None:
        """Raise `CertificateError` unless the key, certificate and CA belong together."""
        from corral.common.pki import certs

        cert = self.certificate()
        ca = certs.load_cert(self.ca, f"{what}: CA certificate")
        key = certs.load_key(self.key, f"{what}: client key")
        if cert.public_key() != key.public_key():
            raise CertificateError(f"{what}: the client key does not match the client certificate")
        if not certs.signed_by(cert, ca):
            raise CertificateError(f"{what}: the client certificate is not signed by the CA certificate")

    def expired(self, now: dt.datetime) -> bool:
        return bool(now >= self.certificate().not_valid_after_utc)

    def renew_at(self) -> dt.datetime:
        from corral.common.pki import certs

        return certs.renew_at(self.certificate())

    def save(self, directory: Path) -> None:
        """Write ``ca.crt``, ``client.crt`` and ``client.key`` (0600; the directory 0700)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        write_private(directory / KEY_FILE, self.key)
        write_private(directory / CERT_FILE, self.cert)
        write_private(directory / CA_FILE, self.ca)

    @classmethod
    def load(cls, directory: Path, *, verify: bool = True) -> Credentials | None:
        """The credentials saved in ``directory``; None when there are none. With ``verify``
        the key, certificate and CA are checked to belong together; without, only the key
        against the certificate (standard library only)."""
        files = [directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE]
        if not all(f.exists() for f in files):
            return None
        try:
            ca, cert, key = (f.read_bytes() for f in files)
        except OSError as e:
            raise CertificateError(f"{directory}: {e.strerror or e}") from e
        credentials = cls(ca, cert, key)
        if verify:
            credentials.check(str(directory))
            return credentials
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(directory / CERT_FILE, directory / KEY_FILE)
        except (ssl.SSLError, OSError) as e:
            raise CertificateError(f"{directory}: the client key does not match the client certificate ({e})") from e
        return credentials


def write_private(path: os.PathLike[str] | str, data: bytes) -> None:
    """Write a file only its owner can read, atomically (a reader never sees half of it)."""
    target = os.fspath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
