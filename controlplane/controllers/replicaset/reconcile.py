"""ReplicaSet reconciliation, pure: the pods a ReplicaSet has versus the count it asks for.

`reconcile(rs, pods, now=…)` takes the ReplicaSet and the pods of its
namespace and returns `ReplicaSetActions`:

- claim (Kubernetes' `ClaimPods`): pods whose controller ownerReference is this
  ReplicaSet are its own; orphans (no controller) that match the selector are
  adopted (an ownerReference is added); owned pods that no longer match are
  released;
- manage: pods that are terminal (Succeeded/Failed) or being deleted never
  count; terminal ones are deleted so that they are replaced. Missing pods are
  created from the template, surplus ones deleted in `victim_order`. At most
  `burst` creations or deletions per call (Kubernetes' burstReplicas): the
  result never places more pods than `spec.replicas`;
- status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
  observedGeneration; `requeue_after` says when a ready pod becomes available.

`manage=False` (the shell's expectations are not yet met) claims and computes
status but creates and deletes nothing.

The core (`reconcile_facts`) reads each pod through its `PodFacts`, which the
shell keeps per pod version in an index (`PodFactsIndex`): a sync of a set of
10,000 pods reads no protobuf field per pod. `reconcile` takes plain pods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from controlplane.apiserver import labels
from controlplane.controllers.replicaset import victims
from protos import owners
from protos import pods as podutil
from protos.corral.v1 import meta_pb2, pod_pb2, workloads_pb2

BURST = 500
# Added to "becomes available in N seconds" so the requeue lands after it.
AVAILABILITY_SKEW = 0.05
# The kinds that own pods through a selector.
_Claimer = workloads_pb2.ReplicaSet | workloads_pb2.StatefulSet | workloads_pb2.DaemonSet


@dataclass(frozen=True)
class ReplicaSetActions:
    create: tuple[pod_pb2.Pod, ...] = ()
    delete: tuple[pod_pb2.Pod, ...] = ()
    # Copies of orphan pods with this ReplicaSet's controller ownerReference added.
    adopt: tuple[pod_pb2.Pod, ...] = ()
    # Copies of owned pods that no longer match, without the ownerReference.
    release: tuple[pod_pb2.Pod, ...] = ()
    # The new status, or None when it is unchanged.
    status: workloads_pb2.ReplicaSetStatus | None = None
    requeue_after: float | None = None


@dataclass(frozen=True)
class Claim:
    owned: tuple[pod_pb2.Pod, ...]
    adopt: tuple[pod_pb2.Pod, ...]
    release: tuple[pod_pb2.Pod, ...]


def reconcile(
    rs: workloads_pb2.ReplicaSet,
    pods: Iterable[pod_pb2.Pod],
    *,
    now: datetime,
    manage: bool = True,
    burst: int = BURST,
) -> ReplicaSetActions:
    return reconcile_facts(rs, [podutil.facts_of(p) for p in pods], now=now, manage=manage, burst=burst)


def reconcile_facts(
    rs: workloads_pb2.ReplicaSet,
    pods: Iterable[podutil.PodFacts],
    *,
    now: datetime,
    manage: bool = True,
    burst: int = BURST,
) -> ReplicaSetActions:
    """`reconcile` over the pods' facts."""
    owned, adopt, release = claim_facts(rs, pods)
    members = [*owned, *(podutil.facts_of(p) for p in adopt)]
    active = [f for f in members if f.active]
    create: tuple[pod_pb2.Pod, ...] = ()
    delete: tuple[pod_pb2.Pod, ...] = ()
    if manage and not podutil.is_terminating(rs):
        terminal = [f.pod for f in members if f.terminal and not f.terminating]
        create, delete = manage_replicas(rs, [f.pod for f in active], terminal, now=now, burst=burst)
    status = calculate_status(rs, active, now=now)
    return ReplicaSetActions(
        create=create,
        delete=delete,
        adopt=adopt,
        release=release,
        status=None if status == rs.status else status,
        requeue_after=_requeue_after(rs, active, now),
    )


def claim_pods(rs: _Claimer, pods: Iterable[pod_pb2.Pod]) -> Claim:
    """Which pods are the ReplicaSet's (or StatefulSet's, or DaemonSet's), which to adopt and which to release."""
    owned, adopt, release = claim_facts(rs, [podutil.facts_of(p) for p in pods])
    return Claim(tuple(f.pod for f in owned), adopt, release)


