"""The scheduling algorithm: sample, filter, score, select — or explain.

For one pod (`schedule_one`):

1. **Sample.** In a large cluster, looking at every node for every pod is
   wasted work: as kube-scheduler's `percentageOfNodesToScore`, stop once
   enough feasible nodes are found (`feasible_nodes_to_find`): every node in
   clusters under 100 nodes; otherwise an adaptive percentage,
   `50 - nodes/125` percent, at least 5 percent and at least 100 nodes.
   The walk starts at a rotating index into the nodes (sorted by name) and
   wraps around, so successive pods and passes look at different nodes.
2. **Filter.** Run the profile's filters on each node, cheapest first; the
   first "no" ends that node's evaluation and its reasons are counted.
3. **Score.** Rank each feasible node by the weighted sum of the profile's
   scores, including the score of the pod's strategy (`LeastAllocated`
   spreads load, `MostAllocated` bin-packs).
4. **Select.** Take the highest total. Ties go to the first node by name, or,
   given a seeded `random.Random`, to a seeded choice among the tied nodes.

No feasible node means the pod is `Unschedulable`, with a message that counts
nodes per reason, most common first: `0/3 nodes available: 2 insufficient
memory, 1 node not ready.` A node rejected for several reasons counts under each.

`schedule_batch` places many pods in one pass: after each placement the pod is
counted on its node (`Snapshot.with_binding`), so later pods see the room the
earlier ones took, and the start index moves on by the nodes examined. Pods
are placed in the order given; the caller orders them (priority, age).

Within a batch, a node's verdict (filters, then score) for a pod is kept and
reused for every later pod of the same shape (`shape_of`: everything but the
pod's name) while that node is unchanged — placing a pod changes only its own
node. The replicas of a Deployment share one shape, so after the first of them
each placement re-evaluates one node instead of every node; the results are the
same as evaluating everything anew, because filters and scores are functions of
the pod's shape and the node alone (a plugin must not look at the pod's key).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from controlplane.scheduler.framework import (
    MAX_SCORE,
    MIN_SCORE,
    SUCCESS,
    Profile,
    Status,
    WeightedScore,
)
from controlplane.scheduler.snapshot import NodeInfo, PodRequest, Snapshot

__all__ = [
    "Batch",
    "Placement",
    "Result",
    "Unschedulable",
    "Verdicts",
    "feasible_nodes_to_find",
    "find_feasible",
    "run_filters",
    "schedule_batch",
    "schedule_one",
    "score_node",
    "select_host",
    "shape_of",
]

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_PERCENTAGE = 5


@dataclass(frozen=True)
class Placement:
    """`pod` goes to `node`; `score` is the node's weighted total."""

    pod: str
    node: str
    score: int
    feasible: int
    examined: int


@dataclass(frozen=True)
class Unschedulable:
    """No node fits `pod`; `reasons` are (reason, node count), most common first."""

    pod: str
    total_nodes: int
    reasons: tuple[tuple[str, int], ...]
    examined: int

    @property
    def message(self) -> str:
        """One sentence a user can act on."""
        counts = ", ".join(f"{count} {reason}" for reason, count in self.reasons)
        return f"0/{self.total_nodes} nodes available: {counts or 'no nodes in the cluster'}."


Result = Placement | Unschedulable


@dataclass(frozen=True)
class Batch:
    """One pass: a result per pod, in order, the snapshot with the new
    placements counted, and where the next pass should start sampling."""

    results: tuple[Result, ...]
    snapshot: Snapshot
    next_start_index: int


def schedule_batch(
    pods: Iterable[PodRequest],
    snapshot: Snapshot,
    profile: Profile,
    *,
    start_index: int = 0,
    rng_seed: int | None = None,
    sample_size: int | None = None,
) -> Batch:
    """Place `pods` in order, each seeing the placements made before it."""
    rng = None if rng_seed is None else random.Random(rng_seed)
    results: list[Result] = []
    start = start_index
    verdicts = Verdicts(profile)
    for pod in pods:
        result = schedule_one(
            pod, snapshot, profile, sample_size=sample_size, start_index=start, rng=rng, verdicts=verdicts
        )
        if isinstance(result, Placement):
            snapshot = snapshot.with_binding(pod, result.node)
        start = (start + result.examined) % len(snapshot) if len(snapshot) else 0
        results.append(result)
    return Batch(tuple(results), snapshot, start)


def schedule_one(
    pod: PodRequest,
    snapshot: Snapshot,
    profile: Profile,
    *,
    sample_size: int | None = None,
    start_index: int = 0,
    rng: random.Random | None = None,
    verdicts: Verdicts | None = None,
) -> Result:
    """The node for `pod`, or why there is none.

    `sample_size` is how many feasible nodes are enough (default: the
    adaptive `feasible_nodes_to_find`); the search starts at `start_index`.
    `verdicts` carries node verdicts over from earlier pods of a batch.
    """
    if sample_size is not None and sample_size < 1:
        raise ValueError(f"sample_size must be >= 1, got {sample_size}")
    wanted = feasible_nodes_to_find(len(snapshot)) if sample_size is None else sample_size
    verdicts = verdicts or Verdicts(profile)
    feasible, rejections, examined = find_feasible(pod, snapshot.nodes, profile, wanted, start_index, verdicts=verdicts)
    if not feasible:
        return Unschedulable(pod.key, len(snapshot), _by_count(rejections), examined)
    node, score = select_host(pod, feasible, profile, rng, verdicts=verdicts)
    return Placement(pod.key, node.name, score, len(feasible), examined)


