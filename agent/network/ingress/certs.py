"""The ingress' certificates: which of the table's Secrets Caddy can load, and the default one.

Caddy refuses a whole config when one certificate does not load, so each is checked
here first (a PEM chain, a private key, the key matching the first certificate); one that
fails is logged (`ingress_certificate_invalid`) and left out: its hosts get the default
certificate (self-signed, made at start: "corral ingress default certificate", as
ingress-nginx's "Kubernetes Ingress Controller Fake Certificate"). Checks are kept by
content, so an unchanged Secret is neither checked nor logged again. The keys stay in
memory and in Caddy's running config: nothing is written to disk.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from corral.common.pki.certs import cert_pem, key_pem, self_signed
from protos.corral.v1 import ingress_pb2

log = structlog.get_logger(__name__)

DEFAULT_NAME = "corral ingress default certificate"


def default_certificate(now: dt.datetime) -> tuple[bytes, bytes]:
    key, cert = self_signed(DEFAULT_NAME, [], now)
    return cert_pem(cert), key_pem(key)


def problem(cert: bytes, key: bytes) -> str | None:
    """Why a PEM certificate chain and key cannot serve (None: they can)."""
    try:
        chain = x509.load_pem_x509_certificates(cert)
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as e:
        return str(e) or type(e).__name__
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    ours = private.public_key().public_bytes(serialization.Encoding.DER, public)
    if chain[0].public_key().public_bytes(serialization.Encoding.DER, public) != ours:
        return "the key does not match the certificate"
    return None


def _digest(certificate: ingress_pb2.IngressCertificate) -> str:
    return hashlib.sha256(certificate.cert_pem + b"\0" + certificate.key_pem).hexdigest()


class Certificates:
    """The usable certificates of the latest table, and the events about them."""

    def __init__(self) -> None:
        self._checked: dict[str, tuple[str, bool]] = {}  # secret → (digest, usable)
        self._without: set[str] = set()

    def usable(self, routes: ingress_pb2.IngressRoutes) -> list[ingress_pb2.IngressCertificate]:
        checked: dict[str, tuple[str, bool]] = {}
        usable = []
        for certificate in routes.certificates:
            digest = _digest(certificate)
            known = self._checked.get(certificate.secret)
            if known is not None and known[0] == digest:
                ok = known[1]
            else:
                reason = problem(certificate.cert_pem, certificate.key_pem)
                ok = reason is None
                if reason is not None:
                    log.warning(
                        "ingress_certificate_invalid",
                        secret=certificate.secret,
                        hosts=list(certificate.hosts),
                        reason=reason,
                        message=f"Secret {certificate.secret} does not hold a usable certificate and key: "
                        "its hosts get the default self-signed certificate",
                    )
                else:
                    log.info("ingress_certificate_loaded", secret=certificate.secret, hosts=list(certificate.hosts))
            checked[certificate.secret] = (digest, ok)
            if ok:
                usable.append(certificate)
        self._checked = checked
        without = set(routes.hosts_without_certificate)
        for host in sorted(without - self._without):
            message = "no usable TLS Secret: the self-signed default certificate serves it"
            log.warning("ingress_default_certificate", host=host, message=message)
        self._without = without
        return usable
