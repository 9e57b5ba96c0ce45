"""The cluster's certificates: who they name, what signs them, when they renew."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from corral.common.pki import certs
from corral.common.pki.certs import CertificateError, Identity, Role
from corral.common.pki.credentials import Credentials

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


CA = tuple[certs.PrivateKey, x509.Certificate]


@pytest.fixture(scope="module")
def ca() -> CA:
    return certs.create_ca(NOW)


def test_client_certificate_names_the_identity_and_its_issue_time(ca: CA) -> None:
    key = certs.new_key()
    cert = certs.issue_client(*ca, key.public_key(), Identity(Role.NODE, "n1"), NOW, dt.timedelta(days=30))
    assert certs.identity_of(cert) == Identity(Role.NODE, "n1")
    assert certs.signed_by(cert, ca[1])
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=30)
    # gRPC hands a server the subject in RFC 4514 form: that is enough to know who and when.
    peer = certs.peer_of_subject(cert.subject.rfc4514_string({x509.NameOID.SERIAL_NUMBER: "serialNumber"}))
    assert peer is not None
    assert peer.identity == Identity(Role.NODE, "n1")
    assert peer.issued_at == NOW.timestamp()


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param(Identity(Role.ADMIN, "alice"), id="admin"),
        pytest.param(Identity(Role.CONTROLPLANE, "host1:42:10.0.0.1:7443"), id="control-plane replica"),
    ],
)
def test_every_role_reads_back_from_its_subject(ca: CA, identity: Identity) -> None:
    cert = certs.issue_client(*ca, certs.new_key().public_key(), identity, NOW, dt.timedelta(days=1))
    assert certs.identity_of(cert) == identity
    peer = certs.peer_of_subject(cert.subject.rfc4514_string({x509.NameOID.SERIAL_NUMBER: "serialNumber"}))
    assert peer is not None and peer.identity == identity


def test_a_certificate_never_outlives_its_ca(ca: CA) -> None:
    key = certs.new_key()
    cert = certs.issue_client(*ca, key.public_key(), Identity(Role.ADMIN, "ops"), NOW, dt.timedelta(days=99999))
    assert cert.not_valid_after_utc == ca[1].not_valid_after_utc


def test_serving_certificate_carries_the_name_clients_check(ca: CA) -> None:
    _, cert = certs.issue_serving(*ca, ["10.0.0.5", "box.lan"], NOW)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert certs.SERVER_NAME in names.get_values_for_type(x509.DNSName)
    assert "box.lan" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    # A serving certificate is no client identity.
    assert certs.identity_of(cert) is None


def test_another_ca_does_not_verify(ca: CA) -> None:
    other_key, other = certs.create_ca(NOW)
    cert = certs.issue_client(
        other_key, other, certs.new_key().public_key(), Identity(Role.NODE, "n1"), NOW, dt.timedelta(days=1)
    )
    assert not certs.signed_by(cert, ca[1])
    assert certs.fingerprint(other) != certs.fingerprint(ca[1])


@pytest.mark.parametrize(
    "subject",
    [
        "O=system:nodes,CN=system:node:n1",  # no issue time
        "serialNumber=12,O=system:masters,CN=",  # no name
        "serialNumber=12,O=corral,CN=system:node:n1",  # not a client group
        "serialNumber=12,O=system:nodes,CN=n1",  # node group without the node prefix
        "serialNumber=x,O=system:nodes,CN=system:node:n1",
        "not a subject",
        "",
    ],
)
def test_subjects_that_are_no_corral_client(subject: str) -> None:
    assert certs.peer_of_subject(subject) is None


def test_csr_proves_the_key_and_only_p256_is_taken() -> None:
    key = certs.new_key()
    csr = certs.make_csr(key, Identity(Role.NODE, "n1"))
    assert certs.csr_public_key(csr) == key.public_key()
    with pytest.raises(CertificateError, match="not a PEM CSR"):
        certs.csr_public_key(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    p384 = ec.generate_private_key(ec.SECP384R1())
    other = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(p384, hashes.SHA256())
        .public_bytes(Encoding.PEM)
    )
    with pytest.raises(CertificateError, match="P-256"):
        certs.csr_public_key(other)


def test_renewal_is_due_at_two_thirds_of_the_lifetime(ca: CA) -> None:
    cert = certs.issue_client(*ca, certs.new_key().public_key(), Identity(Role.NODE, "n1"), NOW, dt.timedelta(days=30))
    assert certs.renew_at(cert) == NOW + dt.timedelta(days=20)
    short = certs.issue_client(
        *ca, certs.new_key().public_key(), Identity(Role.NODE, "n1"), NOW, dt.timedelta(seconds=3)
    )
    assert certs.renew_at(short) == NOW + dt.timedelta(seconds=2)


def test_saved_credentials_are_private_and_checked(tmp_path: Path, ca: CA) -> None:
    key = certs.new_key()
    cert = certs.issue_client(*ca, key.public_key(), Identity(Role.NODE, "n1"), NOW, dt.timedelta(days=1))
    good = Credentials(certs.cert_pem(ca[1]), certs.cert_pem(cert), certs.key_pem(key))
    good.save(tmp_path / "pki")
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700
    assert {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "pki").iterdir()} == {
        "ca.crt": 0o600,
        "client.crt": 0o600,
        "client.key": 0o600,
    }
    assert Credentials.load(tmp_path / "pki") == good
    assert Credentials.load(tmp_path / "missing") is None
    # A key that is not the certificate's is refused on load, not at the first handshake.
    Credentials(good.ca, good.cert, certs.key_pem(certs.new_key())).save(tmp_path / "bad")
    with pytest.raises(CertificateError, match="does not match"):
        Credentials.load(tmp_path / "bad")