def claim_facts(
    rs: _Claimer, pods: Iterable[podutil.PodFacts]
) -> tuple[list[podutil.PodFacts], tuple[pod_pb2.Pod, ...], tuple[pod_pb2.Pod, ...]]:
    """`claim_pods` over the pods' facts: the facts of the owned pods, copies to adopt, copies to release."""
    selector = labels.from_label_selector(rs.spec.selector)
    matches_labels = _matcher(rs.spec.selector, selector)
    uid, namespace = rs.metadata.uid, rs.metadata.namespace
    may_adopt = not selector.empty and not podutil.is_terminating(rs)
    owned: list[podutil.PodFacts] = []
    adopt: list[pod_pb2.Pod] = []
    release: list[pod_pb2.Pod] = []
    for pod in pods:
        if pod.namespace != namespace:
            continue
        matches = not selector.empty and matches_labels(pod.labels)
        if pod.owner == uid:
            if matches:
                owned.append(pod)
            elif not pod.terminating and not podutil.is_terminating(rs):
                release.append(_without_owner(pod.pod, uid))
        elif not pod.owner and matches and may_adopt and pod.active:
            adopt.append(_with_owner(pod.pod, rs))
    return owned, tuple(adopt), tuple(release)


def _matcher(raw: meta_pb2.LabelSelector, selector: labels.Selector) -> Callable[[Mapping[str, str]], bool]:
    """`selector.matches`; for a matchLabels-only selector (a Deployment's), an inclusion of
    dict items, which costs a tenth of it at every pod of every sync."""
    if raw.match_expressions:
        return selector.matches
    wanted = dict(raw.match_labels).items()
    return lambda pod_labels: wanted <= pod_labels.items()


def _with_owner(pod: pod_pb2.Pod, rs: _Claimer) -> pod_pb2.Pod:
    copy = pod_pb2.Pod()
    copy.CopyFrom(pod)
    copy.metadata.owner_references.append(owners.owner_reference(rs))
    return copy


def _without_owner(pod: pod_pb2.Pod, uid: str) -> pod_pb2.Pod:
    copy = pod_pb2.Pod()
    copy.CopyFrom(pod)
    refs = [r for r in copy.metadata.owner_references if r.uid != uid]
    del copy.metadata.owner_references[:]
    copy.metadata.owner_references.extend(refs)
    return copy


def manage_replicas(
    rs: workloads_pb2.ReplicaSet,
    active: Sequence[pod_pb2.Pod],
    terminal: Sequence[pod_pb2.Pod],
    *,
    now: datetime,
    burst: int,
) -> tuple[tuple[pod_pb2.Pod, ...], tuple[pod_pb2.Pod, ...]]:
    """The pods to create and to delete so that `len(active) == spec.replicas`."""
    diff = len(active) - rs.spec.replicas
    delete = list(terminal[:burst])
    if diff < 0:
        return tuple(new_pod(rs) for _ in range(min(-diff, burst))), tuple(delete)
    if diff > 0:
        take = min(diff, burst - len(delete))
        # Every pod goes (a scale to 0): which go first does not matter, and ranking 10,000 pods
        # reads each one's protobuf fields at each burst of the scale-down.
        everyone = diff >= len(active)
        order = (
            active if everyone else victims.victim_order(active, min_ready_seconds=rs.spec.min_ready_seconds, now=now)
        )
        delete.extend(order[:take])
    return (), tuple(delete)


def new_pod(rs: workloads_pb2.ReplicaSet) -> pod_pb2.Pod:
    """A pod from the template: generateName `<rs>-`, template labels, owned by `rs`."""
    template = rs.spec.template
    pod = pod_pb2.Pod(api_version="v1", kind="Pod")
    m = pod.metadata
    m.generate_name = f"{rs.metadata.name}-"
    m.namespace = rs.metadata.namespace
    m.labels.update(template.metadata.labels)
    m.annotations.update(template.metadata.annotations)
    m.owner_references.append(owners.owner_reference(rs))
    pod.spec.CopyFrom(template.spec)
    return pod


def calculate_status(
    rs: workloads_pb2.ReplicaSet, active: Sequence[podutil.PodFacts], *, now: datetime
) -> workloads_pb2.ReplicaSetStatus:
    template_labels = dict(rs.spec.template.metadata.labels).items()
    min_ready = rs.spec.min_ready_seconds
    status = workloads_pb2.ReplicaSetStatus(
        replicas=len(active),
        fully_labeled_replicas=sum(template_labels <= p.labels.items() for p in active),
        ready_replicas=sum(p.ready for p in active),
        available_replicas=sum(p.is_available(min_ready, now) for p in active),
        observed_generation=rs.metadata.generation,
    )
    status.conditions.extend(rs.status.conditions)
    return status


def _requeue_after(rs: workloads_pb2.ReplicaSet, active: Sequence[podutil.PodFacts], now: datetime) -> float | None:
    wait = podutil.next_available_of(active, rs.spec.min_ready_seconds, now)
    return None if wait is None else wait + AVAILABILITY_SKEW
