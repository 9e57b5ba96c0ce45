"""The verified identity behind a call on the API port (mutual TLS)."""

from __future__ import annotations

import functools
from typing import Any, NoReturn

import grpc

from corral.common.pki.certs import Peer, Role, peer_of_subject

Context = grpc.aio.ServicerContext[Any, Any]


@functools.lru_cache(maxsize=4096)
def _peer(subject: bytes) -> Peer | None:
    return peer_of_subject(subject.decode("utf-8", "replace"))


def peer_of(context: Context) -> Peer | None:
    """The client certificate's identity (gRPC has verified it against the cluster CA), or None."""
    subjects = list(context.auth_context().get("x509_subject") or [])
    return _peer(subjects[0]) if len(subjects) == 1 else None


async def deny(context: Context, message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
    raise AssertionError("abort raises")


async def require_node(context: Context, node_name: str) -> None:
    """Refuse (PERMISSION_DENIED) unless the caller holds the certificate of node ``node_name``."""
    peer = peer_of(context)
    if peer is None or peer.identity.role is not Role.NODE:
        await deny(context, "only a node's certificate may call the node API")
    if peer.identity.name != node_name:
        await deny(context, f'the certificate of node "{peer.identity.name}" cannot act for node "{node_name}"')
