"""Wording of network errors, shared by the HTTP and TCP probes.

Messages follow Go's net package, which is what Kubernetes prints:
`dial tcp 127.0.0.1:81: connection refused`, `dial tcp: lookup nohost: Name or
service not known`.
"""

from __future__ import annotations

import os
import socket
import ssl


def join_host_port(host: str, port: int) -> str:
    """`host:port`, with IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def describe_error(exc: BaseException) -> str:
    """A short lower-case reason: "connection refused", "connection reset by peer"."""
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or exc}".lower()
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    text = str(exc)
    return text if text else type(exc).__name__


def dial_error(host: str, port: int, exc: BaseException) -> str:
    """Why connecting to host:port failed."""
    if isinstance(exc, socket.gaierror):
        return f"dial tcp: lookup {host}: {exc.strerror or exc}"
    return f"dial tcp {join_host_port(host, port)}: {describe_error(exc)}"
