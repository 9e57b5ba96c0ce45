"""ResourceQuota admission, pure: which quotas a new object (or an update) is
charged to, and the quotas' new status, or why it is refused. No I/O.

As Kubernetes' ResourceQuota admission plugin: for every quota of the object's
namespace that counts it (its scopes match) and limits some resource its kind
uses, a pod must say its cpu and memory where the quota limits them
(`failed quota: NAME: must specify limits.cpu for: web`); then what the
object adds (`increase`: all of its usage for a create, what an update adds
beyond the stored object's) is added to each quota's status.used, and any
resource that would go over spec.hard refuses the write
(`exceeded quota: NAME, requested: pods=1, used: pods=2, limited: pods=2`).

The caller stores the new statuses with a compare-and-swap before it writes
the object, so two concurrent creates cannot both take the last slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from google.protobuf.message import Message

from controlplane.apiserver.errors import Cause
from protos import quota
from protos.corral.v1 import pod_pb2, quota_pb2
from protos.kinds import info_of

Usage = quota.Usage


@dataclass(frozen=True)
class Charge:
    """One quota's new status after admitting an object, and what it was charged."""

    quota: quota_pb2.ResourceQuota
    charged: Usage


class QuotaRefusal(Exception):
    def __init__(self, cause: Cause) -> None:
        super().__init__(str(cause))
        self.cause = cause


def needs_recount(rq: quota_pb2.ResourceQuota, names: Sequence[str]) -> bool:
    """The quota's status does not (yet) say what is used of `names`, or of a changed spec.hard."""
    return dict(rq.status.hard) != dict(rq.spec.hard) or any(n not in rq.status.used for n in names)


def pertinent(
    quotas: Sequence[quota_pb2.ResourceQuota], obj: Message
) -> list[tuple[quota_pb2.ResourceQuota, list[str]]]:
    """The quotas that count `obj`, each with the resources of it they limit."""
    kind = info_of(obj).kind
    found = []
    for rq in sorted(quotas, key=lambda q: q.metadata.name):
        names = quota.matched_names(rq.spec.hard, kind)
        if names and quota.quota_matches(rq.spec, obj):
            found.append((rq, names))
    return found


def plan(
    quotas: Sequence[quota_pb2.ResourceQuota],
    obj: Message,
    added: Usage,
    used_of: Mapping[str, Usage],
) -> list[Charge]:
    """The charges admitting `obj` makes (quotas whose status changes), or `QuotaRefusal`.

    `added` is what the write adds (`quota.increase`); `used_of` has a recount
    for each quota whose status could not be trusted (`needs_recount`), by name.
    """
    charges: list[Charge] = []
    for rq, names in pertinent(quotas, obj):
        name = rq.metadata.name
        if isinstance(obj, pod_pb2.Pod):
            _check_containers(rq, obj)
        charged = {n: added[n] for n in names if added.get(n)}
        if not charged:
            continue
        used = used_of.get(name) or quota.parse_list(rq.status.used)
        hard = quota.parse_list(rq.spec.hard)
        new_used = {n: used.get(n, Fraction(0)) + charged.get(n, Fraction(0)) for n in rq.spec.hard}
        over = sorted(n for n in charged if n in hard and new_used[n] > hard[n])
        if over:
            requested = quota.formatted({n: charged[n] for n in over}, rq.spec.hard)
            was = quota.formatted({n: used.get(n, Fraction(0)) for n in over}, rq.spec.hard)
            limited = {n: rq.spec.hard[n] for n in over}
            raise QuotaRefusal(
                Cause(
                    "",
                    f"exceeded quota: {name}, requested: {quota.pretty(requested)}, "
                    f"used: {quota.pretty(was)}, limited: {quota.pretty(limited)}",
                )
            )
        charges.append(Charge(with_status(rq, new_used), charged))
    return charges


def _check_containers(rq: quota_pb2.ResourceQuota, pod: pod_pb2.Pod) -> None:
    missing = quota.missing_amounts(rq.spec, pod)
    if missing:
        what = "; ".join(f"{n} for: {','.join(sorted(set(missing[n])))}" for n in sorted(missing))
        raise QuotaRefusal(Cause("", f"failed quota: {rq.metadata.name}: must specify {what}"))


def with_status(rq: quota_pb2.ResourceQuota, used: Mapping[str, Fraction]) -> quota_pb2.ResourceQuota:
    """The quota with status.hard = spec.hard and status.used = `used` (over spec.hard's names)."""
    updated = quota_pb2.ResourceQuota()
    updated.CopyFrom(rq)
    updated.status.hard.clear()
    updated.status.hard.update(rq.spec.hard)
    updated.status.used.clear()
    updated.status.used.update(quota.formatted({n: used.get(n, Fraction(0)) for n in rq.spec.hard}, rq.spec.hard))
    return updated


def refunded(rq: quota_pb2.ResourceQuota, charged: Mapping[str, Fraction]) -> quota_pb2.ResourceQuota | None:
    """The quota with a charge taken back (never below 0); None when there is nothing to take back."""
    used = quota.parse_list(rq.status.used)
    back = {n: max(Fraction(0), used[n] - a) for n, a in charged.items() if used.get(n)}
    if not back:
        return None
    updated = quota_pb2.ResourceQuota()
    updated.CopyFrom(rq)
    updated.status.used.update(quota.formatted(back, rq.spec.hard))
    return updated
