"""The cluster CA: ``<data dir>/pki/ca.crt`` (0644) and ``ca.key`` (0600, the
directory 0700), created on first start under a file lock, so replicas sharing
a data dir (or started together on copied files) agree on one CA.

Without a data dir (tests that run a server in-process) the CA lives in memory
for the life of the process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.auth import PkiError
from corral.common.pki import certs
from corral.common.pki.certs import CertificateError, Identity, PrivateKey, Role
from corral.common.pki.credentials import Credentials

PKI_DIR = "pki"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"


@dataclass(frozen=True)
class ServingCredentials:
    # The serving certificate followed by the CA (a joining client finds the CA in the chain).
    chain: bytes
    key: bytes
    ca: bytes


class ClusterCA:
    def __init__(self, key: PrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert
        self.pem = certs.cert_pem(cert)
        self.hash = certs.fingerprint(cert)

    @classmethod
    def ephemeral(cls, now: dt.datetime) -> ClusterCA:
        return cls(*certs.create_ca(now))

    @classmethod
    def load_or_create(cls, data_dir: Path, now: dt.datetime) -> ClusterCA:
        directory = data_dir / PKI_DIR
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
            with _locked(directory / ".lock"):
                cert_file, key_file = directory / CA_CERT, directory / CA_KEY
                if not cert_file.exists() and not key_file.exists():
                    key, cert = certs.create_ca(now)
                    certs.write_private(key_file, certs.key_pem(key))
                    certs.write_private(cert_file, certs.cert_pem(cert))
                    os.chmod(cert_file, 0o644)
                    return cls(key, cert)
                return cls._load(cert_file, key_file)
        except OSError as e:
            raise PkiError(f"cluster CA in {directory}: {e.strerror or e}") from e

    @classmethod
    def _load(cls, cert_file: Path, key_file: Path) -> ClusterCA:
        for path in (cert_file, key_file):
            if not path.exists():
                raise PkiError(
                    f"{path} is missing while its pair exists: restore both from a backup "
                    f"(or remove both to make a new cluster CA, which every node must re-join)"
                )
        if key_file.stat().st_mode & 0o077:
            raise PkiError(f"{key_file} is readable by others (mode {key_file.stat().st_mode & 0o777:o}): chmod 600 it")
        try:
            cert = certs.load_cert(cert_file.read_bytes(), str(cert_file))
            key = certs.load_key(key_file.read_bytes(), str(key_file))
        except CertificateError as e:
            raise PkiError(str(e)) from e
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or public != key.public_key():
            raise PkiError(f"{key_file} is not the key of {cert_file}")
        return cls(key, cert)

    def serving(self, names: list[str], now: dt.datetime) -> ServingCredentials:
        key, cert = certs.issue_serving(self.key, self.cert, names, now)
        return ServingCredentials(certs.cert_pem(cert) + self.pem, certs.key_pem(key), self.pem)

    def sign(
        self, public_key: ec.EllipticCurvePublicKey, identity: Identity, now: dt.datetime, lifetime: dt.timedelta
    ) -> bytes:
        return certs.cert_pem(certs.issue_client(self.key, self.cert, public_key, identity, now, lifetime))

    def client_credentials(
        self, identity: Identity, now: dt.datetime, lifetime: dt.timedelta = certs.ADMIN_LIFETIME
    ) -> Credentials:
        key = certs.new_key()
        return Credentials(self.pem, self.sign(key.public_key(), identity, now, lifetime), certs.key_pem(key))

    def admin_credentials(self, now: dt.datetime, name: str = "admin") -> Credentials:
        return self.client_credentials(Identity(Role.ADMIN, name), now)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def server_names(listen_host: str, extra: list[str]) -> list[str]:
    """The names a serving certificate carries besides `certs.SERVER_NAME`: the listen
    address, this machine's names and addresses, and ``extra`` (``--tls-san``)."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]
    if listen_host and listen_host not in ("0.0.0.0", "::", "[::]"):
        names.append(listen_host.strip("[]"))
    with contextlib.suppress(OSError):
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    names.append(address.address.split("%", 1)[0])
    return list(dict.fromkeys(n for n in [*names, *extra] if n))
