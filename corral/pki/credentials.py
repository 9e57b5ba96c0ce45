"""A client's credentials (cluster CA, certificate, key; PEM) and the gRPC
channel settings every corral client uses with them.

Clients check the server's certificate against the cluster CA only, for the
name `certs.SERVER_NAME` (which the CA puts only into serving certificates),
whatever address they dialled: the CA is the cluster's own, so a DHCP-assigned
or NAT-ed address needs no certificate reissue.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from corral.pki import certs
from corral.pki.certs import CertificateError, Identity

CA_FILE = "ca.crt"
CERT_FILE = "client.crt"
KEY_FILE = "client.key"


def channel_options() -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", certs.SERVER_NAME)]


@dataclass(frozen=True)
class Credentials:
    ca: bytes
    cert: bytes
    key: bytes

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)

    def certificate(self) -> x509.Certificate:
        return certs.load_cert(self.cert, "client certificate")

    def identity(self) -> Identity | None:
        return certs.identity_of(self.certificate())

    def check(self, what: str) -> None:
        """Raise `CertificateError` unless the key, certificate and CA belong together."""
        cert = self.certificate()
        ca = certs.load_cert(self.ca, f"{what}: CA certificate")
        key = certs.load_key(self.key, f"{what}: client key")
        if cert.public_key() != key.public_key():
            raise CertificateError(f"{what}: the client key does not match the client certificate")
        if not certs.signed_by(cert, ca):
            raise CertificateError(f"{what}: the client certificate is not signed by the CA certificate")

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.certificate().not_valid_after_utc

    def renew_at(self) -> dt.datetime:
        return certs.renew_at(self.certificate())

    def save(self, directory: Path) -> None:
        """Write ``ca.crt``, ``client.crt`` and ``client.key`` (0600; the directory 0700)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        certs.write_private(directory / KEY_FILE, self.key)
        certs.write_private(directory / CERT_FILE, self.cert)
        certs.write_private(directory / CA_FILE, self.ca)

    @classmethod
    def load(cls, directory: Path) -> Credentials | None:
        """The credentials saved in ``directory``; None when there are none."""
        files = [directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE]
        if not all(f.exists() for f in files):
            return None
        try:
            ca, cert, key = (f.read_bytes() for f in files)
        except OSError as e:
            raise CertificateError(f"{directory}: {e.strerror or e}") from e
        credentials = cls(ca, cert, key)
        credentials.check(str(directory))
        return credentials
