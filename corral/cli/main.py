"""The `corral` command line: a kubectl-shaped client plus the server command.

Every user mistake ends as one clear message and a non-zero exit, never a
traceback: the errors each command can meet are caught in `main`.
"""

from __future__ import annotations

import sys

import click

from corral import client
from corral.cli import agent_cmd, config, logs_cmd, resources
from corral.cli.context import Context
from corral.manifest import ManifestError
from protos.kinds import UnknownKindError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--server", "-s", envvar=None, help="API server host:port "
              "(default: $CORRAL_SERVER, then the config file, then 127.0.0.1:7443).")
@click.pass_context
def cli(ctx: click.Context, server: str | None) -> None:
    """corral: run containers on machines you own."""
    ctx.obj = Context(server_flag=server)


cli.add_command(resources.apply_cmd)
cli.add_command(resources.get_cmd)
cli.add_command(resources.describe_cmd)
cli.add_command(resources.delete_cmd)
cli.add_command(agent_cmd.agent_cmd)
cli.add_command(logs_cmd.logs_cmd)


@cli.command("server")
@click.option("--listen", default="127.0.0.1:7443", show_default=True,
              help="Address the API listens on.")
@click.option("--etcd", default="", help="External etcd endpoints host:port[,host:port…]. "
              "Without it, an embedded etcd runs under --data-dir.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="State directory (embedded etcd data). Default: ~/.local/share/corral.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def server_cmd(listen: str, etcd: str, data_dir: str | None, log_level: str) -> None:
    """Run the control plane."""
    from corral.cli.server import run_server  # the control plane is heavy: load it on demand

    run_server(listen=listen, etcd=etcd, data_dir=data_dir, log_level=log_level)


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
    except ManifestError as e:
        for problem in e.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    except client.InvalidError as e:
        click.echo(f"error: {e}", err=True)
        for cause in e.causes:
            click.echo(f"  {cause}", err=True)
        sys.exit(1)
    except (client.ClientError, config.ConfigError, UnknownKindError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
