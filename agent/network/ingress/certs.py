"""The ingress proxy's TLS: one `ssl.SSLContext` per certificate, chosen by SNI.

The listening context serves the default certificate (self-signed, made at
start: "corral ingress default certificate", as ingress-nginx's "Kubernetes
Ingress Controller Fake Certificate"); its SNI callback switches the
connection to the context of the certificate whose hosts match the name.
`update(routes)` builds contexts for new certificates (kept by content, so an
unchanged Secret is not reloaded) and drops the ones gone; connections
already set up keep theirs. A certificate that does not load is logged
(`ingress_certificate_invalid`) and its hosts get the default one. ALPN
offers http/1.1 only (the HTTP stack serves no HTTP/2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable

import structlog

from corral.common.pki.certs import cert_pem, key_pem, self_signed
from protos.corral.v1 import ingress_pb2

log = structlog.get_logger(__name__)

DEFAULT_NAME = "corral ingress default certificate"
ALPN = ["http/1.1"]


def new_context(cert: bytes, key: bytes) -> ssl.SSLContext:
    """A server context for a PEM certificate chain and key (ssl.SSLError when they do not load)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(ALPN)
    # The ssl module loads only from files: a private temp dir, removed at once.
    with tempfile.TemporaryDirectory(prefix="corral-tls-") as folder:
        os.chmod(folder, 0o700)
        cert_file, key_file = os.path.join(folder, "tls.crt"), os.path.join(folder, "tls.key")
        for path, data in ((cert_file, cert), (key_file, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert_file, key_file)
    return context


def default_certificate(now: dt.datetime) -> tuple[bytes, bytes]:
    key, cert = self_signed(DEFAULT_NAME, [], now)
    return cert_pem(cert), key_pem(key)


class TlsContexts:
    def __init__(self, pick: Callable[[str], str | None], *, now: dt.datetime | None = None) -> None:
        """`pick(server_name)`: the Secret whose certificate serves that name, or None."""
        self._pick = pick
        cert, key = default_certificate(now or dt.datetime.now(dt.UTC))
        self.default = new_context(cert, key)
        self.default.sni_callback = self._on_sni
        self._contexts: dict[str, tuple[str, ssl.SSLContext]] = {}
        self._without: set[str] = set()

    def update(self, routes: ingress_pb2.IngressRoutes) -> None:
        fresh: dict[str, tuple[str, ssl.SSLContext]] = {}
        for certificate in routes.certificates:
            digest = hashlib.sha256(certificate.cert_pem + b"\0" + certificate.key_pem).hexdigest()
            known = self._contexts.get(certificate.secret)
            if known is not None and known[0] == digest:
                fresh[certificate.secret] = known
                continue
            try:
                fresh[certificate.secret] = (digest, new_context(certificate.cert_pem, certificate.key_pem))
            except (ssl.SSLError, ValueError) as e:
                log.warning(
                    "ingress_certificate_invalid",
                    secret=certificate.secret,
                    hosts=list(certificate.hosts),
                    reason=str(e),
                    message=f"Secret {certificate.secret} does not hold a usable certificate and key: "
                    "its hosts get the default self-signed certificate",
                )
                continue
            log.info("ingress_certificate_loaded", secret=certificate.secret, hosts=list(certificate.hosts))
        self._contexts = fresh
        without = set(routes.hosts_without_certificate)
        for host in sorted(without - self._without):
            message = "no usable TLS Secret: the self-signed default certificate serves it"
            log.warning("ingress_default_certificate", host=host, message=message)
        self._without = without

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        secret = self._pick(server_name or "")
        entry = self._contexts.get(secret) if secret else None
        return entry[1] if entry is not None else self.default

    def _on_sni(self, sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        context = self.context_for(server_name)
        if context is not self.default:
            sock.context = context
