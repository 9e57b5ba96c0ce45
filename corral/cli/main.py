"""The `corral` command line: a kubectl-shaped client plus the server command.

Every user mistake ends as one clear message and a non-zero exit, never a
traceback: the errors each command can meet are caught in `main`.
"""

from __future__ import annotations

import importlib
import sys

import click

from corral.cli.context import Context

# Commands load on first use, so `corral agent` does not carry the manifest
# reader and `corral get` does not carry the agent.
COMMANDS = {
    "apply": "corral.cli.resources:apply_cmd",
    "get": "corral.cli.resources:get_cmd",
    "describe": "corral.cli.resources:describe_cmd",
    "delete": "corral.cli.resources:delete_cmd",
    "create": "corral.cli.create:create_group",
    "logs": "corral.cli.logs_cmd:logs_cmd",
    "server": "corral.cli.server:server_cmd",
    "backup": "corral.cli.backup:backup_cmd",
    "agent": "corral.cli.agent_cmd:agent_cmd",
    "up": "corral.cli.up:up_cmd",
    "rollout": "corral.cli.rollout:rollout_group",
    "scale": "corral.cli.rollout:scale_cmd",
    "autoscale": "corral.cli.autoscale:autoscale_cmd",
    "set": "corral.cli.rollout:set_group",
    "cordon": "corral.cli.nodes:cordon_cmd",
    "uncordon": "corral.cli.nodes:uncordon_cmd",
    "drain": "corral.cli.nodes:drain_cmd",
    "top": "corral.cli.top:top_group",
    "token": "corral.cli.auth:token_group",
    "node": "corral.cli.auth:node_group",
    "login": "corral.cli.auth:login_cmd",
    "status": "corral.cli.status:status_cmd",
    "wait": "corral.cli.wait:wait_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--server",
    "-s",
    envvar=None,
    help="API server host:port, or several replicas a:7443,b:7443 "
    "(default: $CORRAL_SERVER, then the config file, then 127.0.0.1:7443).",
)
@click.pass_context
def cli(ctx: click.Context, server: str | None) -> None:
    """corral: run containers on machines you own."""
    ctx.obj = Context(server_flag=server)


def _user_error(e: Exception) -> bool:
    """Print a user-facing error for the failures every command can meet; False if not one."""
    from corral import client
    from corral.cli import config
    from corral.manifest import ManifestError
    from protos.kinds import UnknownKindError

    if isinstance(e, ManifestError):
        for problem in e.problems:
            click.echo(f"error: {problem}", err=True)
    elif isinstance(e, client.InvalidError):
        click.echo(f"error: {e}", err=True)
        for cause in e.causes:
            click.echo(f"  {cause}", err=True)
    elif isinstance(e, client.ClientError | config.ConfigError | UnknownKindError):
        click.echo(f"error: {e}", err=True)
    else:
        return False
    return True


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as e:
        if not _user_error(e):
            raise
        sys.exit(1)


if __name__ == "__main__":
    main()
