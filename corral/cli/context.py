"""What every CLI command shares: the resolved server address and a client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from corral.cli.config import resolve_credentials, resolve_server

if TYPE_CHECKING:  # the client loads with the first command that needs it (`corral agent` never does)
    from corral.client import Client


@dataclass
class Context:
    server_flag: str | None
    _client: Client | None = field(default=None, init=False)

    def client(self) -> Client:
        from corral.client import Client

        if self._client is None:
            self._client = Client(resolve_server(self.server_flag).address, resolve_credentials())
        return self._client
