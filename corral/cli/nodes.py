"""`corral cordon | uncordon | drain NODE`: take a node out of service and back.

    corral cordon n1            no new pods on n1 (spec.unschedulable)
    corral uncordon n1          pods may be scheduled on n1 again
    corral drain n1 [--force] [--ignore-daemonsets] [--grace-period N] [--timeout 60s]
                    [--disable-eviction]
                                cordon, then evict every pod on n1 so that
                                its controller makes a replacement elsewhere;
                                each pod stops gracefully (N seconds, default
                                its own terminationGracePeriodSeconds) and
                                drain waits until they are gone

As kubectl, drain refuses pods no controller owns (nothing would replace
them) unless --force is given, refuses pods a DaemonSet runs (its controller
would put them back at once: the DaemonSet tolerates a cordoned node) unless
--ignore-daemonsets is given, which leaves them running, and deletes
finished pods without asking.
Pods go through the Eviction API: one a PodDisruptionBudget does not allow
to go now is asked for again every 5 s until --timeout, so a budget with
minAvailable 1 over two replicas lets them go one at a time, each once the
other's replacement is Ready elsewhere. --disable-eviction deletes instead
(budgets are not checked).
Cordoning is a read-modify-write with the node's resourceVersion, retried on
conflict (the node lifecycle controller writes the same node).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import click
from google.protobuf.message import Message

from corral import client as api
from corral.cli.context import Context
from corral.cli.params import Duration
from corral.cli.rollout import CommandError, modify
from protos.corral.v1 import node_pb2, pod_pb2
from protos.kinds import by_kind
from protos.owners import controller_ref
from protos.pods import is_terminal

pass_context = click.make_pass_decorator(Context)

NODE = by_kind("Node")
POLL_SECONDS = 0.5
# How long drain waits before asking again for an eviction a disruption budget refused (kubectl's 5 s).
EVICTION_RETRY_SECONDS = 5.0


def set_unschedulable(c: api.Client, name: str, unschedulable: bool) -> bool:
    """Cordon or uncordon; False if the node already was."""

    def change(obj: Message) -> bool:
        assert isinstance(obj, node_pb2.Node)
        if obj.spec.unschedulable == unschedulable:
            return False
        obj.spec.unschedulable = unschedulable
        return True

    return modify(c, NODE, name, "", change)


def _cordon(c: api.Client, name: str, unschedulable: bool) -> None:
    verb = "cordoned" if unschedulable else "uncordoned"
    changed = set_unschedulable(c, name, unschedulable)
    click.echo(f"node/{name} {verb}" if changed else f"node/{name} already {verb}")


@click.command("cordon")
@click.argument("node")
@pass_context
def cordon_cmd(ctx: Context, node: str) -> None:
    """Mark a node unschedulable: no new pods are placed on it."""
    _cordon(ctx.client(), node, True)


@click.command("uncordon")
@click.argument("node")
@pass_context
def uncordon_cmd(ctx: Context, node: str) -> None:
    """Mark a node schedulable again."""
    _cordon(ctx.client(), node, False)


# -- drain ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainPlan:
    delete: list[pod_pb2.Pod]
    # Pods no controller owns: deleted only with --force.
    bare: list[pod_pb2.Pod]
    # Running pods a DaemonSet owns: never deleted; drain goes on only with --ignore-daemonsets.
    daemon: list[pod_pb2.Pod] = field(default_factory=list)

    def refusals(self, *, force: bool, ignore_daemonsets: bool) -> list[str]:
        """kubectl's reasons not to drain, each with the pods it names."""
        reasons = []
        if self.bare and not force:
            reasons.append(
                f"cannot delete Pods that declare no controller (use --force to override): {_names(self.bare)}"
            )
        if self.daemon and not ignore_daemonsets:
            reasons.append(
                f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {_names(self.daemon)}"
            )
        return reasons


def _names(pods: Sequence[pod_pb2.Pod]) -> str:
    return ", ".join(pod_name(p) for p in pods)


def pod_name(pod: pod_pb2.Pod) -> str:
    return f"{pod.metadata.namespace}/{pod.metadata.name}"


def plan_drain(pods: Sequence[Message], node: str, *, force: bool) -> DrainPlan:
    """Which pods on `node` to delete; bare pods are refused unless `force`; running DaemonSet
    pods are left (a finished one is deleted, as kubectl does)."""
    delete: list[pod_pb2.Pod] = []
    bare: list[pod_pb2.Pod] = []
    daemon: list[pod_pb2.Pod] = []
    for pod in pods:
        if not isinstance(pod, pod_pb2.Pod) or pod.spec.node_name != node:
            continue
        ref = controller_ref(pod)
        if ref is not None and ref.kind == "DaemonSet" and not is_terminal(pod):
            daemon.append(pod)
        elif ref is not None or is_terminal(pod):
            delete.append(pod)
        else:
            bare.append(pod)
            if force:
                delete.append(pod)
    return DrainPlan(delete, bare, daemon)


@dataclass
class Evictions:
    """Where the evictions of a drain stand."""

    # Asked for: evicted (or deleted), or already gone.
    done: list[pod_pb2.Pod] = field(default_factory=list)
    # Refused by a disruption budget at the last try.
    refused: list[pod_pb2.Pod] = field(default_factory=list)
    # Failed for another reason (the message names the pod).
    errors: list[str] = field(default_factory=list)


