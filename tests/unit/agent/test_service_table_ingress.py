"""The node's table keeps the ingress routes from the stream, tells the ingress
listeners, and saves them (owner-only: they hold TLS keys) for a restart."""

from __future__ import annotations

import stat
from pathlib import Path

from agent.network.routes import ServiceTable
from protos.corral.v1 import ingress_pb2, node_service_pb2


class Seen:
    def __init__(self) -> None:
        self.tables: list[ingress_pb2.IngressRoutes] = []

    def update_ingress(self, ingress: ingress_pb2.IngressRoutes) -> None:
        self.tables.append(ingress)


def test_ingress_is_applied_saved_and_resumed(tmp_path: Path) -> None:
    seen = Seen()
    state = tmp_path / "services.pb"
    table = ServiceTable(state_file=state, ingress_listeners=[seen])
    routes = ingress_pb2.IngressRoutes()
    routes.hosts.add(host="a.test")
    routes.certificates.add(secret="default/a", key_pem=b"KEY")
    table.apply(node_service_pb2.ServiceRoutes(full=True, ingress=routes))
    table.apply(node_service_pb2.ServiceRoutes(removed=["default/x"]))  # no ingress: unchanged, not re-sent
    assert seen.tables == [routes]
    table._save()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    again = Seen()
    resumed = ServiceTable(state_file=state, ingress_listeners=[again])
    resumed.resume()
    assert again.tables == [routes] and resumed.ingress == routes
