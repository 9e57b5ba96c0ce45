"""`corral apply | get | describe | delete`: the kubectl-shaped commands."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import UTC, datetime

import click
from google.protobuf.message import Message

from corral import client as api
from corral.cli import describe as describing
from corral.cli import endpoints, printers
from corral.cli.context import Context
from corral.manifest import ManifestError, ParsedObject, Problem, load_names, load_objects
from protos.kinds import KindInfo, info_of, meta, resolve
from protos.wellknown import DEFAULT_NAMESPACE

pass_context = click.make_pass_decorator(Context)

namespace_option = click.option("--namespace", "-n", default="", help="Namespace (default: default).")
filename_option = click.option(
    "--filename",
    "-f",
    "filenames",
    multiple=True,
    required=True,
    help="A manifest file, a folder of them, or - for stdin. Repeatable.",
)
recursive_option = click.option("--recursive", "-R", is_flag=True, help="Read folders given with -f recursively.")


def object_ref(info: KindInfo, name: str) -> str:
    """`deployment.apps/example-app`, as kubectl prints it."""
    return f"{info.resource}/{name}"


def _load(filenames: Iterable[str], namespace: str, recursive: bool) -> list[ParsedObject]:
    objects = load_objects(list(filenames), stdin=sys.stdin.buffer, recursive=recursive)
    problems: list[Problem] = []
    for parsed in objects:
        m = meta(parsed.message)
        if not parsed.info.namespaced:
            continue
        if namespace and m.namespace and m.namespace != namespace:
            problems.append(
                Problem(
                    parsed.source,
                    parsed.index,
                    "metadata.namespace",
                    f'"{m.namespace}" does not match --namespace "{namespace}"',
                )
            )
        elif namespace and not m.namespace:
            m.namespace = namespace
    if problems:
        raise ManifestError(problems)
    for parsed in objects:
        for warning in parsed.warnings:
            click.echo(f"Warning: {warning}", err=True)
    return objects


def _server_check(c: api.Client, objects: list[ParsedObject]) -> None:
    """Dry-run every object first, so that one bad document writes nothing at all."""
    problems: list[Problem] = []
    for parsed in objects:
        try:
            c.apply(parsed.message, dry_run=True)
        except api.InvalidError as e:
            causes = e.causes or [api.FieldCause("", str(e))]
            problems += [Problem(parsed.source, parsed.index, x.field, x.message) for x in causes]
        except (api.ConflictError, api.AlreadyExistsError, api.NotFoundError, api.PermissionDeniedError) as e:
            problems.append(Problem(parsed.source, parsed.index, "", str(e)))
    if problems:
        raise ManifestError(problems)


@click.command("apply")
@filename_option
@namespace_option
@recursive_option
@click.option("--dry-run", is_flag=True, help="Validate on the server and report; write nothing.")
@pass_context
def apply_cmd(ctx: Context, filenames: tuple[str, ...], namespace: str, recursive: bool, dry_run: bool) -> None:
    """Create or update objects from manifests."""
    objects = _load(filenames, namespace, recursive)
    c = ctx.client()
    _server_check(c, objects)
    for parsed in objects:
        result = c.apply(parsed.message, dry_run=dry_run)
        suffix = " (dry run)" if dry_run else ""
        click.echo(f"{object_ref(parsed.info, meta(result.obj).name)} {result.outcome}{suffix}")


def parse_targets(kind_arg: str, names: tuple[str, ...]) -> list[tuple[KindInfo, str | None]]:
    """`deploy`, `deploy web api`, `deployment/web`, `deploy,svc` → (kind, name) pairs."""
    if "/" in kind_arg:
        kind, _, name = kind_arg.partition("/")
        if not name:
            raise click.UsageError(f'"{kind_arg}": a name is required after "/"')
        return [(resolve(kind), name), *((resolve(kind), n) for n in names)]
    kinds = [resolve(k) for k in kind_arg.split(",") if k]
    if names:
        if len(kinds) != 1:
            raise click.UsageError("names can only be given with a single kind")
        return [(kinds[0], n) for n in names]
    return [(k, None) for k in kinds]


@click.command("get")
@click.argument("kind")
@click.argument("names", nargs=-1)
@namespace_option
@click.option("--all-namespaces", "-A", is_flag=True, help="List across all namespaces.")
@click.option("--selector", "-l", default="", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--output", "-o", type=click.Choice(["wide", "yaml", "json", "name"]), default=None)
@click.option("--watch", "-w", is_flag=True, help="After listing, print changes as they happen.")
@click.option(
    "--show-secrets", is_flag=True, help="With -o yaml/json: print Secrets' values (base64) instead of <redacted>."
)
@pass_context
def get_cmd(
    ctx: Context,
    kind: str,
    names: tuple[str, ...],
    namespace: str,
    all_namespaces: bool,
    selector: str,
    output: str | None,
    watch: bool,
    show_secrets: bool,
) -> None:
    """Show objects: KIND [NAME…], KIND/NAME, or KIND,KIND."""
    if endpoints.is_endpoints(kind):
        endpoints.get_endpoints(
            ctx.client(),
            kind,
            names,
            namespace=namespace,
            all_namespaces=all_namespaces,
            output=output,
            selector=selector,
            watch=watch,
        )
        return
    targets = parse_targets(kind, names)
    ns = "" if all_namespaces else (namespace or DEFAULT_NAMESPACE)
    c = ctx.client()
    now = datetime.now(UTC)
    named = [t for t in targets if t[1] is not None]
    objs: list[Message] = []
    revision = ""
    missing: list[str] = []
    for info, name in targets:
        if name is not None:
            try:
                objs.append(c.get(info.kind, name, ns or DEFAULT_NAMESPACE))
            except api.NotFoundError as e:
                missing.append(str(e))
        else:
            listed, revision = c.list(info.kind, ns, selector=selector)
            objs.extend(listed)
    _print(
        objs,
        output,
        now,
        all_namespaces=all_namespaces,
        single=bool(named) and len(targets) == 1,
        show_secrets=show_secrets,
    )
    for message in missing:
        click.echo(f"Error from server (NotFound): {message}", err=True)
    if watch and len(targets) == 1:
        _watch(c, targets[0][0], ns, selector, revision, output, all_namespaces, targets[0][1])
    if missing:
        sys.exit(1)


def _print(
    objs: list[Message],
    output: str | None,
    now: datetime,
    *,
    all_namespaces: bool,
    single: bool,
    headers: bool = True,
    show_secrets: bool = False,
) -> None:
    if output in ("yaml", "json"):
        click.echo(printers.dump(printers.as_document(objs, single=single, show_secrets=show_secrets), output))
        return
    if output == "name":
        for obj in objs:
            click.echo(object_ref(info_of(obj), meta(obj).name))
        return
    if not objs:
        if headers:
            click.echo("No resources found.", err=True)
        return
    by_kind: dict[str, list[Message]] = {}
    for obj in objs:
        by_kind.setdefault(info_of(obj).kind, []).append(obj)
    blocks = []
    for group in by_kind.values():
        info = info_of(group[0])
        rows = [printers.table_row(info, o, now, wide=output == "wide", all_namespaces=all_namespaces) for o in group]
        if len(by_kind) > 1 and printers.COLUMNS[info.kind].named:  # as kubectl: kind/name when kinds are mixed
            at = 1 if all_namespaces and info.namespaced else 0
            for row in rows:
                row[at] = f"{info.resource}/{row[at]}"
        head = printers.table_headers(info, wide=output == "wide", all_namespaces=all_namespaces)
        blocks.append(printers.format_table(rows, head if headers else None))
    click.echo("\n\n".join(blocks))


def _watch(
    c: api.Client,
    info: KindInfo,
    ns: str,
    selector: str,
    revision: str,
    output: str | None,
    all_namespaces: bool,
    name: str | None,
) -> None:
    """Follow changes; on a compacted revision, list again and carry on."""
    while True:
        try:
            for ev in c.watch(info.kind, ns, selector=selector, resource_version=revision):
                revision = meta(ev.obj).resource_version
                if name is not None and meta(ev.obj).name != name:
                    continue
                _print([ev.obj], output, datetime.now(UTC), all_namespaces=all_namespaces, single=True, headers=False)
            return
        except api.GoneError:
            _, revision = c.list(info.kind, ns, selector=selector)


@click.command("describe")
@click.argument("kind")
@click.argument("names", nargs=-1)
@namespace_option
@pass_context
def describe_cmd(ctx: Context, kind: str, names: tuple[str, ...], namespace: str) -> None:
    """Show one object in detail, with its recent events."""
    targets = parse_targets(kind, names)
    c = ctx.client()
    ns = namespace or DEFAULT_NAMESPACE
    first = True
    for info, name in targets:
        objs = [c.get(info.kind, name, ns)] if name else c.list(info.kind, ns)[0]
        for obj in objs:
            if not first:
                click.echo("\n")
            first = False
            click.echo(describing.describe(obj, describing.events_for(c, obj), datetime.now(UTC)))


def delete_grace(grace_period: int, *, force: bool, now: bool) -> int | None:
    """kubectl's rules for the grace period a delete asks for (None: the pod's own).

    --now is 1 s; --grace-period 0 without --force becomes 1 (an accidental
    0 must not skip the node); --force alone, or with 0, is an immediate delete.
    """
    if now:
        if grace_period != -1:
            raise click.UsageError("--now and --grace-period cannot be specified together")
        grace_period = 1
    if grace_period == 0 and not force:
        grace_period = 1
    if force and grace_period < 0:
        grace_period = 0
    return None if grace_period < 0 else grace_period


@click.command("delete")
@click.argument("kind", required=False)
@click.argument("names", nargs=-1)
@click.option("--filename", "-f", "filenames", multiple=True, help="Delete what these manifests define.")
@namespace_option
@recursive_option
@click.option("--ignore-not-found", is_flag=True, help="Treat a missing object as deleted.")
@click.option(
    "--grace-period",
    type=int,
    default=-1,
    show_default=True,
    help="Seconds a pod gets to stop (SIGTERM, then SIGKILL); -1: its terminationGracePeriodSeconds. "
    "0 means 1 unless --force is given.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --grace-period 0 (or none): delete the object at once, without waiting for its node "
    "to confirm that the pod stopped.",
)
@click.option("--now", "delete_now", is_flag=True, help="Stop pods at once: --grace-period 1.")
@pass_context
def delete_cmd(
    ctx: Context,
    kind: str | None,
    names: tuple[str, ...],
    filenames: tuple[str, ...],
    namespace: str,
    recursive: bool,
    ignore_not_found: bool,
    grace_period: int,
    force: bool,
    delete_now: bool,
) -> None:
    """Delete objects: -f FILE…, KIND NAME…, or KIND/NAME.

    A running pod is deleted gracefully, as in Kubernetes: it shows as
    Terminating while its node stops its containers, then goes. A namespace
    shows as Terminating while everything in it is deleted, then goes."""
    grace = delete_grace(grace_period, force=force, now=delete_now)
    if filenames and kind:
        raise click.UsageError("give either -f FILE or KIND NAME, not both")
    skipped = False
    if filenames:
        targets, skips = _names(filenames, namespace, recursive)
        for problem in skips:
            click.echo(f"Warning: skipped {problem}", err=True)
        skipped = bool(skips)
    elif kind:
        pairs = parse_targets(kind, names)
        if any(name is None for _, name in pairs):
            raise click.UsageError("name which objects to delete: KIND NAME or KIND/NAME")
        targets = [(info, name or "", namespace) for info, name in pairs]
    else:
        raise click.UsageError("give -f FILE or KIND NAME")
    c = ctx.client()
    if grace == 0:
        click.echo(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has "
            "been terminated. The resource may continue to run on the cluster indefinitely.",
            err=True,
        )
    failed = False
    for info, name, ns in targets:
        try:
            c.delete(info.kind, name, ns, grace_period_seconds=grace)
            click.echo(f"{object_ref(info, name)} deleted")
        except api.NotFoundError as e:
            if not ignore_not_found:
                click.echo(f"Error from server (NotFound): {e}", err=True)
                failed = True
        except (api.ConflictError, api.PermissionDeniedError) as e:
            reason = "Conflict" if isinstance(e, api.ConflictError) else "Forbidden"
            click.echo(f"Error from server ({reason}): {e}", err=True)
            failed = True
    if failed or skipped:
        sys.exit(1)


def _names(
    filenames: Iterable[str], namespace: str, recursive: bool
) -> tuple[list[tuple[KindInfo, str, str]], list[Problem]]:
    """What the files name (however invalid the rest of each document) and what was skipped."""
    names, skipped = load_names(list(filenames), stdin=sys.stdin.buffer, recursive=recursive)
    targets: list[tuple[KindInfo, str, str]] = []
    for n in names:
        ns = (n.namespace or namespace) if n.info.namespaced else ""
        if namespace and ns != namespace and n.info.namespaced:
            message = f'"{n.namespace}" does not match --namespace "{namespace}"'
            skipped.append(Problem(n.source, n.index, "metadata.namespace", message))
        else:
            targets.append((n.info, n.name, ns))
    if not targets and not skipped:
        skipped.append(Problem(", ".join(filenames) or "-", None, "", "no objects found"))
    return targets, skipped