def _evict_once(c: api.Client, pods: Sequence[pod_pb2.Pod], grace: int | None, *, eviction: bool) -> Evictions:
    """One try at each pod: the Eviction API (budgets decide) or, without `eviction`, a delete."""
    result = Evictions()
    for i, pod in enumerate(pods):
        m = pod.metadata
        click.echo(f"evicting pod {pod_name(pod)}", err=True)
        try:
            if eviction:
                c.evict(m.name, m.namespace, uid=m.uid, grace_period_seconds=grace)
            else:
                c.delete("Pod", m.name, m.namespace, uid=m.uid, grace_period_seconds=grace)
        except (api.NotFoundError, api.ConflictError):
            pass  # already gone, or replaced by a pod of the same name
        except api.TooManyRequestsError as e:
            why = " ".join([str(e), *(cause.message for cause in e.causes)])
            retry = f"will retry after {EVICTION_RETRY_SECONDS:g}s"
            click.echo(f'error when evicting pods/"{m.name}" -n "{m.namespace}" ({retry}): {why}', err=True)
            result.refused.append(pod)
            continue
        except api.UnimplementedError:
            click.echo("Warning: the server has no Eviction API: deleting pods without disruption budgets", err=True)
            rest = _evict_once(c, pods[i:], grace, eviction=False)
            return Evictions(result.done + rest.done, result.refused + rest.refused, result.errors + rest.errors)
        except api.ClientError as e:
            result.errors.append(f'error when evicting pods/"{m.name}" -n "{m.namespace}": {e}')
            continue
        result.done.append(pod)
    return result


def _evict_pods(
    c: api.Client, pods: Sequence[pod_pb2.Pod], grace: int | None, deadline: float | None, *, eviction: bool
) -> Evictions:
    """Evict every pod, trying the ones a disruption budget refuses again every
    EVICTION_RETRY_SECONDS until `deadline` (None: forever), as kubectl drain does."""
    total = Evictions()
    pending = list(pods)
    while True:
        tried = _evict_once(c, pending, grace, eviction=eviction)
        total.done += tried.done
        total.errors += tried.errors
        pending = tried.refused
        if not pending or (deadline is not None and time.monotonic() >= deadline):
            total.refused = pending
            return total
        wait = EVICTION_RETRY_SECONDS if deadline is None else min(EVICTION_RETRY_SECONDS, deadline - time.monotonic())
        time.sleep(max(0.0, wait))


def _wait_gone(c: api.Client, node: str, pods: Sequence[pod_pb2.Pod], deadline: float | None) -> list[pod_pb2.Pod]:
    """Wait until the pods are gone (announcing each); the ones left at `deadline` (None: none)."""
    waiting = {p.metadata.uid: p for p in pods}
    while True:
        listed, _ = c.list("Pod", "")
        present = {p.metadata.uid for p in listed if isinstance(p, pod_pb2.Pod) and p.spec.node_name == node}
        for uid in [u for u in waiting if u not in present]:
            click.echo(f"pod/{waiting.pop(uid).metadata.name} evicted")
        if not waiting:
            return []
        if deadline is not None and time.monotonic() >= deadline:
            return list(waiting.values())
        time.sleep(POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))


@click.command("drain")
@click.argument("node")
@click.option("--force", is_flag=True, help="Also delete pods no controller owns (they are not replaced).")
@click.option(
    "--grace-period",
    type=int,
    default=-1,
    show_default=True,
    help="Seconds each pod gets to stop (SIGTERM, then SIGKILL); -1: its own "
    "terminationGracePeriodSeconds; 0: delete at once, without waiting for the node.",
)
@click.option(
    "--timeout",
    type=Duration(),
    default="60s",
    show_default=True,
    help="How long to wait for the pods to be gone (e.g. 90s, 5m); 0 waits forever.",
)
@click.option(
    "--ignore-daemonsets",
    is_flag=True,
    help="Go on when DaemonSet-managed pods are on the node, and leave them running (their DaemonSet "
    "would put them back at once).",
)
@click.option(
    "--disable-eviction",
    is_flag=True,
    help="Delete pods instead of evicting them: PodDisruptionBudgets are not checked.",
)
@pass_context
def drain_cmd(
    ctx: Context,
    node: str,
    force: bool,
    grace_period: int,
    timeout: float,
    ignore_daemonsets: bool,
    disable_eviction: bool,
) -> None:
    """Cordon a node, then evict its pods so their controllers move them elsewhere
    (one at a time where a PodDisruptionBudget allows no more)."""
    deadline = time.monotonic() + timeout if timeout else None
    c = ctx.client()
    _cordon(c, node, True)
    listed, _ = c.list("Pod", "")
    plan = plan_drain(listed, node, force=force)
    refusals = plan.refusals(force=force, ignore_daemonsets=ignore_daemonsets)
    if refusals:
        raise CommandError(f'unable to drain node "{node}": ' + ", ".join(refusals))
    if plan.daemon:
        click.echo(f"Warning: ignoring DaemonSet-managed Pods: {_names(plan.daemon)}", err=True)
    if plan.bare:
        click.echo(f"Warning: deleting Pods that declare no controller: {_names(plan.bare)}", err=True)
    grace = None if grace_period < 0 else grace_period
    evictions = _evict_pods(c, plan.delete, grace, deadline, eviction=not disable_eviction)
    left = _wait_gone(c, node, evictions.done, deadline)
    problems = evictions.errors + [
        f'error when evicting pods/"{p.metadata.name}" -n "{p.metadata.namespace}": '
        f"global timeout reached: {timeout:g}s"
        for p in evictions.refused
    ]
    if problems:
        raise CommandError(f'unable to drain node "{node}": ' + "; ".join(problems))
    if left:
        raise CommandError(
            f'unable to drain node "{node}": timed out after {timeout:g}s waiting for '
            f"{len(left)} pods to be deleted: {', '.join(pod_name(p) for p in left)}"
        )
    click.echo(f"node/{node} drained")
