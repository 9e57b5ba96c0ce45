"""The one step a joining client takes before it trusts the server: fetch the
certificate chain the server presents on its join port, without verifying it,
and keep the CA only if its hash is the one the join token pins.

Only then does the client open a verified TLS channel (to that CA) and send
the token's secret. A server presenting another CA gets nothing.
"""

from __future__ import annotations

import _ssl
import socket
import ssl

from cryptography import x509

from corral.common.pki.certs import CertificateError, fingerprint
from corral.common.pki.endpoints import split_address


class CaMismatchError(Exception):
    """The server presents a CA other than the one the token pins: nothing was sent."""


def presented_chain(address: str, timeout: float = 10.0, default_port: int = 7444) -> list[x509.Certificate]:
    """Every certificate the TLS server at ``address`` presents, unverified (OSError when unreachable)."""
    host, port = split_address(address, default_port)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=None) as tls,
    ):
        sslobj = tls._sslobj  # type: ignore[attr-defined]  # public as get_unverified_chain() from 3.13
        chain = sslobj.get_unverified_chain() or []
        der = int(_ssl.ENCODING_DER)
        return [x509.load_der_x509_certificate(c.public_bytes(der)) for c in chain]


def fetch_ca(address: str, ca_hash: str, timeout: float = 10.0) -> x509.Certificate:
    """The CA certificate the server at ``address`` presents, checked against ``ca_hash``."""
    chain = presented_chain(address, timeout)
    for cert in chain:
        if fingerprint(cert) == ca_hash:
            return cert
    if not chain:
        raise CertificateError(f"the server at {address} presented no certificate")
    shown = fingerprint(chain[-1])
    raise CaMismatchError(
        f"the server at {address} presents CA sha256:{shown[:16]}…, the join token pins "
        f"sha256:{ca_hash[:16]}…: refusing to send credentials (wrong server, or a token of another cluster)"
    )
