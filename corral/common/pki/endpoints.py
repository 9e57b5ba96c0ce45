"""Where a server's ports are: ``host:port`` parsing and the join port next to the API port."""

from __future__ import annotations

DEFAULT_API_PORT = 7443


def split_address(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address.strip("[]"), default_port
    if not port.isdigit():
        raise ValueError(f'"{address}": the port must be a number')
    return host.strip("[]") or "127.0.0.1", int(port)


def join_address_for(server: str) -> str:
    """The join port of the server at ``host:port``: the next port (``host:7444`` for ``host:7443``)."""
    host, port = split_address(server, DEFAULT_API_PORT)
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port + 1}"