def feasible_nodes_to_find(total_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes are enough (kube-scheduler's numFeasibleNodesToFind).

    `percentage` is percentageOfNodesToScore; 0 means adaptive.
    """
    if total_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return total_nodes
    if percentage <= 0:
        percentage = max(50 - total_nodes // 125, MIN_FEASIBLE_PERCENTAGE)
    return max(total_nodes * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def find_feasible(
    pod: PodRequest,
    nodes: Sequence[NodeInfo],
    profile: Profile,
    wanted: int,
    start: int,
    *,
    verdicts: Verdicts | None = None,
) -> tuple[list[NodeInfo], Counter[str], int]:
    """Feasible nodes (up to `wanted`), rejection counts per reason, nodes examined."""
    feasible: list[NodeInfo] = []
    rejections: Counter[str] = Counter()
    examined = 0
    known = verdicts.of(pod) if verdicts is not None else None
    for node in _rotated(nodes, start):
        if len(feasible) >= wanted:
            break
        examined += 1
        status = known.status(pod, node) if known is not None else run_filters(profile, pod, node)
        if status.ok:
            feasible.append(node)
        else:
            rejections.update(dict.fromkeys(status.reasons, 1))
    return feasible, rejections, examined


def run_filters(profile: Profile, pod: PodRequest, node: NodeInfo) -> Status:
    """The first rejection among the profile's filters, or success."""
    for plugin in profile.filters:
        status = plugin.filter(pod, node)
        if not status.ok:
            return status
    return SUCCESS


def select_host(
    pod: PodRequest,
    feasible: Sequence[NodeInfo],
    profile: Profile,
    rng: random.Random | None,
    *,
    verdicts: Verdicts | None = None,
) -> tuple[NodeInfo, int]:
    """The best-scoring feasible node and its score; ties as the module says."""
    if verdicts is not None:
        known = verdicts.of(pod)
        ranked = [(known.score(pod, node), node) for node in feasible]
    else:
        scores = profile.scores_for(pod)
        ranked = [(score_node(pod, node, scores), node) for node in feasible]
    best = max(score for score, _ in ranked)
    tied = sorted((node for score, node in ranked if score == best), key=lambda n: n.name)
    return (tied[0] if rng is None else rng.choice(tied)), best


def score_node(pod: PodRequest, node: NodeInfo, scores: Iterable[WeightedScore]) -> int:
    """The weighted sum of `scores` for `pod` on `node`."""
    total = 0
    for weighted in scores:
        score = weighted.plugin.score(pod, node)
        if not MIN_SCORE <= score <= MAX_SCORE:
            raise ValueError(f"score plugin {weighted.plugin.name} returned {score}, not 0..100")
        total += weighted.weight * score
    return total


def shape_of(pod: PodRequest) -> Hashable:
    """Everything of a pod the plugins may look at: all of it but its key (its name)."""
    return (
        pod.owner_uid,
        pod.requests,
        pod.nonzero_requests,
        pod.host_ports,
        tuple(sorted(pod.node_selector.items())),
        pod.affinity_terms,
        pod.tolerations,
        pod.runtime,
        pod.strategy,
        pod.volumes,
    )


class Verdicts:
    """Filter statuses and scores per pod shape and node, each valid while the node is the same
    `NodeInfo` object (a placement replaces only its own node's)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._shapes: dict[Hashable, ShapeVerdicts] = {}
        # The last pod asked about and its shape's verdicts: a batch's replicas come in a row.
        self._last: tuple[PodRequest, ShapeVerdicts] | None = None

    def of(self, pod: PodRequest) -> ShapeVerdicts:
        """The verdicts of ``pod``'s shape (hashing a shape once per pod, not once per node)."""
        if self._last is not None and self._last[0] is pod:
            return self._last[1]
        shape = shape_of(pod)
        known = self._shapes.get(shape)
        if known is None:
            known = self._shapes[shape] = ShapeVerdicts(self.profile)
        self._last = (pod, known)
        return known


class ShapeVerdicts:
    """One pod shape's filter statuses and scores, by node name."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._statuses: dict[str, tuple[NodeInfo, Status]] = {}
        self._scores: dict[str, tuple[NodeInfo, int]] = {}

    def status(self, pod: PodRequest, node: NodeInfo) -> Status:
        known = self._statuses.get(node.name)
        if known is not None and known[0] is node:
            return known[1]
        status = run_filters(self.profile, pod, node)
        self._statuses[node.name] = (node, status)
        return status

    def score(self, pod: PodRequest, node: NodeInfo) -> int:
        known = self._scores.get(node.name)
        if known is not None and known[0] is node:
            return known[1]
        score = score_node(pod, node, self.profile.scores_for(pod))
        self._scores[node.name] = (node, score)
        return score


def _rotated(nodes: Sequence[NodeInfo], start: int) -> Iterator[NodeInfo]:
    for i in range(len(nodes)):
        yield nodes[(start + i) % len(nodes)]


def _by_count(rejections: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(rejections.items(), key=lambda item: (-item[1], item[0])))
