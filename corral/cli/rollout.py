"""`corral rollout | scale | set image`: kubectl's workload verbs.

    corral rollout status  deploy/web [--timeout 5m] [--watch/--no-watch]   (also sts/NAME)
    corral rollout history deploy/web [--revision N]                        (also ds/NAME, sts/NAME)
    corral rollout undo    deploy/web [--to-revision N]                     (also ds/NAME, sts/NAME)
    corral rollout pause | resume | restart deploy/web                      (restart: also sts/NAME)
    corral rollout promote deploy/web [--full]    (BlueGreen and Canary)
    corral rollout abort   deploy/web             (Canary)
    corral scale deploy/web --replicas 3        (also rs/NAME, sts/NAME)
    corral set image deploy/web web=httpd:2.4.58 [CONTAINER=IMAGE …]

Every change is read-modify-write with the object's resourceVersion (a
compare-and-swap): on a conflict the object is read again and the change
recomputed, never written over someone else's. A Deployment's history is its
ReplicaSets — those with an ownerReference to the Deployment's uid — numbered
by their `deployment.kubernetes.io/revision` annotation, as Kubernetes keeps it.
A DaemonSet's or StatefulSet's history is its ControllerRevisions (owned by its
uid, numbered by `revision`); undo writes the chosen one's template into
spec.template, and the set's controller rolls it out like any change.
Messages and exit codes follow kubectl's.

`promote` and `abort` ask the Deployment controller to act through annotations
(the status is the controller's): `corral.io/promote` is the index of the pause
step a canary waits at, a blue-green preview's pod-template-hash, or `full`;
`corral.io/abort` is the hash of the canary to abort. The controller removes
them when it acts and records an event.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from google.protobuf.message import Message

from corral import client as api
from corral.cli import daemonset_view, printers, statefulset_view
from corral.cli.context import Context
from corral.cli.params import Duration
from protos import deployments, durations, revisions, times, wellknown
from protos.corral.v1 import pod_pb2, workloads_pb2
from protos.kinds import KindInfo, UnknownKindError, meta, resolve
from protos.pods import every_container
from protos.wellknown import DEFAULT_NAMESPACE

pass_context = click.make_pass_decorator(Context)
namespace_option = click.option("--namespace", "-n", default="", help="Namespace (default: default).")

# Deployment annotations a rollback keeps, and ReplicaSet annotations it does not copy (kubectl's list,
# and a blue-green ReplicaSet's scale-down deadline).
ROLLBACK_SKIPPED_ANNOTATIONS = frozenset(
    {
        wellknown.LAST_APPLIED,
        wellknown.REVISION,
        wellknown.REVISION_HISTORY,
        wellknown.DESIRED_REPLICAS,
        wellknown.MAX_REPLICAS,
        wellknown.DEPRECATED_ROLLBACK_TO,
        wellknown.SCALE_DOWN_AT,
    }
)
UPDATE_RETRIES = 8


# -- shared plumbing ------------------------------------------------------------------


class CommandError(click.ClickException):
    """A user-facing failure, printed kubectl-style as `error: …` (exit 1)."""

    def __init__(self, message: str, *, prefix: str = "error") -> None:
        super().__init__(message)
        self.prefix = prefix

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.prefix}: {self.format_message()}", err=True, file=file)


def not_found(e: api.NotFoundError) -> CommandError:
    return CommandError(str(e), prefix="Error from server (NotFound)")


def parse_target(args: Sequence[str], allowed: Sequence[str], verb: str) -> tuple[KindInfo, str]:
    """`deploy/web` or `deploy web` → (kind, name), for the kinds `verb` works on."""
    if len(args) == 1 and "/" in args[0]:
        kind, _, name = args[0].partition("/")
    elif len(args) == 2 and "/" not in args[0]:
        kind, name = args
    else:
        raise click.UsageError(f"{verb} needs one object: TYPE/NAME or TYPE NAME (e.g. deployment/web)")
    try:
        info = resolve(kind)
    except UnknownKindError as e:
        raise CommandError(str(e)) from e
    if info.kind not in allowed:
        plurals = [resolve(k).plural for k in allowed]
        kinds = " and ".join([", ".join(plurals[:-1]), plurals[-1]] if len(plurals) > 2 else plurals)
        raise CommandError(f"{verb} works on {kinds}, not on {info.plural}")
    if not name:
        raise click.UsageError(f"{verb}: a name is required after the type")
    return info, name


def fetch(c: api.Client, info: KindInfo, name: str, namespace: str) -> Message:
    try:
        return c.get(info.kind, name, namespace)
    except api.NotFoundError as e:
        raise not_found(e) from e


def modify(c: api.Client, info: KindInfo, name: str, namespace: str, change: Callable[[Message], bool]) -> bool:
    """Read, `change` in place (False: nothing to write), compare-and-swap; re-read on conflict."""
    for _ in range(UPDATE_RETRIES):
        obj = fetch(c, info, name, namespace)
        if not change(obj):
            return False
        try:
            c.update(obj)
            return True
        except api.ConflictError:
            continue
        except api.NotFoundError as e:
            raise not_found(e) from e
    raise CommandError(f'{info.resource} "{name}": changed by others too often, try again')


def ref(info: KindInfo, name: str) -> str:
    """`deployment.apps/web`, as kubectl names objects in its messages."""
    return f"{info.resource}/{name}"


def as_deployment(obj: Message) -> workloads_pb2.Deployment:
    assert isinstance(obj, workloads_pb2.Deployment)
    return obj


deployment_target = click.argument("target", nargs=-1, required=True)
# The kinds `rollout history` and `rollout undo` work on.
HISTORY_KINDS = ("Deployment", "DaemonSet", "StatefulSet")


def _deployment(args: Sequence[str], verb: str) -> tuple[KindInfo, str]:
    return parse_target(args, ("Deployment",), verb)


# -- rollout status ----------------------------------------------------------------------


def status_line(d: workloads_pb2.Deployment, sets: Sequence[workloads_pb2.ReplicaSet] = ()) -> tuple[str, bool]:
    """kubectl's rollout status line for `d`, and whether the rollout is done
    (BlueGreen and Canary: their progress, read also from `sets`, the
    Deployment's ReplicaSets)."""
    name, spec, st = d.metadata.name, d.spec, d.status
    if d.metadata.generation > st.observed_generation:
        return "Waiting for deployment spec update to be observed...", False
    progressing = next((c for c in st.conditions if c.type == deployments.PROGRESSING), None)
    if progressing is not None and progressing.status == "False" and progressing.reason == deployments.TIMED_OUT:
        raise CommandError(f'deployment "{name}" exceeded its progress deadline')
    if spec.strategy.type in (deployments.BLUE_GREEN, deployments.CANARY):
        return traffic_status_line(d, sets)
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if st.updated_replicas < spec.replicas:
        return f"{waiting}{st.updated_replicas} out of {spec.replicas} new replicas have been updated...", False
    if st.replicas > st.updated_replicas:
        return f"{waiting}{st.replicas - st.updated_replicas} old replicas are pending termination...", False
    if st.available_replicas < st.updated_replicas:
        return (f"{waiting}{st.available_replicas} of {st.updated_replicas} updated replicas are available..."), False
    return f'deployment "{name}" successfully rolled out', True


_DELETED = object()


def _follow(c: api.Client, kind: str, namespace: str, name: str, out: queue.Queue[object]) -> None:
    """List, then watch, the object; put each version (or _DELETED, or the error) on `out`."""
    try:
        while True:
            listed, revision = c.list(kind, namespace)
            found = [o for o in listed if meta(o).name == name]
            out.put(found[0] if found else _DELETED)
            try:
                for ev in c.watch(kind, namespace, resource_version=revision):
                    if meta(ev.obj).name == name:
                        out.put(_DELETED if ev.type == "DELETED" else ev.obj)
            except api.GoneError:
                continue
    except Exception as e:  # handed to the main thread, which raises it
        out.put(e)


def watch_rollout(
    c: api.Client, namespace: str, name: str, timeout: float, info: KindInfo | None = None
) -> Iterator[Message]:
    """Every version of the Deployment (or `info`'s kind) from now on, until `timeout` seconds (0: no limit) pass."""
    kind = info or resolve("Deployment")
    updates: queue.Queue[object] = queue.Queue()
    threading.Thread(target=_follow, args=(c, kind.kind, namespace, name, updates), daemon=True).start()
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        try:
            if left is not None and left <= 0:
                raise queue.Empty
            item = updates.get(timeout=left)
        except queue.Empty:
            raise CommandError("timed out waiting for the condition") from None
        if isinstance(item, Exception):
            raise item
        if item is _DELETED:
            raise CommandError(f'{kind.resource.split(".")[0]} "{name}" was deleted')
        if isinstance(item, Message):
            yield item


@click.group("rollout")
def rollout_group() -> None:
    """Manage the rollout of a deployment (status, history, undo, pause, resume, restart, promote, abort)
    or of a statefulset or daemonset (status, restart)."""


@rollout_group.command("status")
@deployment_target
@namespace_option
@click.option(
    "--timeout",
    type=Duration(),
    default="0s",
    show_default=True,
    help="Give up after this long (e.g. 90s, 5m); 0 waits forever.",
)
@click.option(
    "--watch/--no-watch",
    default=True,
    show_default=True,
    help="Follow the rollout until it finishes (--no-watch: print the status once).",
)
@pass_context
def status_cmd(ctx: Context, target: tuple[str, ...], namespace: str, timeout: float, watch: bool) -> None:
    """Show the status of a rollout, following it until it is done."""
    info, name = parse_target(target, ("Deployment", "StatefulSet", "DaemonSet"), "rollout status")
    ns = namespace or DEFAULT_NAMESPACE
    c = ctx.client()
    if info.kind in ("StatefulSet", "DaemonSet"):
        _set_status(c, info, name, ns, timeout=timeout, watch=watch)
        return
    d = as_deployment(fetch(c, info, name, ns))
    if not watch:
        click.echo(status_line(d, _traffic_sets(c, d))[0])
        return
    last = ""
    try:
        for obj in watch_rollout(c, ns, name, timeout):
            d = as_deployment(obj)
            line, done = status_line(d, _traffic_sets(c, d))
            if line != last:
                click.echo(line)
                last = line
            if done:
                return
    finally:
        c.close()


def _set_status(c: api.Client, info: KindInfo, name: str, ns: str, *, timeout: float, watch: bool) -> None:
    """A StatefulSet's or DaemonSet's rollout status, as kubectl's viewer for the kind tells it."""

    def line_of(obj: Message) -> tuple[str, bool]:
        try:
            if isinstance(obj, workloads_pb2.DaemonSet):
                return daemonset_view.status_line(obj)
            assert isinstance(obj, workloads_pb2.StatefulSet)
            return statefulset_view.status_line(obj)
        except (statefulset_view.NotRollingError, daemonset_view.NotRollingError) as e:
            raise CommandError(str(e)) from e

    if not watch:
        click.echo(line_of(fetch(c, info, name, ns))[0])
        return
    last = ""
    try:
        for obj in watch_rollout(c, ns, name, timeout, info):
            line, done = line_of(obj)
            if line != last:
                click.echo(line)
                last = line
            if done:
                return
    finally:
        c.close()


# -- BlueGreen and Canary -----------------------------------------------------------------


def _hash(rs: workloads_pb2.ReplicaSet) -> str:
    return rs.spec.template.metadata.labels.get(wellknown.POD_TEMPLATE_HASH, "")


def owned_sets(d: workloads_pb2.Deployment, listed: Sequence[Message]) -> list[workloads_pb2.ReplicaSet]:
    return [
        rs
        for rs in listed
        if isinstance(rs, workloads_pb2.ReplicaSet)
        and any(o.uid == d.metadata.uid and o.controller for o in rs.metadata.owner_references)
    ]


def _traffic_sets(c: api.Client, d: workloads_pb2.Deployment) -> list[workloads_pb2.ReplicaSet]:
    """The Deployment's ReplicaSets if its strategy moves traffic (else none are needed)."""
    if d.spec.strategy.type not in (deployments.BLUE_GREEN, deployments.CANARY):
        return []
    listed, _ = c.list("ReplicaSet", d.metadata.namespace)
    return owned_sets(d, listed)


def current_set(
    d: workloads_pb2.Deployment, sets: Sequence[workloads_pb2.ReplicaSet]
) -> workloads_pb2.ReplicaSet | None:
    """The ReplicaSet of the Deployment's current revision (its template's)."""
    revision = d.metadata.annotations.get(wellknown.REVISION)
    found = [rs for rs in sets if revision and rs.metadata.annotations.get(wellknown.REVISION) == revision]
    return found[0] if found else None


def canary_running(d: workloads_pb2.Deployment) -> bool:
    canary = d.status.canary
    return bool(canary.pod_template_hash) and not canary.aborted


def _weight(d: workloads_pb2.Deployment, pod_hash: str) -> int:
    return next((t.weight for t in d.status.traffic if t.pod_template_hash == pod_hash), 0)


def canary_line(d: workloads_pb2.Deployment, sets: Sequence[workloads_pb2.ReplicaSet]) -> str:
    """`canary step 2/4: weight 10%, paused until promoted` and the like."""
    canary, steps = d.status.canary, d.spec.strategy.canary.steps
    weight = _weight(d, canary.pod_template_hash)
    rs = next((r for r in sets if _hash(r) == canary.pod_template_hash), None)
    available = rs.status.available_replicas if rs is not None else 0
    index = canary.current_step_index
    if index >= len(steps):
        return f"canary promoting: {available}/{d.spec.replicas} canary pods available, weight {weight}%"
    step = steps[index]
    where = f"canary step {index + 1}/{len(steps)}: weight {weight}%"
    if step.HasField("set_weight"):
        need = rs.spec.replicas if rs is not None else 0
        return f"{where}, setting weight {step.set_weight}% ({available}/{need} canary pods available)"
    length = durations.pause_seconds(step.pause)
    if length is None:
        return f"{where}, paused until promoted"
    if not canary.HasField("pause_start_time"):
        return f"{where}, paused for {length:g}s"
    end = canary.pause_start_time.ToDatetime(tzinfo=UTC) + timedelta(seconds=length)
    return f"{where}, paused until {times.format_deadline(end)}"


def blue_green_line(d: workloads_pb2.Deployment, new: workloads_pb2.ReplicaSet) -> str:
    """`blue-green: preview 3/3 available, waiting for promotion` and the like."""
    available, replicas = new.status.available_replicas, d.spec.replicas
    line = f"blue-green: preview {min(available, replicas)}/{replicas} available"
    config = d.spec.strategy.blue_green
    manual = config.HasField("auto_promotion_enabled") and not config.auto_promotion_enabled
    if d.spec.paused:
        return f"{line}, deployment paused"
    if available >= replicas and manual:
        return f"{line}, waiting for promotion"
    return line


def traffic_status_line(d: workloads_pb2.Deployment, sets: Sequence[workloads_pb2.ReplicaSet]) -> tuple[str, bool]:
    name, st = d.metadata.name, d.status
    if st.canary.aborted:
        raise CommandError(f'deployment "{name}" rollout aborted: {st.canary.aborted}')
    if canary_running(d):
        return canary_line(d, sets), False
    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    new = current_set(d, sets)
    if new is None:
        return f"{waiting}0 out of {d.spec.replicas} new replicas have been updated...", False
    if _hash(new) != st.stable_pod_template_hash:
        if d.spec.strategy.type == deployments.CANARY:
            return f"{waiting}canary {new.metadata.name} is starting...", False
        return blue_green_line(d, new), False
    progressing = next((c for c in st.conditions if c.type == deployments.PROGRESSING), None)
    available = new.status.available_replicas
    done = (
        progressing.reason == deployments.NEW_RS_AVAILABLE
        if progressing is not None
        else available >= d.spec.replicas and st.updated_replicas == d.spec.replicas
    )
    if not done:
        return f"{waiting}{available} of {d.spec.replicas} updated replicas are available...", False
    return f'deployment "{name}" successfully rolled out', True


# -- rollout history ---------------------------------------------------------------------


def revision_of(rs: workloads_pb2.ReplicaSet) -> int | None:
    try:
        return int(rs.metadata.annotations[wellknown.REVISION])
    except (KeyError, ValueError):
        return None


def history(d: workloads_pb2.Deployment, replica_sets: Sequence[Message]) -> list[tuple[int, workloads_pb2.ReplicaSet]]:
    """The Deployment's ReplicaSets (owned by its uid) by revision, oldest first."""
    revisions: dict[int, workloads_pb2.ReplicaSet] = {}
    for rs in replica_sets:
        if not isinstance(rs, workloads_pb2.ReplicaSet):
            continue
        if not any(o.uid == d.metadata.uid for o in rs.metadata.owner_references):
            continue
        revision = revision_of(rs)
        if revision is not None:
            revisions[revision] = rs
    return sorted(revisions.items())


def _history_of(c: api.Client, d: workloads_pb2.Deployment) -> list[tuple[int, workloads_pb2.ReplicaSet]]:
    listed, _ = c.list("ReplicaSet", d.metadata.namespace)
    return history(d, listed)


def _template_lines(template: pod_pb2.PodTemplateSpec) -> list[str]:
    """A pod template, described the way `kubectl rollout history --revision` shows it."""

    def field(label: str, value: str, indent: int) -> str:
        return f"{' ' * indent}{label + ':':<14}{value}"

    labels = [f"{k}={v}" for k, v in sorted(template.metadata.labels.items())] or ["<none>"]
    lines = ["Pod Template:", field("Labels", labels[0], 2), *(" " * 16 + x for x in labels[1:])]
    annotations = [f"{k}: {v}" for k, v in sorted(template.metadata.annotations.items())]
    if annotations:
        lines += [field("Annotations", annotations[0], 2), *(" " * 16 + x for x in annotations[1:])]
    spec = template.spec
    for title, containers in (("Init Containers", spec.init_containers), ("Containers", spec.containers)):
        if not containers and title != "Containers":
            continue
        lines.append(f"  {title}:")
        for container in containers:
            lines += [f"   {container.name}:", field("Image", container.image, 4)]
            for port in container.ports:
                lines.append(field("Port", f"{port.container_port}/{port.protocol or 'TCP'}", 4))
            if container.command:
                lines.append(field("Command", " ".join(container.command), 4))
            if container.args:
                lines.append(field("Args", " ".join(container.args), 4))
            env = [f"{e.name}={e.value}" for e in container.env] or ["<none>"]
            lines += [field("Environment", env[0], 4), *(" " * 18 + x for x in env[1:])]
    return lines


@rollout_group.command("history")
@deployment_target
@namespace_option
@click.option("--revision", type=click.IntRange(min=0), default=0, help="Show the pod template of this revision.")
@pass_context
def history_cmd(ctx: Context, target: tuple[str, ...], namespace: str, revision: int) -> None:
    """List the revisions of a deployment, daemon set or stateful set, or show one in detail."""
    info, name = parse_target(target, HISTORY_KINDS, "rollout history")
    c = ctx.client()
    obj = fetch(c, info, name, namespace or DEFAULT_NAMESPACE)
    if isinstance(obj, workloads_pb2.Deployment):
        entries = [(n, rs.spec.template, rs.metadata.annotations) for n, rs in _history_of(c, obj)]
    else:
        entries = [(r.revision, r.data, r.metadata.annotations) for r in _set_history_of(c, obj)]
    if revision:
        chosen = next((t for n, t, _ in entries if n == revision), None)
        if chosen is None:
            raise CommandError(f"unable to find the specified revision {revision}")
        click.echo(f"{ref(info, name)} with revision #{revision}")
        click.echo("\n".join(_template_lines(chosen)))
        return
    if not entries:
        click.echo("No rollout history found.")
        return
    click.echo(ref(info, name))
    rows = [[str(n), notes.get(wellknown.CHANGE_CAUSE, "<none>")] for n, _, notes in entries]
    click.echo(printers.format_table(rows, ["REVISION", "CHANGE-CAUSE"]))


def _set_history_of(c: api.Client, owner: Message) -> list[workloads_pb2.ControllerRevision]:
    """A DaemonSet's or StatefulSet's ControllerRevisions (owned by its uid), oldest first."""
    assert isinstance(owner, workloads_pb2.DaemonSet | workloads_pb2.StatefulSet)
    listed, _ = c.list("ControllerRevision", owner.metadata.namespace)
    return revisions.owned(owner, [r for r in listed if isinstance(r, workloads_pb2.ControllerRevision)])


# -- rollout undo ----------------------------------------------------------------------------


def choose_revision(
    d: workloads_pb2.Deployment, revisions: Sequence[tuple[int, workloads_pb2.ReplicaSet]], to_revision: int
) -> tuple[int, workloads_pb2.ReplicaSet]:
    """The revision to roll back to: `to_revision`, or the one before the latest (kubectl's rules)."""
    if to_revision:
        chosen = dict(revisions).get(to_revision)
        if chosen is None:
            raise CommandError(f"unable to find specified revision {to_revision} in history")
        return to_revision, chosen
    if len(revisions) < 2:
        raise CommandError(f'no rollout history found for deployment "{d.metadata.name}"')
    return revisions[-2]


def rollback_annotations(d: workloads_pb2.Deployment, rs: workloads_pb2.ReplicaSet) -> dict[str, str]:
    """The Deployment's annotations after a rollback: its bookkeeping ones plus the ReplicaSet's others."""
    kept = {k: v for k, v in d.metadata.annotations.items() if k in ROLLBACK_SKIPPED_ANNOTATIONS}
    copied = {k: v for k, v in rs.metadata.annotations.items() if k not in ROLLBACK_SKIPPED_ANNOTATIONS}
    return kept | copied


@rollout_group.command("undo")
@deployment_target
@namespace_option
@click.option(
    "--to-revision",
    type=click.IntRange(min=0),
    default=0,
    help="The revision to roll back to (default: the previous one).",
)
@pass_context
def undo_cmd(ctx: Context, target: tuple[str, ...], namespace: str, to_revision: int) -> None:
    """Roll a deployment, daemon set or stateful set back to an earlier revision's pod template."""
    info, name = parse_target(target, HISTORY_KINDS, "rollout undo")
    c = ctx.client()
    skipped: list[int] = []

    def roll_back_set(obj: Message) -> bool:
        assert isinstance(obj, workloads_pb2.DaemonSet | workloads_pb2.StatefulSet)
        owned = _set_history_of(c, obj)
        chosen = revisions.find(owned, to_revision)
        if chosen is None:
            if to_revision:
                raise CommandError(f"unable to find specified revision {to_revision} in history")
            raise CommandError(f'no rollout history found for {info.singular} "{name}"')
        if chosen.data == obj.spec.template:
            skipped.append(chosen.revision)
            return False
        obj.spec.template.CopyFrom(revisions.template_of(chosen))
        return True

    def roll_back(obj: Message) -> bool:
        if not isinstance(obj, workloads_pb2.Deployment):
            return roll_back_set(obj)
        d = as_deployment(obj)
        if d.spec.paused:
            raise CommandError(
                "you cannot rollback a paused deployment; resume it first with "
                f"'corral rollout resume {ref(info, name)}' and try again"
            )
        revision, rs = choose_revision(d, _history_of(c, d), to_revision)
        template = deployments.without_hash(rs.spec.template)
        if template == deployments.without_hash(d.spec.template):
            skipped.append(revision)
            return False
        d.spec.template.CopyFrom(template)
        annotations = rollback_annotations(d, rs)
        d.metadata.annotations.clear()
        d.metadata.annotations.update(annotations)
        return True

    if modify(c, info, name, namespace or DEFAULT_NAMESPACE, roll_back):
        click.echo(f"{ref(info, name)} rolled back")
    else:
        click.echo(f"{ref(info, name)} skipped rollback (current template already matches revision {skipped[-1]})")


# -- rollout pause | resume | restart ------------------------------------------------------------


def _set_paused(ctx: Context, target: tuple[str, ...], namespace: str, paused: bool) -> None:
    verb = "pause" if paused else "resume"
    info, name = _deployment(target, f"rollout {verb}")

    def change(obj: Message) -> bool:
        d = as_deployment(obj)
        if d.spec.paused == paused:
            state = "already paused" if paused else "not paused"
            raise CommandError(f'{info.plural}.{info.group} "{name}" is {state}')
        d.spec.paused = paused
        return True

    modify(ctx.client(), info, name, namespace or DEFAULT_NAMESPACE, change)
    click.echo(f"{ref(info, name)} {'paused' if paused else 'resumed'}")


@rollout_group.command("pause")
@deployment_target
@namespace_option
@pass_context
def pause_cmd(ctx: Context, target: tuple[str, ...], namespace: str) -> None:
    """Pause a deployment: template changes do not roll out until it is resumed."""
    _set_paused(ctx, target, namespace, True)


@rollout_group.command("resume")
@deployment_target
@namespace_option
@pass_context
def resume_cmd(ctx: Context, target: tuple[str, ...], namespace: str) -> None:
    """Resume a paused deployment."""
    _set_paused(ctx, target, namespace, False)


# -- rollout promote | abort ------------------------------------------------------------------


def _strategy_error(d: workloads_pb2.Deployment, verb: str, allowed: str) -> CommandError:
    kind = d.spec.strategy.type or deployments.ROLLING_UPDATE
    return CommandError(
        f'deployment "{d.metadata.name}" uses the {kind} strategy: only {allowed} deployments can be {verb}'
    )


def _require_observed(d: workloads_pb2.Deployment) -> None:
    if d.metadata.generation > d.status.observed_generation:
        raise CommandError(
            f'deployment "{d.metadata.name}" has changes the controller has not seen yet; try again in a moment'
        )


def promotion(d: workloads_pb2.Deployment, sets: Sequence[workloads_pb2.ReplicaSet], *, full: bool) -> str:
    """The corral.io/promote value that promotes what `d` waits for, or a CommandError."""
    name, kind = d.metadata.name, d.spec.strategy.type
    if kind not in (deployments.BLUE_GREEN, deployments.CANARY):
        raise _strategy_error(d, "promoted", "BlueGreen and Canary")
    _require_observed(d)
    if kind == deployments.BLUE_GREEN:
        new = current_set(d, sets)
        if new is None or _hash(new) == d.status.stable_pod_template_hash:
            raise CommandError(f'deployment "{name}" has nothing to promote: no preview is running')
        return _hash(new)
    if not canary_running(d):
        raise CommandError(f'deployment "{name}" has nothing to promote: no canary is running')
    if full:
        return wellknown.PROMOTE_FULL
    index, steps = d.status.canary.current_step_index, d.spec.strategy.canary.steps
    if index >= len(steps):
        raise CommandError(
            f'deployment "{name}" has nothing to promote: the canary has taken every step and is being promoted'
        )
    step = steps[index]
    if step.HasField("set_weight"):
        raise CommandError(
            f'deployment "{name}": the canary is at step {index + 1}/{len(steps)} '
            f"(setWeight {step.set_weight}%), not at a pause; use --full to skip the "
            "remaining steps"
        )
    return str(index)


def abort_target(d: workloads_pb2.Deployment) -> str:
    """The corral.io/abort value (the running canary's hash), or a CommandError."""
    name, kind = d.metadata.name, d.spec.strategy.type
    if kind == deployments.BLUE_GREEN:
        raise CommandError(
            f'deployment "{name}" uses the BlueGreen strategy: there is no canary to abort; '
            f"'corral rollout undo deployment.apps/{name}' goes back to the active version"
        )
    if kind != deployments.CANARY:
        raise _strategy_error(d, "aborted", "Canary")
    _require_observed(d)
    if not canary_running(d):
        raise CommandError(f'deployment "{name}" has nothing to abort: no canary is running')
    return d.status.canary.pod_template_hash


@rollout_group.command("promote")
@deployment_target
@namespace_option
@click.option(
    "--full", is_flag=True, help="Canary: skip the remaining steps and promote the canary to all traffic at once."
)
@pass_context
def promote_cmd(ctx: Context, target: tuple[str, ...], namespace: str, full: bool) -> None:
    """Promote a canary past the pause it waits at, or a blue-green preview to all traffic."""
    info, name = _deployment(target, "rollout promote")
    c = ctx.client()
    paused: list[bool] = []

    def change(obj: Message) -> bool:
        d = as_deployment(obj)
        d.metadata.annotations[wellknown.PROMOTE] = promotion(d, _traffic_sets(c, d), full=full)
        paused[:] = [d.spec.paused]
        return True

    modify(c, info, name, namespace or DEFAULT_NAMESPACE, change)
    note = f" (paused: it takes effect once you run 'corral rollout resume {ref(info, name)}')" if any(paused) else ""
    click.echo(f"{ref(info, name)} promoted{note}")


@rollout_group.command("abort")
@deployment_target
@namespace_option
@pass_context
def abort_cmd(ctx: Context, target: tuple[str, ...], namespace: str) -> None:
    """Abort a canary: all traffic back to the stable version, template rolled back."""
    info, name = _deployment(target, "rollout abort")

    def change(obj: Message) -> bool:
        d = as_deployment(obj)
        d.metadata.annotations[wellknown.ABORT] = abort_target(d)
        return True

    modify(ctx.client(), info, name, namespace or DEFAULT_NAMESPACE, change)
    click.echo(f"{ref(info, name)} aborted")


@rollout_group.command("restart")
@deployment_target
@namespace_option
@pass_context
def restart_cmd(ctx: Context, target: tuple[str, ...], namespace: str) -> None:
    """Restart every pod of a deployment, statefulset or daemonset with a rolling update."""
    info, name = parse_target(target, ("Deployment", "StatefulSet", "DaemonSet"), "rollout restart")
    stamp = times.format_time(datetime.now(UTC))

    def change(obj: Message) -> bool:
        if isinstance(obj, workloads_pb2.StatefulSet | workloads_pb2.DaemonSet):
            obj.spec.template.metadata.annotations[wellknown.RESTARTED_AT] = stamp
            return True
        d = as_deployment(obj)
        if d.spec.paused:
            raise CommandError(
                f'{info.plural}.{info.group} "{name}" can\'t restart paused deployment (run rollout resume first)'
            )
        d.spec.template.metadata.annotations[wellknown.RESTARTED_AT] = stamp
        return True

    modify(ctx.client(), info, name, namespace or DEFAULT_NAMESPACE, change)
    click.echo(f"{ref(info, name)} restarted")


# -- scale -----------------------------------------------------------------------------------------


@click.command("scale")
@click.argument("target", nargs=-1, required=True)
@click.option("--replicas", type=click.IntRange(min=0), required=True, help="The new number of replicas.")
@click.option(
    "--current-replicas",
    type=click.IntRange(min=-1),
    default=-1,
    help="Only scale if the current replica count is this (-1: any).",
)
@namespace_option
@pass_context
def scale_cmd(ctx: Context, target: tuple[str, ...], replicas: int, current_replicas: int, namespace: str) -> None:
    """Set the number of replicas of a deployment, replica set or statefulset (TYPE/NAME or TYPE NAME)."""
    info, name = parse_target(target, ("Deployment", "ReplicaSet", "StatefulSet"), "scale")

    def change(obj: Message) -> bool:
        assert isinstance(obj, workloads_pb2.Deployment | workloads_pb2.ReplicaSet | workloads_pb2.StatefulSet)
        if current_replicas >= 0 and obj.spec.replicas != current_replicas:
            raise CommandError(f"Expected replicas to be {current_replicas}, was {obj.spec.replicas}")
        obj.spec.replicas = replicas
        return True

    modify(ctx.client(), info, name, namespace or DEFAULT_NAMESPACE, change)
    click.echo(f"{ref(info, name)} scaled")


# -- set image ---------------------------------------------------------------------------------------


def parse_images(pairs: Sequence[str]) -> dict[str, str]:
    """`web=httpd:2.4 sidecar=envoy:1.29` → {container: image}; `*` means every container."""
    images: dict[str, str] = {}
    for pair in pairs:
        container, _, image = pair.partition("=")
        if not container or not image:
            raise click.UsageError(f'"{pair}": expected CONTAINER=IMAGE')
        images[container] = image
    return images


def set_images(spec: pod_pb2.PodSpec, images: dict[str, str]) -> None:
    """Change the containers' images in place (init containers too, as kubectl does); every
    named container must exist."""
    names = {c.name for _, c in every_container(spec)}
    for container in images:
        if container != "*" and container not in names:
            raise CommandError(f'unable to find container named "{container}"')
    for _, c in every_container(spec):
        image = images.get(c.name, images.get("*"))
        if image is not None:
            c.image = image


def _pod_spec(obj: Message) -> pod_pb2.PodSpec:
    if isinstance(obj, pod_pb2.Pod):
        return obj.spec
    assert isinstance(
        obj,
        workloads_pb2.Deployment | workloads_pb2.ReplicaSet | workloads_pb2.StatefulSet | workloads_pb2.DaemonSet,
    )
    return obj.spec.template.spec


@click.group("set")
def set_group() -> None:
    """Change one aspect of an object (image)."""


@set_group.command("image")
@click.argument("args", nargs=-1, required=True)
@namespace_option
@pass_context
def image_cmd(ctx: Context, args: tuple[str, ...], namespace: str) -> None:
    """Set container images: TYPE/NAME CONTAINER=IMAGE [CONTAINER=IMAGE…]."""
    target = [a for a in args if "=" not in a]
    pairs = [a for a in args if "=" in a]
    if not pairs:
        raise click.UsageError("at least one image update is required: CONTAINER=IMAGE")
    info, name = parse_target(target, ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Pod"), "set image")
    images = parse_images(pairs)

    def change(obj: Message) -> bool:
        set_images(_pod_spec(obj), images)
        return True

    modify(ctx.client(), info, name, namespace or DEFAULT_NAMESPACE, change)
    click.echo(f"{ref(info, name)} image updated")
