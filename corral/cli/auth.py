"""`corral token create|list|revoke`, `corral node revoke` and `corral login`.

A join token lets an agent join the cluster (role node) or a CLI user get an
admin certificate (role admin, with `corral login`); it pins the cluster CA,
so it is refused by any other server before its secret is sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket

import click
from google.protobuf.timestamp_pb2 import Timestamp

from corral.cli.config import ConfigError, resolve_server, write_config
from corral.cli.context import Context
from corral.cli.params import WholeDuration
from corral.cli.printers import format_table
from corral.client import split_servers
from corral.common.pki.certs import Role
from corral.common.pki.join import JoinError, join, join_address_for
from corral.common.pki.tokens import TokenFormatError, parse_token


def _when(stamp: Timestamp, now: dt.datetime) -> str:
    at = stamp.ToDatetime(dt.UTC)
    left = at - now
    text = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if left.total_seconds() <= 0:
        return f"{text} (expired)"
    minutes = int(left.total_seconds() // 60)
    hours = minutes // 60
    if hours >= 24:
        return f"{text} ({hours // 24}d{hours % 24}h left)"
    return f"{text} ({hours}h{minutes % 60}m left)" if hours else f"{text} ({minutes}m left)"


@click.group("token")
def token_group() -> None:
    """Join tokens: let agents (or admins, with `corral login`) into the cluster."""


@token_group.command("create")
@click.option(
    "--ttl",
    type=WholeDuration(),
    default="24h",
    show_default=True,
    help="How long the token can be used, a duration such as 24h, 7d or 1h30m (0: never expires).",
)
@click.option(
    "--role",
    type=click.Choice(["node", "agent", "admin"]),
    default="node",
    show_default=True,
    help="node (agent is the same): joins an agent; admin: `corral login` gets an admin certificate.",
)
@click.option("--description", default="", help="A note shown by `token list`.")
@click.pass_obj
def token_create(ctx: Context, ttl: int, role: str, description: str) -> None:
    """Create a join token and print it (it is shown only once)."""
    response = ctx.client().create_token("node" if role == "agent" else role, ttl, description)
    click.echo(response.token)
    server = resolve_server(ctx.server_flag).address
    first = split_servers(server)[0] if split_servers(server) else server
    if role == "admin":
        click.echo(f"# use: corral login --server {first} --token <the token above>", err=True)
    else:
        click.echo(
            f"# use: corral agent --server {server} --token <the token above>  (join port: {join_address_for(first)})",
            err=True,
        )


@token_group.command("list")
@click.pass_obj
def token_list(ctx: Context) -> None:
    """The cluster's join tokens (never their secrets)."""
    now = dt.datetime.now(dt.UTC)
    rows = []
    for info in ctx.client().list_tokens():
        status = (
            "revoked"
            if info.revoked
            else ("expired" if info.HasField("expires") and info.expires.ToDatetime(dt.UTC) <= now else "valid")
        )
        expires = _when(info.expires, now) if info.HasField("expires") else "never"
        rows.append([info.id, info.role, status, expires, info.description])
    click.echo(format_table(rows, ["ID", "ROLE", "STATUS", "EXPIRES", "DESCRIPTION"]))


@token_group.command("revoke")
@click.argument("token_id")
@click.pass_obj
def token_revoke(ctx: Context, token_id: str) -> None:
    """Revoke a join token: nothing can join with it any more (nodes that joined keep their certificates;
    `corral node revoke` cuts those off)."""
    info = ctx.client().revoke_token(token_id)
    click.echo(f"token {info.id} revoked")


@click.group("node")
def node_group() -> None:
    """Node credentials."""


@node_group.command("revoke")
@click.argument("name")
@click.pass_obj
def node_revoke(ctx: Context, name: str) -> None:
    """Refuse every certificate issued to node NAME so far and close its open streams.
    The node can join again only with a (new) join token."""
    response = ctx.client().revoke_node(name)
    at = response.revoked_before.ToDatetime(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    click.echo(f"node {name}: certificates issued before {at} revoked")


@click.command("login")
@click.option("--token", required=True, help="An admin join token (`corral token create --role admin`).")
@click.option(
    "--join",
    "join_address",
    default=None,
    metavar="HOST:PORT",
    help="The server's join port (default: the --server port + 1).",
)
@click.option("--user", default=None, help="Your user name in the certificate (default: $USER@hostname).")
@click.pass_obj
def login_cmd(ctx: Context, token: str, join_address: str | None, user: str | None) -> None:
    """Get an admin certificate with a token and write it, with the server, to the CLI config."""
    try:
        parsed = parse_token(token)
    except TokenFormatError as e:
        raise click.BadParameter(str(e), param_hint="--token") from e
    server = resolve_server(ctx.server_flag).address
    servers = split_servers(server) or [server]
    name = user or f"{_user()}@{socket.gethostname()}"
    try:
        credentials = asyncio.run(join(join_address or join_address_for(servers[0]), parsed, name, role=Role.ADMIN))
    except JoinError as e:
        raise click.ClickException(str(e)) from e
    try:
        path = write_config(server, credentials)
    except OSError as e:
        raise ConfigError(f"cannot write the CLI config: {e}") from e
    click.echo(f"logged in to {server} as {name}; credentials written to {path}")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "admin"
