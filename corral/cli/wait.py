"""`corral wait`: block until objects meet a condition or are gone, as `kubectl wait`.

corral wait --for=condition=complete job/pi --timeout=2m
corral wait --for=condition=Ready=false pod/web-1
corral wait --for=delete job/pi
corral wait --for=condition=available deploy -l app=web

The condition's type is matched without regard to case, its status is True
unless `=VALUE` says otherwise. Each object met prints `job.batch/pi
condition met` (or `deleted`); a timeout (default 30 s, 0: look once, a
negative value: a week) is an error naming the object, exit 1. Objects are
read again every half second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
from google.protobuf.message import Message

from corral import client as api
from corral.cli.context import Context
from corral.cli.params import Duration
from corral.cli.resources import object_ref, parse_targets
from protos.kinds import KindInfo, meta
from protos.wellknown import DEFAULT_NAMESPACE

pass_context = click.make_pass_decorator(Context)

POLL_SECONDS = 0.5
WEEK = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Wanted:
    """What --for asks: a condition (type, status) or deletion (condition None)."""

    condition: tuple[str, str] | None

    @classmethod
    def parse(cls, text: str) -> Wanted:
        if text.lower() == "delete":
            return cls(None)
        kind, _, rest = text.partition("=")
        if kind.lower() != "condition" or not rest:
            raise click.BadParameter(
                f'"{text}": use condition=TYPE, condition=TYPE=VALUE or delete', param_hint="--for"
            )
        type_, _, value = rest.partition("=")
        return cls((type_, value or "True"))

    def met(self, obj: Message) -> bool:
        assert self.condition is not None
        type_, value = self.condition
        status = getattr(obj, "status", None)
        for c in getattr(status, "conditions", ()):
            if c.type.lower() == type_.lower():
                return bool(c.status.lower() == value.lower())
        return False


@click.command("wait")
@click.argument("kind")
@click.argument("names", nargs=-1)
@click.option("--for", "for_", required=True, help="condition=TYPE[=VALUE] or delete.")
@click.option("--timeout", type=Duration(), default="30s", show_default=True, help="How long to wait (e.g. 90s, 5m).")
@click.option("--namespace", "-n", default="", help="Namespace (default: default).")
@click.option("--selector", "-l", default="", help="Wait for every object of KIND these labels select.")
@click.option("--all", "all_", is_flag=True, help="Wait for every object of KIND in the namespace.")
@pass_context
def wait_cmd(
    ctx: Context,
    kind: str,
    names: tuple[str, ...],
    for_: str,
    timeout: float,
    namespace: str,
    selector: str,
    all_: bool,
) -> None:
    """Wait for KIND/NAME, KIND NAME…, or KIND -l SELECTOR (--all) to meet --for."""
    wanted = Wanted.parse(for_)
    ns = namespace or DEFAULT_NAMESPACE
    c = ctx.client()
    targets = parse_targets(kind, names)
    named = [(info, name) for info, name in targets if name is not None]
    if not named:
        if not (selector or all_):
            raise click.UsageError("name the objects (KIND/NAME), or give --selector or --all")
        info = targets[0][0]
        listed, _ = c.list(info.kind, ns, selector=selector)
        named = [(info, meta(o).name) for o in listed]
        if not named:
            raise click.ClickException("no matching resources found")
    deadline = time.monotonic() + (WEEK if timeout < 0 else timeout)
    for info, name in named:
        _wait_one(c, info, name, ns, wanted, deadline)


def _wait_one(c: api.Client, info: KindInfo, name: str, ns: str, wanted: Wanted, deadline: float) -> None:
    while True:
        try:
            obj: Message | None = c.get(info.kind, name, ns)
        except api.NotFoundError:
            obj = None
        if wanted.condition is None and obj is None:
            click.echo(f"{object_ref(info, name)} deleted")
            return
        if obj is None:
            raise click.ClickException(f'{info.resource} "{name}" not found')
        if wanted.condition is not None and wanted.met(obj):
            click.echo(f"{object_ref(info, name)} condition met")
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise click.ClickException(f"timed out waiting for the condition on {info.plural}/{name}")
        time.sleep(min(POLL_SECONDS, left))
