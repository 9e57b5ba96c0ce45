"""Keys, certificates and CSRs of a corral cluster.

Every key is ECDSA P-256. The cluster CA signs three kinds of certificate:

- a **serving** certificate per control-plane replica (server auth) whose names
  include `SERVER_NAME`, the name every corral client checks (see
  `channel_target_name`), besides the machine's own names and addresses;
- a **node** certificate per agent (client auth), subject
  ``CN=system:node:<name>, O=system:nodes`` as in Kubernetes;
- an **admin** certificate per CLI user (client auth), ``O=system:masters``.

A client certificate's subject carries the microsecond it was issued (the
``serialNumber`` attribute), so "every certificate of node X issued before T"
— a revocation — is one comparison, with no list of serials to keep; gRPC
hands a server the peer's subject, not its whole certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.common.pki.credentials import write_private
from corral.common.pki.identity import (
    ADMINS_GROUP,
    BACKDATE,
    NODE_PREFIX,
    NODES_GROUP,
    SERVER_NAME,
    CertificateError,
    Identity,
    Role,
    identity_from_names,
    renewal_time,
)

__all__ = [
    "ADMINS_GROUP",
    "BACKDATE",
    "NODES_GROUP",
    "NODE_PREFIX",
    "SERVER_NAME",
    "CertificateError",
    "Identity",
    "Role",
    "write_private",
]
CA_NAME = "corral-ca"

CA_LIFETIME = dt.timedelta(days=3650)
SERVING_LIFETIME = dt.timedelta(days=365)
DEFAULT_NODE_LIFETIME = dt.timedelta(days=30)
ADMIN_LIFETIME = dt.timedelta(days=365)

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(pem: bytes, what: str = "key") -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"{what}: not a PEM private key ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{what}: expected an ECDSA key, got {type(key).__name__}")
    return key


def load_cert(pem: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise CertificateError(f"{what}: not a PEM certificate ({e})") from e


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 of the certificate's DER, in hex: what a join token pins."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def issued_serial() -> int:
    return secrets.randbits(127) + 1


def _micros(now: dt.datetime) -> int:
    return int(now.timestamp() * 1_000_000)


def _name(common_name: str, organization: str | None = None, issued: dt.datetime | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if issued is not None:
        parts.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, str(_micros(issued))))
    return x509.Name(parts)


def create_ca(now: dt.datetime, *, lifetime: dt.timedelta = CA_LIFETIME) -> tuple[PrivateKey, x509.Certificate]:
    key = new_key()
    name = _name(CA_NAME, "corral")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(issued_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    subject: x509.Name,
    now: dt.datetime,
    lifetime: dt.timedelta,
    *,
    server: bool,
    names: tuple[str, ...] = (),
) -> x509.Certificate:
    not_after = min(now + lifetime, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(issued_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_serving(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    names: list[str],
    now: dt.datetime,
    *,
    lifetime: dt.timedelta = SERVING_LIFETIME,
) -> tuple[PrivateKey, x509.Certificate]:
    """A serving certificate for a control-plane replica, valid for `SERVER_NAME` and ``names``."""
    key = new_key()
    all_names = tuple(dict.fromkeys([SERVER_NAME, *names]))
    cert = _leaf(ca_key, ca_cert, key.public_key(), _name(SERVER_NAME), now, lifetime, server=True, names=all_names)
    return key, cert


def self_signed(
    common_name: str, names: list[str], now: dt.datetime, *, lifetime: dt.timedelta = SERVING_LIFETIME
) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed serving certificate for ``names`` (the ingress proxy's default certificate)."""
    key = new_key()
    subject = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(issued_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
    return key, builder.sign(key, hashes.SHA256())


def issue_client(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    identity: Identity,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.Certificate:
    """A client certificate for ``identity``: the subject is set here, never taken from a request."""
    return _leaf(
        ca_key, ca_cert, public_key, _name(identity.common_name, identity.group, now), now, lifetime, server=False
    )


def make_csr(key: PrivateKey, identity: Identity) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(identity.common_name, identity.group))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The public key of a CSR whose signature checks (proof the sender holds the private key)."""
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as e:
        raise CertificateError(f"certificate signing request: not a PEM CSR ({e})") from e
    if not csr.is_signature_valid:
        raise CertificateError("certificate signing request: its signature does not match its key")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp256r1":
        raise CertificateError("certificate signing request: the key must be ECDSA P-256")
    return public_key


def identity_of(cert: x509.Certificate) -> Identity | None:
    """The identity a client certificate of this cluster speaks for (None: not a client certificate)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(cns) != 1 or len(orgs) != 1:
        return None
    return identity_from_names(str(cns[0].value), str(orgs[0].value))


@dataclass(frozen=True)
class Peer:
    """A verified client certificate's subject, as a server sees it."""

    identity: Identity
    # Unix time the certificate was issued.
    issued_at: float


def peer_of_subject(subject: str) -> Peer | None:
    """Read ``"serialNumber=…,O=system:nodes,CN=system:node:n1"`` (RFC 4514, as gRPC reports a
    verified peer): None when it is not a client certificate this cluster issues."""
    fields: dict[str, list[str]] = {}
    try:
        name = x509.Name.from_rfc4514_string(subject, {"serialNumber": NameOID.SERIAL_NUMBER})
    except ValueError:
        return None
    for attribute in name:
        fields.setdefault(attribute.oid.dotted_string, []).append(str(attribute.value))
    cns = fields.get(NameOID.COMMON_NAME.dotted_string, [])
    orgs = fields.get(NameOID.ORGANIZATION_NAME.dotted_string, [])
    serials = fields.get(NameOID.SERIAL_NUMBER.dotted_string, [])
    if len(cns) != 1 or len(orgs) != 1 or len(serials) != 1 or not serials[0].isdigit():
        return None
    identity = identity_from_names(cns[0], orgs[0])
    if identity is None:
        return None
    return Peer(identity, int(serials[0]) / 1_000_000)


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def renew_at(cert: x509.Certificate) -> dt.datetime:
    """When a holder renews: at two thirds of the certificate's lifetime, counted from its issue
    (not from its back-dated start, which would make a short-lived certificate due at once)."""
    return renewal_time(cert.not_valid_before_utc, cert.not_valid_after_utc)
