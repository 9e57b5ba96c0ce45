"""Credentials for tests: a cluster's admin and node certificates, and TLS for
fake servers, so every test talks to servers the way real clients do (mutual
TLS, the cluster CA checked)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import grpc

from agent.node.credentials import NodeCredentials
from controlplane.auth.ca import ClusterCA
from controlplane.server import RunningServer
from corral.common.pki.certs import DEFAULT_NODE_LIFETIME, Identity, Role
from corral.common.pki.credentials import Credentials, channel_options


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def admin_of(running: RunningServer) -> Credentials:
    assert running.admin is not None
    return running.admin


def node_of(running: RunningServer | ClusterCA, name: str) -> Credentials:
    """A node certificate for ``name`` from the server's CA (as a join would give it)."""
    ca = running if isinstance(running, ClusterCA) else running.ca
    assert ca is not None
    return ca.client_credentials(Identity(Role.NODE, name), now(), DEFAULT_NODE_LIFETIME)


def aio_channel(address: str, credentials: Credentials, **kwargs: Any) -> grpc.aio.Channel:
    options = [*kwargs.pop("options", []), *channel_options()]
    return grpc.aio.secure_channel(address, credentials.channel_credentials(), options=options, **kwargs)


class TestCluster:
    """A CA for a fake server: its serving credentials and clients' credentials."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.ca = ClusterCA.ephemeral(now())

    def add_port(self, server: grpc.aio.Server | grpc.Server, address: str = "127.0.0.1:0") -> int:
        """Serve ``server`` on ``address`` with mutual TLS (as the control plane does); the port."""
        serving = self.ca.serving(["127.0.0.1"], now())
        credentials = grpc.ssl_server_credentials(
            [(serving.key, serving.chain)], root_certificates=self.ca.pem, require_client_auth=True
        )
        return server.add_secure_port(address, credentials)

    def admin(self) -> Credentials:
        return self.ca.admin_credentials(now())

    def node(self, name: str) -> Credentials:
        return node_of(self.ca, name)


def node_identity(credentials: Credentials, data_dir: Path) -> NodeCredentials:
    """An agent identity that already holds ``credentials`` (a node certificate), as after a join."""
    identity = credentials.identity()
    assert identity is not None
    node = NodeCredentials(identity.name, data_dir, join_addresses=[])
    node.adopt(credentials)
    return node
